"""`cnnpipe server`: a team's tracking server. MLflow's server with its runs in a database
(PostgreSQL) and its artifacts in an object store (S3, or anything that speaks its API:
MinIO, Ceph, moto's server on a laptop), which the server proxies: a client needs the
server's address and nothing else, neither the database's password nor S3 credentials.

Both stores are checked before the server starts, so a wrong URI, a database that does not
answer or a missing bucket stops it within seconds with the problem named, instead of a
server that starts and fails each request.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from cnnpipe.errors import CnnpipeError

BACKEND_ENV = "MLFLOW_BACKEND_STORE_URI"  # the names `mlflow server` itself reads
ARTIFACTS_ENV = "MLFLOW_ARTIFACTS_DESTINATION"
S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"  # MLflow's name for a non-AWS S3 endpoint
DATABASES = ("postgresql", "mysql", "mssql", "sqlite")


def hide_password(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_backend(uri: str, timeout: int = 10) -> None:
    """The database answers: a connection opens within `timeout` seconds."""
    scheme = urllib.parse.urlsplit(uri).scheme.split("+")[0]
    if scheme not in DATABASES:
        raise CnnpipeError(
            f"backend store {hide_password(uri)!r}: not a database URI; give one such as "
            "postgresql://mlflow@db.example:5432/mlflow"
        )
    # SQLAlchemy comes with MLflow; the driver (psycopg2 for PostgreSQL) with cnnpipe.
    import sqlalchemy

    options = {"connect_timeout": timeout} if scheme in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=options)
    except Exception as exc:  # no such driver, a malformed URI
        raise CnnpipeError(f"backend store {hide_password(uri)}: {_first_line(exc)}") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:  # refused, timed out, no such database or user
        raise CnnpipeError(
            f"cannot reach the backend store {hide_password(uri)} ({_first_line(exc)})"
        ) from None
    finally:
        engine.dispose()


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).strip().split("\n")[0].split())[:300]


def check_artifacts(destination: str) -> None:
    """An s3:// destination's bucket exists and this machine may use it, through
    MLFLOW_S3_ENDPOINT_URL when that is set; a local folder is created."""
    parts = urllib.parse.urlsplit(destination)
    if parts.scheme in ("", "file"):
        os.makedirs(parts.path if parts.scheme else destination, exist_ok=True)
        return
    if parts.scheme != "s3" or not parts.netloc:
        raise CnnpipeError(
            f"artifacts destination {destination!r}: give s3://BUCKET/PREFIX or a folder"
        )
    import boto3
    import botocore.config
    import botocore.exceptions

    endpoint = os.environ.get(S3_ENDPOINT_ENV) or None
    where = f" at {endpoint}" if endpoint else ""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=botocore.config.Config(connect_timeout=10, retries={"max_attempts": 2}),
    )
    try:
        client.head_bucket(Bucket=parts.netloc)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        problem = {"404": "no such bucket", "403": "access denied"}.get(code, str(exc))
        raise CnnpipeError(f"S3 bucket {parts.netloc!r}{where}: {problem}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise CnnpipeError(f"S3 bucket {parts.netloc!r}{where}: {exc}") from None


def server_command(backend: str, artifacts: str, host: str, port: int, workers: int) -> list:
    return [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", backend),
        *("--artifacts-destination", artifacts),
        "--serve-artifacts",  # clients send and fetch artifacts through the server
        *("--host", host, "--port", str(port), "--workers", str(workers)),
    ]


def serve(backend: str | None, artifacts: str | None, host: str, port: int, workers: int):
    """Check both stores, start `mlflow server` on them, say where once it answers, and
    run until it stops or Ctrl-C."""
    backend = backend or os.environ.get(BACKEND_ENV)
    artifacts = artifacts or os.environ.get(ARTIFACTS_ENV)
    if not backend:
        raise CnnpipeError(
            f"no backend store: give --backend-store-uri or set {BACKEND_ENV} "
            "(e.g. postgresql://mlflow@db.example:5432/mlflow)"
        )
    if not artifacts:
        raise CnnpipeError(
            f"no artifacts destination: give --artifacts-destination or set {ARTIFACTS_ENV} "
            "(e.g. s3://team-bucket/mlflow)"
        )
    check_backend(backend)
    check_artifacts(artifacts)
    # A service manager stops it with SIGTERM: stop MLflow's server too, as for Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{host}:{port}"
    banner = (
        f"MLflow tracking server at {url}: runs in {hide_password(backend)}, artifacts in "
        f"{artifacts}. On each client: export MLFLOW_TRACKING_URI={url} (Ctrl-C stops it)"
    )
    command = server_command(backend, artifacts, host, port, workers)
    return run_mlflow(command, url, "the tracking server", banner)


def run_mlflow(command: list, url: str, what: str, banner: str) -> int:
    """Run an MLflow server (`mlflow ui`, `mlflow server`) until it ends or Ctrl-C, and
    print `banner` once `url` answers (MLflow takes some seconds to start), so that
    opening the address at once works."""
    # MLflow's job runner (three more processes, for GenAI evaluation jobs) has nothing to
    # do for these runs.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    server = subprocess.Popen(command, env=env)
    try:
        wait_until_answering(url, server, limit=180, what=what)
        print(banner, flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def wait_until_answering(url: str, server: subprocess.Popen, limit: float, what: str) -> None:
    """Until `url`/health answers; an error if `server` ends first or `limit` s pass."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CnnpipeError(f"{what} stopped before it answered at {url} (port in use?)")
        try:
            with direct.open(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise CnnpipeError(f"{what} did not answer at {url} within {limit:g} s")
