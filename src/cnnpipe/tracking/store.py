"""The MLflow store: where it is, how to reach it, and how processes share it.

The default store is SQLite at the project root. DVC runs queued experiments in temporary
copies of the repository but sets DVC_ROOT to the main one, so every experiment lands in
the same store. MLFLOW_TRACKING_URI, when set, overrides all of this.

Queued experiments run side by side on the one SQLite file. Its schema is created under
a file lock, so only one process migrates it; it is switched to write-ahead logging so
readers never block the writer; connections wait for a busy database instead of failing
at once; and a write that still finds it locked is retried.
"""

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import project_root
from cnnpipe.progress import quiet

BUSY_TIMEOUT = 60  # seconds a SQLite connection waits for another process's write


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def local_store() -> Path | None:
    """The SQLite file behind the tracking URI, if it is one."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?")[0])


def mlflow_uri() -> str:
    """The URI handed to MLflow: SQLite gets a busy timeout (a SQLAlchemy URL parameter)."""
    uri = tracking_uri()
    if local_store() is not None and "?" not in uri:
        uri += f"?timeout={BUSY_TIMEOUT}"
    return uri


@contextlib.contextmanager
def store_lock():
    """Serialise a critical section across the processes sharing a local store (schema
    creation, moving the registry's alias); a no-op for a tracking server."""
    store = local_store()
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
# How MLflow's client reports a request it gave up on after its own retries (7 by default,
# about four minutes: a server restarted within that time is waited for).
GAVE_UP = ("API request to", "failed with exception")
RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def server_lost(exc: BaseException) -> bool:
    """A tracking server that stopped answering (or whose database did) mid-run."""
    return all(part in str(exc) for part in GAVE_UP)


def lost_server_error(exc: BaseException) -> CnnpipeError:
    reason = " ".join(str(exc).split())[:300]
    return CnnpipeError(
        f"lost the MLflow server at {tracking_uri()} ({reason}); start it again and re-run "
        "`dvc repro`: training resumes from its last finished epoch into the same run"
    )


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


def connect(params) -> str | None:
    """The id of the experiment to log to, or None when this process tracks nothing.

    An unreachable store stops the stage within seconds, before any work is done, or with
    `tracking.required: false` lets it go on untracked. Either way no output is touched.
    """
    if not params.tracking.enabled:
        print("MLflow tracking is off (tracking.enabled: false)", file=sys.stderr)
        return None
    uri = tracking_uri()
    try:
        if uri.startswith(("http:", "https:")):
            _probe(uri)
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


def _probe(uri: str, timeout: float = 10) -> None:
    """A tracking server answers /health within `timeout` seconds, or this raises. MLflow's
    own calls retry a server that does not answer for minutes, which is right for one that
    restarts during a run, not for one that is not there when the stage starts."""
    import urllib.request

    with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
        pass


def _experiment_id(name: str) -> str:
    import mlflow

    if quiet():
        # Into a log (dvc queue logs, CI) MLflow's INFO lines (schema created, system
        # metrics started and stopped) are noise; its warnings and errors still show. Set
        # after the import, which configures MLflow's loggers.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(mlflow_uri())
    store = local_store()
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


# SQLite's words for it, then PostgreSQL's (through a server).
DATASET_RACE = (
    *LOCKED,
    "UNIQUE constraint failed: datasets",
    "duplicate key value violates unique constraint",
)
