"""Studies: the notes' questions as grids of DVC experiments, and a report of each.

A study is a YAML file under studies/:

    question: What does the learning rate do to SGD training?
    grid:             # every combination is one experiment
      lr: [0.3, 0.1, 0.03, 0.01, 0.003]
    set:              # the same for every experiment (optional)
      epochs: 30

`cnnpipe study NAME` queues one `dvc exp run` per combination, with `tracking.study` set
to NAME so that each experiment's MLflow run is a child of the study's parent run, and
runs the queue on parallel workers. It then reads the runs back from MLflow and writes
reports/NAME/: curves.png (validation loss and accuracy per setting), results.csv and
results.md (final metrics), summary.md (the question and the best setting). An
experiment that already ran for this study on the same commit (its MLflow run says so) is
not run again, so running a study again trains nothing and only draws the report again.
"""

import copy
import itertools
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnpipe import tracking
from cnnpipe.config import flatten, load_params, parse_params
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import project_root, write_csv, write_text

STUDIES = "studies"
REPORTS = "reports"


@dataclass
class Study:
    name: str
    question: str
    grid: dict[str, list]
    fixed: dict[str, object]

    def settings(self) -> list[dict[str, object]]:
        """Every combination of the grid, each with the fixed params."""
        keys = list(self.grid)
        return [
            {**dict(zip(keys, values, strict=True)), **self.fixed}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]

    def label(self, setting: dict) -> str:
        return ", ".join(f"{k}={setting[k]}" for k in self.grid)


