"""Images/s of the project's training step against a plain hand-written PyTorch loop.

Both train the same network on the same data (the digits at 32x32, repeated to fill the
epoch) with the same batch size, optimiser and precision; the ratio shows what the
engine's extras (schedules, loss bookkeeping, non-finite checks, progress) cost.

    python bench/throughput.py --model lenet --device cpu
    python bench/throughput.py --model resnet18 --device cuda --images 50000
    python bench/throughput.py --model resnet18 --device cuda --images 50000 --fast

--fast allows the non-deterministic kernels (train.deterministic: false) for both loops:
the two runs' images/s give the cost of deterministic training. --augment gives the
engine's batches 2-px random crops and flips (the plain loop has none): the ratio with
and without it gives the cost of augmentation.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from cnnpipe import models
from cnnpipe.config import DataConfig, TrainConfig
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.sources import read_source
from cnnpipe.device import amp_dtype, deterministic_pooling, seed_everything, set_deterministic
from cnnpipe.engine import Engine
from cnnpipe.losses import make_loss
from cnnpipe.optim import make_optimizer, make_schedule


def plain_epoch(model, images, labels, mean, std, optimizer, batch_size, amp, channels_last):
    """The loop from the notes, written out by hand: nothing but the step."""
    model.train()
    order = torch.randperm(len(labels)).to(images.device)
    for start in range(0, len(labels), batch_size):
        idx = order[start : start + batch_size]
        x = (images[idx].float() / 255.0 - mean) / std
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
            loss = nn.functional.cross_entropy(model(x), labels[idx])
        loss.backward()
        optimizer.step()


def seconds(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def build(name, device, channels_last, deterministic):
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, in_channels=1, image_size=32).to(device)
    if deterministic and device.type == "cuda":
        model = deterministic_pooling(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=4096, help="images per timed epoch")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs; the best counts")
    parser.add_argument("--fast", action="store_true", help="non-deterministic kernels allowed")
    parser.add_argument("--augment", action="store_true", help="crops and flips, engine only")
    args = parser.parse_args()

    device = torch.device(args.device)
    deterministic = not args.fast
    set_deterministic(deterministic, device)
    seed_everything(0)
    images, labels, _ = read_source(DataConfig(image_size=32, channels=1))
    reps = -(-args.images // len(images))
    images, labels = (
        np.tile(images, (reps, 1, 1, 1))[: args.images],
        np.tile(labels, reps)[: args.images],
    )
    mean, std = channel_stats(images)
    data = DeviceData(images, labels, mean, std, device)
    augmented = DeviceData(images, labels, mean, std, device, Augment(2, True))
    amp = amp_dtype(args.amp, device)
    channels_last = device.type == "cuda"
    cfg = TrainConfig()
    steps = -(-len(data) // args.batch_size)

    # The project's engine, as the train stage builds it.
    model = build(args.model, device, channels_last, deterministic)
    optimizer = make_optimizer("sgd", model.parameters(), 0.01, cfg)
    engine = Engine(
        model=model,
        module=model,
        optimizer=optimizer,
        schedule=make_schedule(optimizer, cfg, 0.01, args.repeats + 2, steps),
        loss_fn=make_loss(cfg),
        device=device,
        amp=amp,
        channels_last=channels_last,
    )
    generator = torch.Generator().manual_seed(0)
    epoch = iter(range(1, 1000))

    def project():
        engine.train_epoch(
            augmented if args.augment else data, args.batch_size, generator, next(epoch)
        )

    # The plain loop on an identical copy.
    plain_model = build(args.model, device, channels_last, deterministic)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def plain():
        plain_epoch(
            plain_model,
            data.images,
            data.labels,
            data.normalize.mean,
            data.normalize.std,
            plain_opt,
            args.batch_size,
            amp,
            channels_last,
        )

    project(), plain()  # warm-up: allocator, cudnn autotuning
    # Alternate the two so that a busy moment of the machine hits both alike; best of each.
    plain_s, project_s = float("inf"), float("inf")
    for _ in range(args.repeats):
        plain_s = min(plain_s, seconds(plain, device))
        project_s = min(project_s, seconds(project, device))
    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "amp": str(amp).replace("torch.", "") if amp else "off",
        "batch_size": args.batch_size,
        "deterministic": deterministic,
        "augment": args.augment,
        "images": len(data),
        "project_images_per_s": round(len(data) / project_s),
        "plain_images_per_s": round(len(data) / plain_s),
        "ratio": round(plain_s / project_s, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
