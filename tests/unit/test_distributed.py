"""DistributedDataParallel on two Gloo processes on the CPU, as torchrun starts them."""

import json
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
