"""A throwaway copy of this repository to run the real CLIs in, shared by the tests and
the benchmarks (so it needs nothing but the standard library and PyYAML)."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def threads_per_worker(workers: int) -> int:
    """One test worker's share of the cores when `workers` run side by side. Two workers
    whose PyTorch each spins a thread per core on two cores run several times slower than
    with one thread each (a 30-epoch LeNet loop: 19.5 s vs 92 s)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def cli_env(**extra) -> dict[str, str]:
    """Environment for the real CLIs: this venv first on PATH, no outside MLflow server.
    (Under pytest, conftest has put the worker's OMP_NUM_THREADS in the environment.)"""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        GIT_AUTHOR_NAME="cnnpipe tests",
        GIT_AUTHOR_EMAIL="tests@cnnpipe.invalid",
        GIT_COMMITTER_NAME="cnnpipe tests",
        GIT_COMMITTER_EMAIL="tests@cnnpipe.invalid",
    )
    env.update(extra)
    return env


def as_in_a_terminal() -> None:
    """Popen's preexec_fn for a command a test stops with Ctrl-C (SIGINT), as a person
    would in a terminal. A shell without job control starts background jobs (`make test &`)
    with SIGINT ignored, every child inherits that, and Python then never raises
    KeyboardInterrupt: the command would not hear the test's Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(cmd, cwd, check=True, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, shell=isinstance(cmd, str)
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def make_clone(dest: Path) -> Path:
    """A fresh repository holding the working tree's files (committed or not), never its outputs.

    Its stages import cnnpipe from this checkout's editable install: the same code.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    # dvc.lock records this checkout's own results; a fresh clone of main has none.
    for name in filter(lambda n: n and n != "dvc.lock", listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "clone for tests"], dest)
    return dest


def copy_repo(source: Path, dest: Path) -> Path:
    """A copy of a clone that has run the pipeline: git history, DVC cache and outputs, and
    its MLflow store, so a test can change it without paying for the training again.

    MLflow records absolute artifact locations; in the copy they name the copy's own
    folder, so runs logged there stay there. DVC's temporary state is left behind (DVC
    rebuilds it; it holds the original's paths).
    """

    def skipped(folder, names):
        return ["tmp"] if Path(folder) == source / ".dvc" else []

    shutil.copytree(source, dest, symlinks=True, ignore=skipped)
    store = dest / "mlflow.db"
    if store.exists():
        import sqlite3

        with contextlib.closing(sqlite3.connect(store)) as db, db:
            tables = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for column in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if column[2].upper().startswith(("VARCHAR", "TEXT")):
                        db.execute(
                            f'UPDATE "{table}" SET "{column[1]}" = REPLACE("{column[1]}", ?, ?)',
                            (str(source), str(dest)),
                        )
    return dest


def set_params(repo, **values):
    """Edit params.yaml in a clone; `section__key=value` reaches nested keys."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in values.items():
        *path, last = key.split("__")
        section = params
        for part in path:
            section = section[part]
        section[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def experiments_shown(repo) -> dict[str, dict]:
    """The experiments `dvc exp show --json` lists, by name -> their data (params, metrics)."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    revs = [rev for base in shown for exp in base.get("experiments") or [] for rev in exp["revs"]]
    names = [rev["name"] for rev in revs]
    assert len(set(names)) == len(names), f"an experiment listed twice: {names}"
    return {rev["name"]: rev["data"] for rev in revs}
