"""MLflow tracking: one MLflow run per pipeline run, shared by the stages.

train opens the run and writes its id to RUN_FILE (a DVC output); evaluate and export
reopen that run to add their metrics and files. The default store is SQLite at the
project root. DVC runs queued experiments in temporary copies of the repository but
sets DVC_ROOT to the main one, so every experiment lands in the same store.
MLFLOW_TRACKING_URI, when set, overrides all of this. With `tracking.enabled: false`
nothing is logged and MLflow is not even imported; with `tracking.required: false` an
unreachable store is reported and the pipeline goes on untracked.
"""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from cnnpipe.config import flatten
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import read_json, write_json

RUN_FILE = Path("metrics/mlflow_run.json")
_enabled = False  # whether this process logs to MLflow; set when a run is opened


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


@contextlib.contextmanager
def start_run(params, run_id: str | None = None, active: bool = True):
    """Open this pipeline run's MLflow run (the train stage) and record its id.

    `run_id` reopens the run of a training that was killed and is now resumed, so the
    pipeline run stays one MLflow run. `active=False` (ranks other than 0) logs nothing.
    """
    if not active:
        yield None
        return
    experiment_id = _connect(params)
    if experiment_id is None:
        write_json(RUN_FILE, {"mlflow_run_id": None})
        yield None
        return
    import mlflow

    context = mlflow.start_run(run_id=run_id) if run_id else _new_run(experiment_id, params)
    with context as run:
        write_json(RUN_FILE, {"mlflow_run_id": run.info.run_id})
        yield run


@contextlib.contextmanager
def continue_run(params):
    """Reopen the run the train stage started (evaluate, export)."""
    experiment_id = _connect(params)
    if experiment_id is None:
        yield None
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = read_json(RUN_FILE)["mlflow_run_id"] if RUN_FILE.exists() else None
    try:
        active = mlflow.start_run(run_id=run_id) if run_id else None
    except MlflowException:
        active = None
    if active is None:
        # The store was moved or deleted since train ran: keep tracking in a fresh run.
        # RUN_FILE belongs to the train stage's outputs, so it is left as it is.
        print(
            f"warning: MLflow run {run_id} is not in {tracking_uri()}; logging to a new run",
            file=sys.stderr,
        )
        active = _new_run(experiment_id, params)
    with active as run:
        yield run


def _new_run(experiment_id: str, params):
    """A new MLflow run for this pipeline run, named after the DVC experiment if any."""
    import mlflow

    run_name = os.environ.get("DVC_EXP_NAME") or None
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=_tags())
    mlflow.log_params(flatten(params))
    return run


def _connect(params) -> str | None:
    """The id of the experiment to log to, or None when this process tracks nothing.

    An unreachable store stops the stage within seconds, before any work is done, or with
    `tracking.required: false` lets it go on untracked. Either way no output is touched.
    """
    global _enabled
    _enabled = False
    if not params.tracking.enabled:
        print("MLflow tracking is off (tracking.enabled: false)", file=sys.stderr)
        return None
    uri = tracking_uri()
    if uri.startswith(("http:", "https:")):
        # By default MLflow retries an unreachable server for minutes; answer in seconds.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        experiment_id = _experiment_id(params.tracking.experiment)
    except Exception as exc:  # refused, timed out, bad URI, bad database: all mean "no store"
        reason = " ".join(str(exc).split())[:300]
        if params.tracking.required:
            raise CnnpipeError(
                f"cannot reach MLflow at {uri} ({reason}); start the server, correct "
                "MLFLOW_TRACKING_URI, or set tracking.required: false to go on untracked"
            ) from None
        print(
            f"warning: cannot reach MLflow at {uri} ({reason}); going on without tracking "
            "(tracking.required: false)",
            file=sys.stderr,
        )
        return None
    _enabled = True
    return experiment_id


def _experiment_id(name: str) -> str:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not tracking_uri().startswith(("http:", "https:", "databricks")):
        # A local store puts artifacts under the current directory by default, which
        # for a queued experiment is a temporary copy that DVC deletes. A server
        # decides for itself where artifacts go.
        location = (project_root() / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another stage process created it first.
        return mlflow.get_experiment_by_name(name).experiment_id


def _tags() -> dict[str, str]:
    tags = {}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _tracked():
    """The mlflow module while this process tracks a run, else None (and MLflow unimported)."""
    if not _enabled:
        return None
    import mlflow

    return mlflow


def log_epoch(row: dict) -> None:
    """Per-epoch metrics, with the epoch as the step so MLflow draws curves over epochs."""
    if mlflow := _tracked():
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def log_missing_epochs(history: list[dict]) -> None:
    """After a resume: log the epochs whose metrics the killed process did not get to log."""
    if mlflow := _tracked():
        run_id = mlflow.active_run().info.run_id
        client = mlflow.MlflowClient()
        logged = {m.step for m in client.get_metric_history(run_id, "val_acc")}
        for row in history:
            if row["epoch"] not in logged:
                log_epoch(row)


def log_metrics(metrics: dict[str, float]) -> None:
    if mlflow := _tracked():
        mlflow.log_metrics(metrics)


def log_files(*paths: str | Path, folder: str | None = None) -> None:
    if mlflow := _tracked():
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=folder)
