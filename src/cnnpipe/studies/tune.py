"""`cnnpipe tune NAME`: an Optuna search whose trials are DVC experiments.

Each trial is asked of Optuna, queued as `dvc exp run --queue evaluate --name NAME-N -S
...` and run by DVC's queue workers (their share of the cores each), which log one MLflow
run per trial under the search's parent run; the train stage reports each epoch to the
trial and stops when it is pruned (cnnpipe.pruning). Optuna's storage and DVC's queue
outlive this process: run the same command again after a kill and it takes up the search
where it stopped.
"""

import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import project_root
from cnnpipe.pruning import EXPERIMENT_ATTR, PRUNER_ATTR, SEARCH_ENV, STORAGE_ENV
from cnnpipe.studies.queue import dvc, queue_one, queue_status, worker_env
from cnnpipe.studies.search import Search, load_search

MACHINE_ATTR = "machine"  # which checkout queued a trial: only it can tell how it ended
FAILURE_ATTR = "failure"  # "error": the trial's own; "interrupted": a kill (refilled)
STORAGE_FILE = "optuna.db"


@dataclass
class Tuning:
    search: Search
    study: object  # optuna.Study
    experiment_id: str  # MLflow's
    committed: dict  # params.yaml at HEAD, which the trials start from
    pinned: dict  # params.yaml's changes from HEAD, which the trials undo


def storage_url(configured: str | None, root: Path) -> str:
    """The storage's URL, absolute: the queue's workers run in other folders."""
    return configured or f"sqlite:///{root / STORAGE_FILE}"


def machine() -> str:
    return f"{socket.gethostname()}:{project_root()}"


def open_search(search: Search, storage: str):
    """The Optuna study of this search, created on the first run (maximising the best
    validation accuracy) and loaded on every later one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        known = len(optuna.load_study(study_name=search.name, storage=storage).trials)
    except KeyError:  # a new search
        known = 0
    except Exception as exc:  # a bad URL, a missing driver, an unreachable server
        raise CnnpipeError(
            f"Optuna's storage {_hide_password(storage)} cannot be opened: {exc}"
        ) from None
    # A search taken up again must not draw its first suggestions again: the seed moves on
    # by the trials the search has.
    seed = search.seed + known
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler(
            {k: list(d.values) for k, d in search.space.items()}, seed=seed
        ),
    }[search.sampler]()
    try:
        study = optuna.create_study(
            study_name=search.name,
            storage=storage,
            sampler=sampler,
            pruner=search.pruner.build(),
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as exc:  # a bad URL, a missing driver, an unreachable server
        raise CnnpipeError(
            f"Optuna's storage {_hide_password(storage)} cannot be opened: {exc}"
        ) from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise CnnpipeError(
            f"the study {search.name} in {_hide_password(storage)} does not maximise"
        )
    study.set_user_attr(PRUNER_ATTR, search.pruner.__dict__)
    return study


def counts(study) -> tuple[int, list]:
    """(trials that ran to an end, trials still running)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    ended = sum(1 for t in trials if ended_by_itself(t))
    return ended, running


