"""MLflow tracking: one MLflow run per pipeline run, shared by the stages.

train opens the run and writes its id to RUN_FILE (a DVC output); evaluate and export
reopen that run to add their metrics and files. The default store is SQLite at the
project root. DVC runs queued experiments in temporary copies of the repository but
sets DVC_ROOT to the main one, so every experiment lands in the same store.
MLFLOW_TRACKING_URI, when set, overrides all of this. With `tracking.enabled: false`
nothing is logged and MLflow is not even imported; with `tracking.required: false` an
unreachable store is reported and the pipeline goes on untracked.

Stages log through the `Run` that start_run/continue_run hand them: an untracked run is
a `Run` too, one whose calls do nothing, so no call depends on hidden module state.

Queued experiments run side by side on the one SQLite file. Its schema is created under
a file lock, so only one process migrates it; it is switched to write-ahead logging so
readers never block the writer; connections wait for a busy database instead of failing
at once; and a write that still finds it locked is retried.
"""

import contextlib
import fcntl
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

from cnnpipe.config import flatten
from cnnpipe.environment import LOCK_FILE, lock_hash
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import project_root, read_json, write_json

RUN_FILE = Path("metrics/mlflow_run.json")


BUSY_TIMEOUT = 60  # seconds a SQLite connection waits for another process's write


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _local_store() -> Path | None:
    """The SQLite file behind the tracking URI, if it is one."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?")[0])


def _mlflow_uri() -> str:
    """The URI handed to MLflow: SQLite gets a busy timeout (a SQLAlchemy URL parameter)."""
    uri = tracking_uri()
    if _local_store() is not None and "?" not in uri:
        uri += f"?timeout={BUSY_TIMEOUT}"
    return uri


@contextlib.contextmanager
def store_lock():
    """Serialise a critical section across the processes sharing a local store (schema
    creation, moving the registry's alias); a no-op for a tracking server."""
    store = _local_store()
    if store is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


LOCKED = ("database is locked",)


def retry(call, *args, attempts: int = 8, transient=LOCKED, **kwargs):
    """Run an MLflow call; if it fails with one of the `transient` messages (by default:
    SQLite still reports the database locked), wait and retry."""
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not any(m in str(exc) for m in transient) or attempt == attempts - 1:
                raise
            time.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))


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
        data_hashes = ":".join(data_hash(folder) for folder in DATA_DIRS)
        for part, context in DATASET_CONTEXTS.items():
            digest = hashlib.sha256(f"{data_hashes}:{part}".encode()).hexdigest()[:16]
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
    with context as run, _record_failure():
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
    with reopened as run, _record_failure():
        yield Run(run.info.run_id, experiment_id)


@contextlib.contextmanager
def _record_failure():
    """MLflow marks a run FAILED when its block raises; keep the reason with it too."""
    try:
        yield
    except Exception as exc:
        import mlflow

        with contextlib.suppress(Exception):
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        raise


def _new_run(experiment_id: str, params, log_system_metrics: bool = False):
    """A new MLflow run for this pipeline run, named after the DVC experiment if any; with
    `tracking.study` set, a child of that study's parent run."""
    import mlflow

    tags = _tags()
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


STUDY_TAG = "study"  # on each experiment's run, and on the study's parent run
PARENT_TAG = "study_parent"  # on the parent only: the study it holds


def study_parent(experiment_id: str, study: str) -> str:
    """The id of the study's parent run, created the first time it is asked for. Under the
    store's lock, so the parallel experiments of one study find one parent."""
    import mlflow
    from mlflow.entities import RunStatus

    client = mlflow.MlflowClient()
    with store_lock():
        found = retry(
            client.search_runs,
            [experiment_id],
            filter_string=f"tags.{PARENT_TAG} = '{study}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        tags = {PARENT_TAG: study, STUDY_TAG: study}
        parent = retry(client.create_run, experiment_id, run_name=f"study {study}", tags=tags)
        # It trains nothing itself: its children are the runs, it holds their report.
        retry(client.set_terminated, parent.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        return parent.info.run_id


def connect(params) -> str | None:
    """The id of the experiment to log to, or None when this process tracks nothing.

    An unreachable store stops the stage within seconds, before any work is done, or with
    `tracking.required: false` lets it go on untracked. Either way no output is touched.
    """
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
    return experiment_id


def _experiment_id(name: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(_mlflow_uri())
    store = _local_store()
    # The first process creates the schema while the others wait at the lock.
    with store_lock():
        experiment = mlflow.get_experiment_by_name(name)
        if store is not None:
            with contextlib.closing(sqlite3.connect(store, timeout=BUSY_TIMEOUT)) as db:
                db.execute("PRAGMA journal_mode=WAL")  # persists in the file
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
        except mlflow.exceptions.MlflowException as exc:
            # A server has no file lock: another experiment may have created it first.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return mlflow.get_experiment_by_name(name).experiment_id


def _tags() -> dict[str, str]:
    """What links the run to its code, environment and data: the git commit and whether
    the tree held uncommitted changes, the lock file's hash, the DVC experiment and its
    baseline, the data's hashes."""
    tags = {}
    if locked := lock_hash():
        tags["env.lock"] = f"sha256:{locked}"
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
        status = _git("status", "--porcelain", "--untracked-files=no")
        tags["git.dirty"] = str(bool(status)).lower()
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    for name in DATA_DIRS:
        tags[f"data.{Path(name).name}"] = data_hash(name)
    return tags


DATA_DIRS = ("data/prepared", "data/split")
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
DATASET_RACE = (*LOCKED, "UNIQUE constraint failed: datasets")


def data_hash(folder: str) -> str:
    """The folder's hash as dvc.lock records it ("md5:<hash>.dir") when it lists the
    folder as an output, else the sha256 of its files' names and bytes."""
    lock = Path("dvc.lock")
    if lock.exists():
        import yaml

        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == folder and out.get("md5"):
                    return f"md5:{out['md5']}"
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()
