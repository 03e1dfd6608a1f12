"""The geometric augmentations of a whole uint8 batch (B, C, H, W) on its device: padded
crops and flips as one gather, torchvision's RandomResizedCrop as one bilinear sampling.
Every image draws its own box from the CPU generator that orders the epoch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def draw_flips(n: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Which images are mirrored: each with probability 1/2 (RandomHorizontalFlip)."""
    if not hflip:
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=generator) < 0.5


def padded_crops(images, size: int, padding: int, hflip: bool, generator) -> torch.Tensor:
    """size x size crops that may start anywhere in the image and up to `padding` pixels
    outside it, where they read black; with `hflip` each mirrored with probability 1/2.

    Crop and flip are one gather: each output pixel's source row and column are computed
    (the column read backwards for a flipped image) and read in a single indexing step;
    a source outside the image is the black padding, so nothing is padded or copied first.
    """
    n, _, height, _ = images.shape
    device, p = images.device, padding
    # Draws on the CPU generator, so the same seed gives the same batches anywhere.
    shift = torch.randint(0, height - size + 2 * p + 1, (2, n), generator=generator) - p
    flip = draw_flips(n, hflip, generator)
    dy, dx, flip = shift[0].to(device), shift[1].to(device), flip.to(device)
    steps = torch.arange(size, device=device)
    rows = dy[:, None] + steps  # (n, size): the source row of each output row
    cols = torch.where(flip[:, None], size - 1 - steps, steps) + dx[:, None]  # (n, size)
    return gather_pixels(images, rows, cols)


def gather_pixels(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Output pixel (r, c) of image i is its pixel (rows[i, r], cols[i, c]), black where
    that lies outside the image: one gather for the whole batch (B, C, H, W)."""
    n, channels, height, width = images.shape
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
        :, None, :
    ]
    source = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    flat = images.reshape(n, channels, height * width)
    picked = flat.gather(2, source.reshape(n, 1, -1).expand(-1, channels, -1))
    return (picked * inside.reshape(n, 1, -1)).reshape(n, channels, rows.shape[1], cols.shape[1])


@dataclass
class Box:
    """Each image's rectangle: top, left, height, width (long tensors (N,))."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


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

    ys = sources(box.top, box.height) / (height - 1) * 2 - 1
    xs = sources(box.left, box.width, flip) / (width - 1) * 2 - 1
    # grid_sample with align_corners=True reads pixel centres at -1 .. 1 exactly. Each
    # image's columns and rows, converted to float32 first and then spread over the
    # grid: the same values as converting the whole float64 grid, ten times faster.
    grid = torch.empty(n, size, size, 2, device=device)
    grid[..., 0] = xs.float()[:, None, :]
    grid[..., 1] = ys.float()[:, :, None]
    return F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