def ended_by_itself(trial) -> bool:
    """Complete, pruned, or failed by its own error (not cut off by a kill)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get(FAILURE_ATTR) == "error"
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def settle(tuning: Tuning, statuses: dict[str, str], here: str) -> list[str]:
    """Tell Optuna how this checkout's running trials ended, from the DVC queue and the
    MLflow runs; a line for each. A trial neither queued nor running in DVC was cut off
    (this command or its worker killed): failed, and its place goes to a new trial."""
    from optuna.trial import TrialState

    said = []
    for trial in counts(tuning.study)[1]:
        if trial.user_attrs.get(MACHINE_ATTR) != here:
            continue  # another machine's trial: that machine tells
        name = trial.user_attrs.get(EXPERIMENT_ATTR)
        status = statuses.get(name)
        if status in ("Queued", "Running"):
            continue
        run = run_of(tuning, name) if name else None
        if status == "Success" and run is not None:
            pruned = "pruned_after_epoch" in run.data.metrics
            if pruned:
                tuning.study.tell(trial.number, state=TrialState.PRUNED)
                state = "pruned"
            else:
                tuning.study.tell(trial.number, run.data.metrics["best_val_acc"])
                state = "complete"
        else:
            reason = "interrupted" if _cut_off(status, run) else "error"
            _fail(tuning.study, trial, reason)
            state = "failed" if reason == "error" else "interrupted"
        if run is not None:
            _tag(run.info.run_id, {"trial_number": str(trial.number), "trial_state": state})
        said.append(f"  trial {trial.number} ({name}): {state}")
    return said


def _cut_off(status: str | None, run) -> bool:
    """Whether a trial that did not succeed was stopped from outside (gone from DVC's
    queue, or killed by `dvc queue kill` or Ctrl-C) rather than failed by itself: a run
    that fails keeps its error (cnnpipe.tracking.run), and params the check stage would
    refuse never reach the queue (ask_and_queue)."""
    return status is None or run is None or "error" not in run.data.tags


def _fail(study, trial, reason: str) -> None:
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial._trial_id, FAILURE_ATTR, reason)
    study.tell(trial.number, state=TrialState.FAIL)


def run_of(tuning: Tuning, experiment: str):
    import mlflow

    from cnnpipe.tracking.store import retry

    found = retry(
        mlflow.MlflowClient().search_runs,
        [tuning.experiment_id],
        filter_string=(
            f"tags.`dvc.exp_name` = '{experiment}' and tags.study = '{tuning.search.name}'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def _tag(run_id: str, tags: dict) -> None:
    import mlflow

    from cnnpipe.tracking.store import retry

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        retry(client.set_tag, run_id, key, value)


def ask_and_queue(tuning: Tuning, here: str) -> str:
    """A new trial from the sampler, queued as a DVC experiment named after it."""
    from cnnpipe.config import parse_params
    from cnnpipe.studies.spec import apply_setting

    search = tuning.search
    trial = tuning.study.ask(search.distributions())
    name = f"{search.name}-{trial.number}"
    trial.set_user_attr(EXPERIMENT_ATTR, name)
    trial.set_user_attr(MACHINE_ATTR, here)
    fixed = {**tuning.pinned, **search.fixed, "tracking.study": search.name}
    setting = {**fixed, "tracking.register": False, **trial.params}
    drawn = ", ".join(f"{k}={short(v)}" for k, v in trial.params.items())
    try:  # a combination the params' cross-checks refuse fails here, not in the queue
        parse_params(apply_setting(tuning.committed, setting), source=f"trial {trial.number}")
    except CnnpipeError as exc:
        _fail(tuning.study, trial, "error")
        return f"  trial {trial.number} ({drawn}): failed: {exc}"
    queue_one(setting, name=name)
    return f"  trial {trial.number} ({name}) queued: {drawn}"


def short(value) -> str:
    """A drawn value as people read it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def drive(tuning: Tuning, trials: int, jobs: int, storage: str, poll: float, timeout):
    """Keep `jobs` trials queued or running until `trials` have ended."""
    here = machine()
    env = {**worker_env(jobs), STORAGE_ENV: storage, SEARCH_ENV: tuning.search.name}
    deadline = None if timeout is None else time.monotonic() + timeout
    # Taken up again after trials ended, the shared stages are in the run cache already.
    first_ended, cut_off = counts(tuning.study)[0] > 0, 0
    while True:
        statuses, workers = queue_status()
        for line in settle(tuning, statuses, here):
            print(line, flush=True)
            first_ended = True
            cut_off += line.endswith(": interrupted")
        if cut_off > trials:  # not a kill now and then: something stops every trial
            raise CnnpipeError(
                f"{cut_off} trials were cut off before they ended; `dvc queue logs NAME` shows why"
            )
        ended, running = counts(tuning.study)
        if ended >= trials and not running:
            return
        mine = [t for t in running if t.user_attrs.get(MACHINE_ATTR) == here]
        while ended + len(running) < trials and len(mine) < jobs:
            print(ask_and_queue(tuning, here), flush=True)
            ended, running = counts(tuning.study)
            mine = [t for t in running if t.user_attrs.get(MACHINE_ATTR) == here]
        # One worker alone until a trial has ended: trials that start together would run
        # the stages they share (prepare, split) at once (see studies.queue.run_queue).
        wanted = min(jobs if first_ended else 1, len(mine))
        if workers < wanted:
            dvc("queue", "start", "-j", str(wanted - workers), quiet=True, env=env)
        if deadline is not None and time.monotonic() > deadline:
            names = ", ".join(t.user_attrs.get(EXPERIMENT_ATTR, "?") for t in mine)
            raise CnnpipeError(
                f"the search did not finish in {timeout:g} s; still queued or running: {names}"
            )
        time.sleep(poll)


def run_tune(name: str, trials: int | None, jobs: int = 2, poll: float = 3.0, timeout=None) -> Path:
    """Search, then write the report; returns the report's folder."""
    from cnnpipe.studies.run import start_on_head
    from cnnpipe.studies.tune_report import write_tune_report

    root = project_root()
    # As a study does, the trials run on the committed params (see studies.run).
    head = start_on_head(name, "search", load_search)
    search = head.spec
    storage = storage_url(head.params.tune.storage, root)
    study = open_search(search, storage)
    tuning = Tuning(search, study, head.experiment_id, head.committed, head.pinned)
    trials = trials or search.trials
    if search.sampler == "grid":
        trials = min(trials, search.grid_size())
    ended, running = counts(study)
    print(
        f"search {name}: {ended} of {trials} trials ended already, {len(running)} running; "
        f"{search.sampler} sampler, {search.pruner.kind} pruner, {jobs} workers",
        flush=True,
    )
    if jobs < 1:
        raise CnnpipeError(f"--jobs must be at least 1, not {jobs}")
    drive(tuning, trials, jobs, storage, poll, timeout)
    return write_tune_report(tuning, head.parent, root)


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: create_study says why
        return url