def load_study(name: str, root: Path) -> Study:
    """Read studies/NAME.yaml; every key must be a param and every value valid for it."""
    path = root / STUDIES / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / STUDIES).glob("*.yaml"))
        raise CnnpipeError(f"{path}: no such study; known: {', '.join(known) or 'none'}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(raw) - {"question", "grid", "set"}
    if unknown or not isinstance(raw.get("grid"), dict) or not raw["grid"]:
        raise CnnpipeError(
            f"{path}: needs a `grid` of params to lists of values (and may have `question` "
            f"and `set`){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}"
        )
    grid = {k: v if isinstance(v, list) else [v] for k, v in raw["grid"].items()}
    study = Study(name, str(raw.get("question", "")), grid, dict(raw.get("set") or {}))
    base = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    for setting in study.settings():
        parse_params(_apply(base, setting), source=str(path))  # names a bad key or value
    return study


def _apply(raw: dict, setting: dict) -> dict:
    """params.yaml's dict with dotted keys ("train.loss") set, as `dvc exp run -S` does."""
    out = copy.deepcopy(raw)
    for key, value in setting.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _dvc(*args: str, quiet: bool = False, env: dict | None = None) -> str:
    # The workers `dvc queue start` leaves behind would hold on to captured pipes; their
    # output is not wanted here either.
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    done = subprocess.run(["dvc", *args], stdout=out, stderr=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        raise CnnpipeError(f"dvc {' '.join(args)} failed: {done.stderr.strip()[-1500:]}")
    return done.stdout or ""


def run_study(name: str, jobs: int = 2, poll: float = 3.0) -> Path:
    """Queue the study's experiments, run them on `jobs` workers, write the report."""
    root = project_root()
    study = load_study(name, root)
    params = load_params(root / "params.yaml")
    if not params.tracking.enabled:
        raise CnnpipeError("a study reads its results from MLflow: set tracking.enabled: true")
    experiment_id = tracking.connect(params)
    if experiment_id is None:
        raise CnnpipeError(f"a study needs MLflow, and {tracking.tracking_uri()} is unreachable")
    parent = tracking.study_parent(experiment_id, name)

    # An experiment of this study that already ran on this commit is not run again.
    commit = _git("rev-parse", "HEAD")
    done = _runs(study, experiment_id, parent, commit)
    todo = [s for s, r in zip(study.settings(), done, strict=True) if r.run is None]
    print(
        f"study {name}: {len(done) - len(todo)} of {len(done)} experiments ran on this commit "
        f"already; running {len(todo)} on {jobs} workers"
    )
    for setting in todo:
        values = [f"{k}={_yaml_value(v)}" for k, v in setting.items()]
        overrides = itertools.chain.from_iterable(("-S", v) for v in values)
        _dvc("exp", "run", "--queue", "-S", f"tracking.study={name}", *overrides)
    if todo:
        _dvc("queue", "start", "-j", str(jobs), quiet=True, env=worker_env(jobs))
        while re.search(r"\b(Queued|Running)\b", _dvc("queue", "status")):
            time.sleep(poll)

    folder = root / REPORTS / name
    write_report(study, _runs(study, experiment_id, parent, commit), folder)
    for path in sorted(folder.iterdir()):
        tracking.retry(_client().log_artifact, parent, str(path), "report")
    return folder


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _yaml_value(value) -> str:
    """A value as `-S key=value` reads it back (YAML), e.g. true, null, 0.001."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


@dataclass
class Result:
    label: str
    run: object | None  # the newest MLflow run with these params, or None


def worker_env(jobs: int) -> dict[str, str]:
    """The environment for `jobs` parallel workers: each gets its share of the CPU cores
    for PyTorch's threads (unless OMP_NUM_THREADS says otherwise). Two workers that each
    start a thread per core spin against each other: on 2 cores a 3.6 s training took
    64 to 69 s that way."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise CnnpipeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _runs(study: Study, experiment_id: str, parent: str, commit: str) -> list[Result]:
    """Per setting, the newest finished (or failed) child run of the study's parent that
    ran with its params on `commit` (DVC tags each with its experiment's baseline)."""
    client = _client()
    children = tracking.retry(
        client.search_runs,
        [experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent}' and tags.`dvc.baseline` = '{commit}' "
            "and attributes.status != 'RUNNING'"
        ),
        order_by=["attributes.start_time DESC"],
    )
    raw = yaml.safe_load((project_root() / "params.yaml").read_text(encoding="utf-8"))
    results = []
    for setting in study.settings():
        expected = flatten(parse_params(_apply(raw, setting)))
        want = {k: str(expected[k]) for k in setting}
        match = next(
            (r for r in children if all(r.data.params.get(k) == v for k, v in want.items())), None
        )
        results.append(Result(study.label(setting), match))
    return results


def write_report(study: Study, results: list[Result], folder: Path) -> None:
    from cnnpipe.plots import study_curves_png

    client = _client()
    rows, curves = [], {}
    for result in results:
        run = result.run
        row = {"setting": result.label, "status": "no run" if run is None else run.info.status}
        if run is not None:
            metrics = run.data.metrics
            row |= {
                "test_acc": metrics.get("test_acc"),
                "best_val_acc": metrics.get("best_val_acc"),
                "best_epoch": metrics.get("best_epoch"),
                "train_seconds": metrics.get("train_seconds"),
                "error": run.data.tags.get("error", ""),
            }
            history = {}
            for key in ("val_loss", "val_acc"):
                for m in tracking.retry(client.get_metric_history, run.info.run_id, key):
                    history.setdefault(m.step, {"epoch": m.step})[key] = m.value
            curves[result.label] = [history[e] for e in sorted(history) if len(history[e]) == 3]
        rows.append(row)
    columns = [
        "setting",
        "status",
        "test_acc",
        "best_val_acc",
        "best_epoch",
        "train_seconds",
        "error",
    ]
    rows = [{c: row.get(c, "") for c in columns} for row in rows]
    write_csv(folder / "results.csv", rows)
    write_text(folder / "results.md", _markdown_table(rows, columns[:-1]))
    study_curves_png(curves, study.question or f"study {study.name}", folder / "curves.png")
    write_text(folder / "summary.md", _summary(study, rows))


FORMATS = {
    "test_acc": "{:.4f}",
    "best_val_acc": "{:.4f}",
    "best_epoch": "{:.0f}",
    "train_seconds": "{:.1f}",
}


def _markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [
            FORMATS[c].format(row[c])
            if c in FORMATS and row[c] not in ("", None)
            else str(row[c] if row[c] is not None else "")
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary(study: Study, rows: list[dict]) -> str:
    scored = [r for r in rows if r["status"] == "FINISHED" and r["test_acc"] not in ("", None)]
    failed = [r["setting"] for r in rows if r["status"] == "FAILED"]
    text = f"**{study.question or study.name}** "
    if not scored:
        return text + "No experiment of this study finished.\n"
    top = max(r["test_acc"] for r in scored)
    best = [r for r in scored if r["test_acc"] == top]
    worst = min(scored, key=lambda r: r["test_acc"])
    if len(best) == 1:
        text += (
            f"Of {len(rows)} settings, {best[0]['setting']} reached the best test accuracy, "
            f"{top:.4f} (best validation epoch {best[0]['best_epoch']:.0f})"
        )
    else:
        names = ", ".join(r["setting"] for r in best)
        text += f"Of {len(rows)} settings, {names} share the best test accuracy, {top:.4f}"
    if worst["test_acc"] < top:
        text += f"; {worst['setting']} scored lowest, {worst['test_acc']:.4f}"
    text += "."
    if failed:
        text += f" Failed (see the runs' error tag): {', '.join(failed)}."
    return text + "\n"
