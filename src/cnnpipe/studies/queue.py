"""DVC's experiment queue, driven through its CLI: queue the settings, start the workers
with their share of the cores, and wait, saying as each experiment finishes."""

import itertools
import os
import subprocess
import tempfile
import time

from cnnpipe.errors import CnnpipeError
from cnnpipe.studies.spec import yaml_value

# One `dvc` call that takes longer than this is stuck, not slow.
DVC_CALL_TIMEOUT = 300
ENDED = ("Success", "Failed")


def dvc(*args: str, quiet: bool = False, env: dict | None = None) -> str:
    """Run a `dvc` command and return its output (nothing with `quiet`).

    The workers `dvc queue start` leaves behind inherit its stdout and stderr. Through a
    pipe, reading to the end would wait until the last worker exits, ten seconds after
    the queue has run dry: the study would sit out its whole queue in that one call. So
    errors go to a file, read once the command itself has exited, and quiet output nowhere.
    """
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    with tempfile.TemporaryFile("w+") as errors:
        try:
            done = subprocess.run(
                ["dvc", *args],
                stdout=out,
                stderr=errors,
                text=True,
                env=env,
                timeout=DVC_CALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise CnnpipeError(
                f"dvc {' '.join(args)} gave no answer in {DVC_CALL_TIMEOUT} s"
            ) from None
        if done.returncode != 0:
            errors.seek(0)
            raise CnnpipeError(f"dvc {' '.join(args)} failed: {errors.read().strip()[-1500:]}")
    return done.stdout or ""


# A study asks how training goes: its experiments run up to evaluate (the test score),
# not export and inspect, which would add half again to each one's time.
TARGET = "evaluate"


def queue(settings: list[dict], fixed: dict[str, object]) -> None:
    """One queued `dvc exp run` per setting, each with the `fixed` params too."""
    for setting in settings:
        queue_one({**fixed, **setting})


def queue_one(setting: dict[str, object], name: str | None = None) -> None:
    """A queued `dvc exp run` with these params, named `name` (else DVC names it)."""
    values = [f"{k}={yaml_value(v)}" for k, v in setting.items()]
    overrides = itertools.chain.from_iterable(("-S", v) for v in values)
    named = ("--name", name) if name else ()
    dvc("exp", "run", "--queue", TARGET, *named, *overrides)


def worker_env(jobs: int) -> dict[str, str]:
    """The environment for `jobs` parallel workers: each gets its share of the CPU cores
    for PyTorch's threads (unless OMP_NUM_THREADS says otherwise). Two workers that each
    start a thread per core spin against each other: on 2 cores a 3.6 s training took
    64 to 69 s that way."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return env


def statuses() -> dict[str, str]:
    """Each experiment of the queue by name -> its status, from `dvc queue status`."""
    return queue_status()[0]


def queue_status() -> tuple[dict[str, str], int]:
    """`dvc queue status`: each experiment by name -> its status, and the workers busy or
    idle."""
    found, workers = {}, 0
    for line in dvc("queue", "status").splitlines():
        words = line.split()
        if len(words) >= 3 and words[-1] in (*ENDED, "Queued", "Running"):
            found[words[1]] = words[-1]
        elif line.startswith("Worker status:"):  # "Worker status: 1 active, 0 idle"
            workers = sum(int(w) for w in words if w.isdigit())
    return found, workers


def run_queue(jobs: int, poll: float = 3.0, timeout: float | None = None) -> None:
    """Run the queue on `jobs` workers and wait until nothing is queued or running; a line
    for each experiment as it ends. With `timeout` (seconds) give up, naming those still
    waiting.

    One worker starts alone, and the others join once its first experiment has ended:
    experiments that start together run the stages they share (prepare, split) at once,
    and DVC's run cache fails one of them writing the same entry. After the first, the
    others find those stages in the run cache.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    before = {name for name, status in statuses().items() if status in ENDED}
    ended = []  # this run's, in the order they ended
    dvc("queue", "start", "-j", "1", quiet=True, env=worker_env(jobs))
    joined = jobs == 1
    while True:
        current = statuses()
        for name, status in current.items():
            if status in ENDED and name not in before and name not in ended:
                ended.append(name)
                print(f"  {name}: {status.lower()}", flush=True)
        waiting = sorted(n for n, s in current.items() if s not in ENDED)
        if not waiting:
            return
        if not joined and ended:
            dvc("queue", "start", "-j", str(jobs - 1), quiet=True, env=worker_env(jobs))
            joined = True
        if deadline is not None and time.monotonic() > deadline:
            raise CnnpipeError(
                f"the queue did not finish in {timeout:g} s; still queued or running: "
                f"{', '.join(waiting)} (`dvc queue status`, `dvc queue kill NAME`)"
            )
        time.sleep(poll)
