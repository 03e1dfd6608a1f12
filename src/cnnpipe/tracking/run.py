"""One MLflow run per pipeline run, shared by the stages.

train opens the run and writes its id to RUN_FILE (a DVC output); evaluate and export
reopen that run to add their metrics and files. With `tracking.enabled: false` nothing is
logged and MLflow is not even imported; with `tracking.required: false` an unreachable
store is reported and the pipeline goes on untracked.

Stages log through the `Run` that start_run/continue_run hand them: an untracked run is
a `Run` too, one whose calls do nothing.
"""

import contextlib
import hashlib
import os
import sys
import warnings
from pathlib import Path

from cnnpipe import paths
from cnnpipe.config import flatten
from cnnpipe.environment import LOCK_FILE
from cnnpipe.files import read_json, write_json
from cnnpipe.tracking.provenance import DATA_DIRS, data_hashes, run_tags
from cnnpipe.tracking.store import (
    DATASET_RACE,
    RETRIES_ENV,
    connect,
    lost_server_error,
    retry,
    server_lost,
    tracking_uri,
)
from cnnpipe.tracking.study import STUDY_TAG, study_parent

RUN_FILE = Path(paths.RUN_FILE)
# DVC runs every stage at the repository's root (a queued experiment in its temporary copy).
REPO = Path(".")
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


class Run:
    """The MLflow run a stage logs to. `Run()` is no run at all (tracking off, a rank other
    than 0, a store given up on with `tracking.required: false`): its calls do nothing,
    and MLflow is never imported for it."""

    def __init__(self, run_id: str | None = None, experiment_id: str | None = None):
        self.id = run_id
        self.experiment_id = experiment_id

    def __bool__(self) -> bool:
        return self.id is not None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self:
            import mlflow

            retry(mlflow.log_metrics, metrics, step=step, run_id=self.id)

    def log_epoch(self, row: dict) -> None:
        """Per-epoch metrics, the epoch as the step, so MLflow draws curves over epochs."""
        self.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    def log_missing_epochs(self, history: list[dict]) -> None:
        """After a resume: the epochs whose metrics the killed process did not log."""
        if self:
            import mlflow

            metric = mlflow.MlflowClient().get_metric_history
            logged = {m.step for m in retry(metric, self.id, "val_acc")}
            for row in history:
                if row["epoch"] not in logged:
                    self.log_epoch(row)

    def log_files(self, *paths: str | Path, folder: str | None = None) -> None:
        if self:
            import mlflow

            client = mlflow.MlflowClient()
            for path in paths:
                retry(client.log_artifact, self.id, str(path), artifact_path=folder)

    def log_datasets(self, name: str, split: dict, num_classes: int) -> None:
        """The train, validation and test splits as MLflow dataset inputs (the run page's
        Datasets column, `search_runs` by dataset). Each digest comes from the DVC hashes
        of the prepared data and of the split, so it changes when either does."""
        if not self:
            return
        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and warns that the path "can be
            # interpreted in multiple ways"; both ways are the same class.
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(DATA_DIRS[0])
        hashes = ":".join(data_hashes(REPO).values())
        for part, context in DATASET_CONTEXTS.items():
            digest = hashlib.sha256(f"{hashes}:{part}".encode()).hexdigest()[:16]
            # A description only: the images stay in data/prepared, under DVC.
            dataset = MetaDataset(source, name=f"{name}-{part}", digest=digest)
            tags = {"images": str(len(split[part])), "classes": str(num_classes)}
            # Parallel experiments log the same datasets: MLflow's SQL store looks a dataset
            # up, then inserts it, and the slower of two inserts breaks the unique key. The
            # retry finds the row and only links it to this run.
            retry(mlflow.log_input, dataset, context=context, tags=tags, transient=DATASET_RACE)

    @contextlib.contextmanager
    def nested(self, name: str, params, **extra):
        """A child run (one cross-validation fold, say) with its own params and this
        run's tags (copied: hashing the data again for every child would be waste)."""
        if not self:
            yield Run()
            return
        import mlflow

        tags = retry(mlflow.MlflowClient().get_run, self.id).data.tags
        child = retry(
            mlflow.start_run,
            experiment_id=self.experiment_id,
            run_name=name,
            nested=True,
            tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
        )
        with child as run, _record_failure():
            retry(mlflow.log_params, {**flatten(params), **extra})
            yield Run(run.info.run_id, self.experiment_id)


