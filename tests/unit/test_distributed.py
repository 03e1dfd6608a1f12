"""DistributedDataParallel on two Gloo processes on the CPU, as torchrun starts them."""

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import REPO, run


def test_epoch_figures_cover_every_ranks_batches_and_no_stride_warning(tmp_path):
    out = tmp_path / "epoch.json"
    script = Path(__file__).with_name("ddp_epoch.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = run([*cmd, str(script), str(out)], REPO)
    logged = json.loads(out.read_text())
    batches = logged["batches"]
    assert len(batches) == 2 * 10  # 600 images, 300 a rank, batches of 32: 10 steps each
    images = sum(n for _, _, n in batches)
    assert logged["loss"] == pytest.approx(sum(s for s, _, _ in batches) / images, rel=1e-6)
    assert logged["acc"] == pytest.approx(sum(h for _, h, _ in batches) / images)
    everything = result.stdout + result.stderr + " ".join(logged["warnings"])
    assert "Grad strides do not match bucket view strides" not in everything
    # Ten batches a rank, two to a step: five steps, after which the ranks agree.
    assert logged["steps"] == 5
    assert len(set(logged["weights"])) == 1
    # A worker ends with its launcher, even one killed outright (see below).
    assert logged["death_signal"] == (9 if sys.platform.startswith("linux") else 0)


def alive(pid: int) -> bool:
    """The process runs (a dead one not yet reaped is a zombie, 'Z')."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
@pytest.mark.parametrize("asks", [True, False])
def test_a_worker_dies_with_its_launcher_killed_outright(asks):
    """Like torchrun, the launcher starts its worker in a session of its own and is then
    killed with SIGKILL: the worker that asked to die with it does; one that did not
    would go on training alone."""
    import signal
    import subprocess
    import time

    ask = "from cnnpipe.distributed import die_with_launcher; die_with_launcher(); " if asks else ""
    worker = f"{ask}import time; print('ready', flush=True); time.sleep(60)"
    launcher = (
        "import subprocess, sys; "
        f"w = subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True); "
        "print(w.pid, flush=True); w.wait()"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    # The worker shares the launcher's stdout and may print before the launcher does.
    lines = {parent.stdout.readline().strip() for _ in range(2)}
    assert "ready" in lines, lines
    (pid,) = (int(line) for line in lines - {"ready"})
    parent.kill()
    parent.wait()
    # Dead at once when it asked; the other is given a second to show it lives on.
    deadline = time.monotonic() + (10 if asks else 1)
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert alive(pid) != asks
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
