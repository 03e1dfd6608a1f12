"""The suite's own set-up: each pytest-xdist worker, and every CLI it starts, runs PyTorch
on its share of the cores, so that two workers do not spin two threads each on two."""

import os
import subprocess
import sys

from workspace import REPO, threads_per_worker

PLUGIN = """
import os

def pytest_runtest_logstart(nodeid, location):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        with open(os.environ["THREADS_SEEN"], "a") as seen:
            seen.write(os.environ.get("OMP_NUM_THREADS", "unset") + "\\n")
"""


def test_each_xdist_worker_gets_its_share_of_the_cores(tmp_path):
    (tmp_path / "threads_seen.py").write_text(PLUGIN)
    seen = tmp_path / "seen.txt"
    env = {
        k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and not k.startswith("PYTEST")
    }
    env.update(PYTHONPATH=str(tmp_path), THREADS_SEEN=str(seen))
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "threads_seen"]
    command += ["-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run")]
    result = subprocess.run(
        [*command, "tests/unit/test_files.py"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert set(seen.read_text().split()) == {str(threads_per_worker(2))}
