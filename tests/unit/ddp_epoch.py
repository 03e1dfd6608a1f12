"""Run under torchrun by test_distributed.py: one DDP epoch of LeNet-5 on the digits, every
augmentation on, two batches to an optimiser step, the gradients clipped and a moving
average of the weights kept, every batch's loss and hits recorded on its rank; rank 0
writes what train_epoch returned, what all ranks recorded and each rank's digest of its
final weights and their average to the JSON file named in argv[1]."""

import ctypes
import hashlib
import json
import sys
import warnings

import torch
import torch.distributed as dist
from augmentations import every_augmentation

from cnnpipe import distributed
from cnnpipe.checkpoint import ModelSpec
from cnnpipe.config import DataConfig, parse_params
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.sources import read_source
from cnnpipe.device import seed_everything
from cnnpipe.engine import make_engine
from cnnpipe.losses import hard_labels

device = torch.device("cpu")
rank, world = distributed.setup(device)
# Whether setup asked Linux to end this worker with its launcher (PR_GET_PDEATHSIG).
death_signal = ctypes.c_int(0)
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(2, ctypes.byref(death_signal), 0, 0, 0)
images, labels, classes = read_source(DataConfig(image_size=16))
images, labels = images[:600], labels[:600]
mean, std = channel_stats(images)
augment = every_augmentation(16, 10)
data = DeviceData(images, labels, mean, std, device, augment)
params = parse_params(
    {
        "epochs": 1,
        "seed": 0,
        "batch_size": 32,
        "train": {"grad_accum_steps": 2, "clip_grad_norm": 1.0, "ema_decay": 0.9},
    }
)
seed_everything(0)
model = ModelSpec("lenet", 10, 1, 16, mean, std, classes).build()
engine = make_engine(model, params, device, -(-len(data) // world // 32))

recorded = []
loss_fn = engine.loss_fn


def recording_loss(logits, target):
    loss = loss_fn(logits, target)
    hits = (logits.argmax(1) == hard_labels(target)).sum().item()
    recorded.append([loss.item() * len(target), hits, len(target)])
    return loss


engine.loss_fn = recording_loss
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    loss, acc = engine.train_epoch(data, 32, torch.Generator().manual_seed(0), 1, rank, world)
everyone = [None] * world
dist.all_gather_object(everyone, recorded)
digest = hashlib.sha256()
for value in [*engine.module.state_dict().values(), *engine.ema.state_dict().values()]:
    digest.update(value.numpy().tobytes())
digests = [None] * world
dist.all_gather_object(digests, digest.hexdigest())
if rank == 0:
    result = {
        "loss": loss,
        "acc": acc,
        "batches": [batch for part in everyone for batch in part],
        "warnings": [str(w.message) for w in caught],
        "weights": digests,
        "steps": engine.schedule.last_epoch,
        "death_signal": death_signal.value,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(result, f)
distributed.teardown()
