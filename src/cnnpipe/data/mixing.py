"""The augmentations of a normalised training batch: torchvision's RandomErasing, and
MixUp and CutMix with their soft targets. Drawn for the whole batch at once from the CPU
generator that orders the epoch; applied on the batch's device.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from cnnpipe.data.geometry import Box

# torchvision's RandomErasing defaults: the erased share of the image, its aspect ratio.
ERASE_SCALE, ERASE_RATIO, ERASE_ATTEMPTS = (0.02, 0.33), (0.3, 3.3), 10


@dataclass
class Erasing(Box):
    """Each image's rectangle to erase, and whether it is erased."""

    apply: torch.Tensor


def draw_erasing(shape, p: float, generator: torch.Generator) -> Erasing:
    """torchvision's RandomErasing(p) draws, for a whole batch at once: an area of 2 to 33%
    of the image with an aspect ratio from 0.3 to 3.3 (log-uniform), up to ten tries for
    one that fits, else no erasing; then a uniform position."""
    n, _, height, width = shape
    apply = torch.rand(n, generator=generator) < p
    area = (
        height * width * torch.empty(n, ERASE_ATTEMPTS).uniform_(*ERASE_SCALE, generator=generator)
    )
    low, high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = torch.empty(n, ERASE_ATTEMPTS).uniform_(low, high, generator=generator).exp()
    h, w = (area * aspect).sqrt().round().long(), (area / aspect).sqrt().round().long()
    fits = (h < height) & (w < width)
    first = fits.long().argmax(dim=1)  # the first try that fits
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
    return Erasing(top, left, h, w, apply=apply & fits.any(dim=1))


def erase(images: torch.Tensor, box: Erasing) -> torch.Tensor:
    """Set each chosen image's rectangle to 0 in every channel, in place (the batch is a
    fresh float copy): one masked fill over the chosen images only."""
    chosen = box.apply.nonzero().squeeze(1)
    if len(chosen) == 0:
        return images
    _, _, height, width = images.shape
    device = images.device
    top, left = box.top[chosen].to(device)[:, None], box.left[chosen].to(device)[:, None]
    ys, xs = torch.arange(height, device=device), torch.arange(width, device=device)
    in_rows = (ys >= top) & (ys < top + box.height[chosen].to(device)[:, None])
    in_cols = (xs >= left) & (xs < left + box.width[chosen].to(device)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    chosen = chosen.to(device)
    images[chosen] = images[chosen].masked_fill(mask[:, None], 0.0)
    return images


@dataclass
class Mixing:
    kind: str  # mixup | cutmix
    lam: float  # the share of each image (and its target) that stays its own
    box: tuple[int, int, int, int] | None = None  # CutMix: x1, y1, x2, y2 pasted in


def draw_mix(kind: str, alpha: float, shape, generator: torch.Generator) -> Mixing:
    """torchvision's MixUp and CutMix draws: lambda ~ Beta(alpha, alpha) for the batch;
    CutMix's box centred at a uniform pixel, its sides sqrt(1 - lambda) of the image's,
    cut at the border (lambda then follows the box's true area)."""
    # Beta from NumPy, seeded from the batches' generator: torch's Beta takes no generator.
    seed = int(torch.randint(2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    if kind == "mixup":
        return Mixing(kind, lam)
    _, _, height, width = shape
    x, y = (int(torch.randint(side, (1,), generator=generator)) for side in (width, height))
    r = 0.5 * math.sqrt(1.0 - lam)
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(x - half_w, 0), max(y - half_h, 0)
    x2, y2 = min(x + half_w, width), min(y + half_h, height)
    return Mixing(kind, 1.0 - (x2 - x1) * (y2 - y1) / (width * height), (x1, y1, x2, y2))


def apply_mix(images: torch.Tensor, targets: torch.Tensor, mixing: Mixing):
    """Each image mixed with the one before it in the batch (the first with the last), its
    target likewise, as torchvision's MixUp and CutMix pair them."""
    lam = mixing.lam
    if mixing.kind == "mixup":
        # lam x image + (1 - lam) x the one before, without a rolled copy of the batch.
        mixed = images.mul(lam)
        mixed[1:].add_(images[:-1], alpha=1.0 - lam)
        mixed[:1].add_(images[-1:], alpha=1.0 - lam)
        images = mixed
    else:  # in place: the batch is a fresh float copy, and only the box moves
        x1, y1, x2, y2 = mixing.box
        images[..., y1:y2, x1:x2] = images[..., y1:y2, x1:x2].roll(1, 0)
    return images, targets.roll(1, 0).mul_(1.0 - lam).add_(targets.mul(lam))
