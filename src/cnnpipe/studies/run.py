"""`cnnpipe study NAME`: queue the experiments a study still lacks on this commit, run
them, and write the report from the runs MLflow holds."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnpipe.config import flatten, load_params, parse_params
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import project_root
from cnnpipe.studies.queue import queue, run_queue
from cnnpipe.studies.report import REPORTS, Result, write_report
from cnnpipe.studies.spec import Study, apply_setting, load_study
from cnnpipe.tracking.store import connect, retry, tracking_uri
from cnnpipe.tracking.study import study_parent


@dataclass
class OnHead:
    """A study or search read against the committed params, with its MLflow parent run."""

    spec: object  # the Study or Search
    committed: dict  # params.yaml at HEAD
    params: object  # the same, parsed
    pinned: dict  # params.yaml's changes from HEAD, which the experiments undo
    experiment_id: str
    parent: str


def start_on_head(name: str, what: str, load) -> OnHead:
    """Read studies/NAME.yaml with `load` against HEAD's params, connect to MLflow and find
    the parent run; `what` ("study", "search") names it in errors.

    A study or search runs on the committed params, whatever params.yaml holds now (an
    earlier `dvc exp run -S optimizer=adam` leaves its values there): its report answers
    the question for the commit, and its runs never register models unless it says so.
    """
    root = project_root()
    committed = yaml.safe_load(_git("show", "HEAD:params.yaml")) or {}
    spec = load(name, root, committed)
    params = parse_params(committed, source="params.yaml at HEAD")
    pinned = changed_from(load_params(root / "params.yaml"), params)
    if not params.tracking.enabled:
        raise CnnpipeError(f"a {what} reads its results from MLflow: set tracking.enabled: true")
    experiment_id = connect(params)
    if experiment_id is None:
        raise CnnpipeError(f"a {what} needs MLflow, and {tracking_uri()} is unreachable")
    return OnHead(spec, committed, params, pinned, experiment_id, study_parent(experiment_id, name))


def run_study(name: str, jobs: int = 2, poll: float = 3.0, timeout: float | None = None) -> Path:
    """Queue the study's experiments, run them on `jobs` workers, write the report."""
    root = project_root()
    head = start_on_head(name, "study", load_study)
    study, committed, pinned = head.spec, head.committed, head.pinned
    experiment_id, parent = head.experiment_id, head.parent

    # An experiment of this study that already ran on this commit is not run again.
    commit = _git("rev-parse", "HEAD")
    done = _runs(study, committed, experiment_id, parent, commit)
    todo = [s for s, r in zip(study.settings(), done, strict=True) if r.run is None]
    print(
        f"study {name}: {len(done) - len(todo)} of {len(done)} experiments ran on this commit "
        f"already; running {len(todo)} on {jobs} workers",
        flush=True,
    )
    if pinned:
        print(
            f"study {name}: params.yaml differs from HEAD in {', '.join(pinned)}; the study "
            "runs on HEAD's values",
            flush=True,
        )
    if todo:
        queue(todo, {**pinned, "tracking.study": name, "tracking.register": False})
        run_queue(jobs, poll, timeout)

    folder = root / REPORTS / name
    write_report(study, _runs(study, committed, experiment_id, parent, commit), folder)
    client = _client()
    for path in sorted(folder.iterdir()):
        retry(client.log_artifact, parent, str(path), "report")
    return folder


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CnnpipeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def changed_from(now, then) -> dict[str, object]:
    """{key: its value in `then`} for every param whose value `now` changes."""
    now, then = flatten(now), flatten(then)
    return {key: value for key, value in then.items() if now[key] != value}


def _runs(
    study: Study, committed: dict, experiment_id: str, parent: str, commit: str
) -> list[Result]:
    """Per setting, the newest finished (or failed) child run of the study's parent that
    ran with its params on `commit` (DVC tags each with its experiment's baseline)."""
    children = retry(
        _client().search_runs,
        [experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent}' and tags.`dvc.baseline` = '{commit}' "
            "and attributes.status != 'RUNNING'"
        ),
        order_by=["attributes.start_time DESC"],
    )
    results = []
    for setting in study.settings():
        expected = flatten(parse_params(apply_setting(committed, setting)))
        want = {k: str(expected[k]) for k in setting}
        match = next(
            (r for r in children if all(r.data.params.get(k) == v for k, v in want.items())), None
        )
        results.append(Result(study.label(setting), match))
    return results
