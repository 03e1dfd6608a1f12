"""Training augmentation of whole batches on their device: every image draws its own
parameters, and no Python loop runs over the images. The draws come from the CPU
generator that orders the epoch, so the same seed gives the same batches on any device
and a resumed run continues them exactly.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.crops import centre_offset
from cnnpipe.data.colour import draw_jitter, jitter

# torchvision's RandomErasing defaults: the erased share of the image, its aspect ratio.
ERASE_SCALE, ERASE_RATIO, ERASE_ATTEMPTS = (0.02, 0.33), (0.3, 3.3), 10


class Augment:
    """A training batch's augmentation, drawn for a whole uint8 batch (B, C, H, W) at once
    on its device. Before normalisation (`__call__`): crops of `size` pixels, padded or
    resized (RandomResizedCrop), random horizontal flips, colour jitter (colour.py).
    After it (`mix`): random erasing, then MixUp or CutMix.

    A padded crop may start anywhere in the image (prepared larger than `size`:
    `data.resize_size`) and up to `crop_padding` pixels outside it, where it reads black.
    Crop and flip are one gather: each output pixel's source row and column are computed
    (the column read backwards for a flipped image) and read in a single indexing step;
    a source outside the image is the black padding, so nothing is padded or copied first.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        hflip: bool = False,
        size=None,
        source_size=None,
        erasing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        num_classes: int | None = None,
        resized_crop: tuple[float, float] | None = None,
        colour: tuple[float, float] | None = None,
    ):
        self.padding, self.hflip = crop_padding, hflip
        self.colour = colour  # (brightness, contrast and saturation strength; hue)
        self.resized_crop = resized_crop  # (least area share, largest aspect ratio)
        self.size, self.source_size = size, source_size or size
        self.erasing, self.num_classes = erasing, num_classes
        self.alphas = {"mixup": mixup_alpha, "cutmix": cutmix_alpha}
        if any(self.alphas.values()) and not num_classes:
            raise ValueError("MixUp and CutMix need num_classes for their soft targets")

    @classmethod
    def from_params(cls, params, num_classes: int, source_size: int) -> "Augment":
        """The training augmentation params.augment asks for, cutting params.data.image_size
        crops from images prepared at `source_size`."""
        cfg = params.augment
        return cls(
            cfg.crop_padding,
            cfg.hflip,
            params.data.image_size,
            source_size,
            erasing=cfg.random_erasing,
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            num_classes=num_classes,
            resized_crop=(cfg.crop_scale, cfg.crop_ratio) if cfg.random_resized_crop else None,
            colour=(cfg.color_jitter, cfg.hue) if cfg.color_jitter or cfg.hue else None,
        )

    @property
    def geometric(self) -> bool:
        return bool(
            self.padding or self.hflip or self.resized_crop or self.source_size != self.size
        )

    def __bool__(self) -> bool:
        return (
            self.geometric or bool(self.colour) or bool(self.erasing) or any(self.alphas.values())
        )

    def mix(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """(images, targets) of a normalised batch: random erasing (to 0, the mean colour,
        as torchvision's RandomErasing does after Normalize), then MixUp or CutMix, whose
        targets are class probabilities (N, classes); without them the labels stay."""
        if self.erasing:
            images = erase(images, draw_erasing(images.shape, self.erasing, generator))
        kinds = [kind for kind, alpha in self.alphas.items() if alpha]
        if not kinds:
            return images, labels
        # One of the two for each batch, as the references' RandomChoice([MixUp, CutMix]).
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
        mixing = draw_mix(kind, self.alphas[kind], images.shape, generator)
        return apply_mix(images, F.one_hot(labels, self.num_classes).float(), mixing)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch's geometric augmentation, then its colour jitter: uint8 in; uint8 out
        for crops and flips alone, else float pixel values (0..255)."""
        if self.geometric:
            crops = self._resized_crops if self.resized_crop else self._crops
            images = crops(images, generator)
        if self.colour:
            strength, hue = self.colour
            drawn = draw_jitter(len(images), strength, hue, generator)
            images = jitter(images, drawn, (bool(strength),) * 3 + (bool(hue),))
        return images

    def _crops(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, channels, height, width = images.shape
        size, device, p = self.size or height, images.device, self.padding
        # Draws on the CPU generator, so the same seed gives the same batches anywhere.
        shift = torch.randint(0, height - size + 2 * p + 1, (2, n), generator=generator) - p
        flip = (
            torch.rand(n, generator=generator) < 0.5
            if self.hflip
            else torch.zeros(n, dtype=torch.bool)
        )
        dy, dx, flip = shift[0].to(device), shift[1].to(device), flip.to(device)
        steps = torch.arange(size, device=device)
        rows = dy[:, None] + steps  # (n, size): the source row of each output row
        cols = torch.where(flip[:, None], size - 1 - steps, steps) + dx[:, None]  # (n, size)
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
            :, None, :
        ]
        source = (
            rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
        )
        flat = images.reshape(n, channels, height * width)
        picked = flat.gather(2, source.reshape(n, 1, -1).expand(-1, channels, -1))
        # Zero where the source lies in the padding.
        return (picked * inside.reshape(n, 1, -1)).reshape(n, channels, size, size)

    def _resized_crops(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """torchvision's RandomResizedCrop (then RandomHorizontalFlip) for every image at
        once: each draws its box, and one bilinear sampling brings every box to `size`."""
        n, _, height, width = images.shape
        size = self.size or height
        box = draw_resized_crop((n, height, width), *self.resized_crop, generator)
        flip = (
            torch.rand(n, generator=generator) < 0.5
            if self.hflip
            else torch.zeros(n, dtype=torch.bool)
        )
        return resample(images, box, size, flip)


def centre(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """The centre size x size of a batch (B, C, H, W), as images.centre_crop cuts a picture."""
    height, width = images.shape[-2:]
    if size is None or (height, width) == (size, size):
        return images
    top, left = centre_offset(height, size), centre_offset(width, size)
    return images[..., top : top + size, left : left + size]


@dataclass
class Box:
    """Each image's rectangle: top, left, height, width (long tensors (N,))."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


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


def draw_resized_crop(shape, min_scale: float, max_ratio: float, generator) -> Box:
    """torchvision's RandomResizedCrop draws for a whole batch: an area share from
    min_scale to 1 and an aspect ratio from 1/max_ratio to max_ratio (log-uniform), up to
    ten tries for a box that fits, else the centre crop that the ratio allows; then a
    uniform position."""
    n, height, width = shape
    area = height * width * torch.empty(n, 10).uniform_(min_scale, 1.0, generator=generator)
    bound = math.log(max_ratio)
    aspect = torch.empty(n, 10).uniform_(-bound, bound, generator=generator).exp()
    w, h = (area * aspect).sqrt().round().long(), (area / aspect).sqrt().round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first, found = fits.long().argmax(dim=1), fits.any(dim=1)
    rows = torch.arange(n)
    h, w = h[rows, first], w[rows, first]
    top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
    # No try fitted: the whole image, cut to the nearest allowed aspect ratio, centred.
    fallback_h, fallback_w = height, width
    if width / height < 1 / max_ratio:
        fallback_h = int(round(width * max_ratio))
    elif width / height > max_ratio:
        fallback_w = int(round(height * max_ratio))

    def keep(drawn, other):
        return torch.where(found, drawn, torch.full_like(drawn, other))

    return Box(
        keep(top, (height - fallback_h) // 2),
        keep(left, (width - fallback_w) // 2),
        keep(h, fallback_h),
        keep(w, fallback_w),
    )


def resample(images: torch.Tensor, box: Box, size: int, flip: torch.Tensor) -> torch.Tensor:
    """Each image's box resized to size x size as bilinear interpolation without
    antialiasing samples it (torch's interpolate, align_corners=False: the box's edge
    pixels repeat beyond it), mirrored where `flip`. uint8 in, float pixel values 0..255
    out, not rounded back to uint8: they are normalised next anyway (torchvision's
    resized_crop on a float image gives the same)."""
    n, _, height, width = images.shape
    device = images.device
    steps = torch.arange(size, device=device, dtype=torch.float64) + 0.5

    def sources(start, extent, mirrored=None):
        extent = extent.to(device, torch.float64)[:, None]
        inside = (steps * extent / size - 0.5).clamp(min=0).minimum(extent - 1)
        if mirrored is not None:
            inside = torch.where(mirrored.to(device)[:, None], inside.flip(1), inside)
        return start.to(device, torch.float64)[:, None] + inside

    ys = sources(box.top, box.height)
    xs = sources(box.left, box.width, flip)
    # grid_sample with align_corners=True reads pixel centres at -1 .. 1 exactly.
    grid = torch.stack(
        [
            (xs / (width - 1) * 2 - 1)[:, None, :].expand(n, size, size),
            (ys / (height - 1) * 2 - 1)[:, :, None].expand(n, size, size),
        ],
        dim=-1,
    )
    return F.grid_sample(
        images.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=True
    )