@contextlib.contextmanager
def start_run(params, run_id: str | None = None, active: bool = True):
    """Open this pipeline run's MLflow run (the train stage), record its id, and yield it.

    `run_id` reopens the run of a training that was killed and is now resumed, so the
    pipeline run stays one MLflow run. `active=False` (ranks other than 0) logs nothing.
    """
    if not active:
        yield Run()
        return
    experiment_id = connect(params)
    if experiment_id is None:
        write_json(RUN_FILE, {"mlflow_run_id": None})
        yield Run()
        return
    import mlflow

    # System metrics (tracking.system_metrics) are sampled by a thread that lives as long
    # as the run is open here, so for the training.
    system = params.tracking.system_metrics
    context = (
        retry(mlflow.start_run, run_id=run_id, log_system_metrics=system)
        if run_id
        else _new_run(experiment_id, params, log_system_metrics=system)
    )
    with _naming_a_lost_server(), context as run, _record_failure():
        write_json(RUN_FILE, {"mlflow_run_id": run.info.run_id})
        yield Run(run.info.run_id, experiment_id)


@contextlib.contextmanager
def continue_run(params, active: bool = True):
    """Reopen the run the train stage started (crossval, evaluate, export) and yield it.
    `active=False` (ranks other than 0) logs nothing."""
    if not active:
        yield Run()
        return
    experiment_id = connect(params)
    if experiment_id is None:
        yield Run()
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = read_json(RUN_FILE)["mlflow_run_id"] if RUN_FILE.exists() else None
    try:
        reopened = retry(mlflow.start_run, run_id=run_id) if run_id else None
    except MlflowException:
        reopened = None
    if reopened is None:
        # Train ran untracked, or the store was moved or deleted since: keep tracking in
        # a fresh run. RUN_FILE belongs to the train stage's outputs; it is left alone.
        why = f"MLflow run {run_id} is not in" if run_id else "train logged no MLflow run to"
        print(f"warning: {why} {tracking_uri()}; logging to a new run", file=sys.stderr)
        reopened = _new_run(experiment_id, params)
    with _naming_a_lost_server(), reopened as run, _record_failure():
        yield Run(run.info.run_id, experiment_id)


@contextlib.contextmanager
def _record_failure():
    """MLflow marks a run FAILED when its block raises; keep the reason with it too."""
    try:
        yield
    except Exception as exc:
        if server_lost(exc):
            # The server did not come back within MLflow's retries: the calls that close
            # the run would each wait as long again. This process is ending; they fail
            # at once instead.
            os.environ[RETRIES_ENV] = "0"
            raise
        import mlflow

        with contextlib.suppress(Exception):
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        raise


@contextlib.contextmanager
def _naming_a_lost_server():
    """A server lost mid-run becomes one error line naming it (and how to go on), also
    when closing the run fails after it."""
    try:
        yield
    except Exception as exc:
        lost = next((e for e in (exc, exc.__context__) if e and server_lost(e)), None)
        if lost:
            raise lost_server_error(lost) from None
        raise


def _new_run(experiment_id: str, params, log_system_metrics: bool = False):
    """A new MLflow run for this pipeline run, named after the DVC experiment if any; with
    `tracking.study` set, a child of that study's parent run."""
    import mlflow

    tags = run_tags(REPO)
    if params.tracking.study:
        tags[STUDY_TAG] = params.tracking.study
        tags["mlflow.parentRunId"] = study_parent(experiment_id, params.tracking.study)
    run = retry(
        mlflow.start_run,
        experiment_id=experiment_id,
        run_name=os.environ.get("DVC_EXP_NAME") or None,
        tags=tags,
        log_system_metrics=log_system_metrics,
    )
    retry(mlflow.log_params, flatten(params))
    if LOCK_FILE.is_file():
        retry(mlflow.log_artifact, str(LOCK_FILE), artifact_path="environment")
    return run
