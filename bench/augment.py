"""Images/s of cnnpipe's batched augmentation against torchvision.transforms.v2 applied per
image in DataLoader workers (the reference recipes' way), on the same images, and the share
of a ResNet-18 training step that the batched augmentation takes.

Both pipelines do the same work on uint8 photos prepared at 256 px: RandomResizedCrop to
224 (bilinear; torchvision's without antialiasing, as cnnpipe's), a horizontal flip,
TrivialAugmentWide (`--policy`), normalisation, random erasing (p 0.1) and MixUp/CutMix
for the batch: torchvision's classification reference with `--auto-augment ta_wide
--random-erase 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0`.

Each path is timed twice: with glibc's default malloc (as the references run), then with
freed memory kept for the next batch (device.reuse_freed_memory, as cnnpipe's train stage
runs; the DataLoader workers inherit it).

    python bench/augment.py                      # the CPU, 64 x 3 x 224 x 224 batches
    python bench/augment.py --policy none        # without the automatic policy
    python bench/augment.py --device cuda --batches 50
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import network_batch
from cnnpipe.device import reuse_freed_memory
from cnnpipe.pixels import Normalize

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TORCHVISION_POLICIES = {
    "trivial_augment": v2.TrivialAugmentWide,
    "rand_augment": v2.RandAugment,
    "auto_augment": v2.AutoAugment,
}


def photos(count: int, side: int = 256) -> torch.Tensor:
    """`count` uint8 colour images (N, 3, side, side): scikit-learn's two sample photos,
    cut into shifted squares, so the pixels are those of real photos."""
    from sklearn.datasets import load_sample_images

    out = torch.empty(count, 3, side, side, dtype=torch.uint8)
    sources = [torch.from_numpy(p).permute(2, 0, 1) for p in load_sample_images().images]
    for i in range(count):
        source = sources[i % 2]
        top, left = (i * 7) % (source.shape[1] - side), (i * 13) % (source.shape[2] - side)
        out[i] = source[:, top : top + side, left : left + side]
    return out


class PerImage(Dataset):
    """The references' way: each worker transforms one image at a time."""

    def __init__(self, images, labels, policy: str):
        self.images, self.labels = images, labels
        automatic = [TORCHVISION_POLICIES[policy]()] if policy != "none" else []
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(224, antialias=False),
                v2.RandomHorizontalFlip(),
                *automatic,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(MEAN, STD),
                v2.RandomErasing(0.1),
            ]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def reference_rate(images, labels, batch, batches, workers, policy) -> float:
    mix = v2.RandomChoice(
        [v2.MixUp(alpha=0.2, num_classes=10), v2.CutMix(alpha=1.0, num_classes=10)]
    )

    def collate(items):
        return mix(*torch.utils.data.default_collate(items))

    loader = DataLoader(
        PerImage(images, labels, policy),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    seen, start = 0, None
    while seen < batches:
        for _batch in loader:
            if start is None:  # the workers have started: time from the first batch on
                start, seen = time.perf_counter(), 0
            seen += 1
            if seen >= batches:
                break
    return batch * (seen - 1) / (time.perf_counter() - start)


def batched_rate(images, labels, batch, batches, device, policy) -> tuple[float, float]:
    augment = Augment(
        hflip=True,
        size=224,
        source_size=256,
        erasing=0.1,
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        num_classes=10,
        resized_crop=(0.08, 4 / 3),
        policy=(policy, 9) if policy != "none" else None,
    )
    normalize = Normalize(MEAN, STD).to(device)
    images, labels = images.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(0)
    times = []
    for i in range(batches + 1):
        rows = torch.randint(len(labels), (batch,), generator=generator).to(device)
        start = time.perf_counter()
        x, _ = network_batch(images[rows], labels[rows], normalize, 224, augment, generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first batch warms up
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return batch / seconds, seconds


def step_seconds(batch, device, steps=3) -> float:
    """A ResNet-18 training step (forward, backward, SGD) on a 224 px batch."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(10, (batch,), device=device)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="the reference's DataLoader workers")
    parser.add_argument(
        "--policy", default="trivial_augment", choices=["none", *TORCHVISION_POLICIES]
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    images = photos(256)
    labels = torch.arange(256) % 10
    batched = (images, labels, args.batch, args.batches, device, args.policy)
    reference = (images, labels, args.batch, args.batches, args.workers, args.policy)
    default_malloc = {"batched": batched_rate(*batched)[0], "per_image": reference_rate(*reference)}
    reuse_freed_memory(device)
    rate, augment_s = batched_rate(*batched)
    reference_rate_now = reference_rate(*reference)
    step = step_seconds(args.batch, device)
    print(
        json.dumps(
            {
                "device": str(device),
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "policy": args.policy,
                "per_image_workers": args.workers,
                "batched_images_per_s": round(rate),
                "per_image_images_per_s": round(reference_rate_now),
                "speedup": round(rate / reference_rate_now, 2),
                "default_malloc": {k: round(v) for k, v in default_malloc.items()},
                "resnet18_step_s": round(step, 3),
                "augment_share_of_step": round(augment_s / (augment_s + step), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
