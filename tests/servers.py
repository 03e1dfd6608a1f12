"""Real servers for the tests, each on a free 127.0.0.1 port and stopped afterwards with
everything it started: PostgreSQL (Debian's; it refuses to run as root, so it runs as its
`postgres` user from a data folder in a temporary directory), an S3 endpoint (moto's
server, standing in for S3, MinIO or Ceph) and `cnnpipe server` on the two."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from workspace import cli_env

# Any key pair works with moto; only the tracking server gets them, never a client.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_processes(match) -> list[str]:
    """The command lines of running (not zombie) processes for which `match(stat fields,
    command line)` holds: what a server left behind."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it ended meanwhile
            continue
        if fields[0] != "Z" and match(fields, command):
            found.append(command)
    return found


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass
class Postgres:
    url: str  # postgresql://postgres@127.0.0.1:PORT/mlflow
    data: Path
    options: str
    as_postgres: list
    bin: Path

    def pg_ctl(self, *args: str) -> None:
        command = [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        log = str(self.data.parent / "postgres.log")
        self.pg_ctl("-o", self.options, "-l", log, "-w", "start")


@contextlib.contextmanager
def postgresql(database: str = "mlflow"):
    """A PostgreSQL server with one empty database, trusting local connections."""
    bin = postgres_bin()
    if bin is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    # Not under pytest's private temporary folder: the postgres user must reach its data.
    folder = Path(tempfile.mkdtemp(prefix="cnnpipe-postgres-"))
    folder.chmod(0o755)
    as_postgres = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    init = [str(bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
    subprocess.run([*as_postgres, *init], check=True, capture_output=True, timeout=120)
    # A test database: nothing to keep across a crash, so no waiting for the disk.
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
    server = Postgres(url, data, options, as_postgres, bin)
    try:
        server.start()
        create = [str(bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        subprocess.run([*create, database], check=True, capture_output=True, timeout=60)
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    left = live_processes(lambda fields, command: str(data) in command)
    assert not left, f"PostgreSQL left processes behind: {left}"


@contextlib.contextmanager
def s3_endpoint(bucket: str = "team"):
    """moto's S3 server with one empty bucket; yields its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=url, **s3_keys()).create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


def s3_keys() -> dict:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


class TeamServer:
    """`cnnpipe server` on `port` (else a free one). It alone holds the S3 credentials.
    Its log is appended to, so a restarted server adds to it."""

    def __init__(self, backend: str, artifacts: str, s3: str, log: Path, port=None):
        self.port, self.log = port or free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = ["cnnpipe", "server", "--backend-store-uri", backend]
        self.command += ["--artifacts-destination", artifacts, "--host", "127.0.0.1"]
        self.command += ["--port", str(self.port), "--workers", "1"]
        self.env = cli_env(MLFLOW_S3_ENDPOINT_URL=s3, **S3_CREDENTIALS)
        self.process = None

    def start(self, limit: float = 180) -> str:
        """Start it and return its URL once it answers."""
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the server and MLflow's, one process group
            )
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + limit
        while True:
            try:
                with direct.open(f"{self.url}/health", timeout=2):
                    return self.url
            except OSError:
                pass
            said = self.log.read_text()[-3000:]
            if self.process.poll() is not None:
                raise AssertionError(f"cnnpipe server exited:\n{said}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"cnnpipe server silent for {limit} s:\n{said}")
            time.sleep(0.5)

    def stop(self, how=signal.SIGTERM) -> None:
        """Stop it and everything it started (SIGKILL: as a crash would)."""
        if self.process is None or self.process.poll() is not None:
            return
        group = self.process.pid
        os.killpg(group, how)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        # MLflow's server and its workers are in the same process group: gone too.
        deadline = time.monotonic() + 30
        while left := live_processes(lambda fields, command: fields[3] == str(group)):
            assert time.monotonic() < deadline, f"cnnpipe server left processes behind: {left}"
            time.sleep(0.2)


@contextlib.contextmanager
def team_server(backend: str, artifacts: str, s3: str, log: Path):
    """A TeamServer for the block; yields its URL once it answers."""
    server = TeamServer(backend, artifacts, s3, log)
    try:
        yield server.start()
    finally:
        server.stop()
