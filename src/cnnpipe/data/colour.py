"""Colour jitter for whole batches: each image draws its own brightness, contrast,
saturation and hue factors and its own order of the four, as torchvision's ColorJitter
does image by image. Pixel values are floats 0..255 (what the geometric augmentation
gives); every op clamps to that range, as torchvision's do on a float image to 0..1.
"""

from dataclasses import dataclass

import torch

GREY = (0.2989, 0.587, 0.114)  # the luma weights torchvision's grayscale uses
TOP = 255.0


@dataclass
class Jitter:
    order: torch.Tensor  # (N, 4): the ops' order, each a permutation of 0..3
    factors: torch.Tensor  # (N, 4): brightness, contrast, saturation factor, hue shift


def draw_jitter(n: int, strength: float, hue: float, generator) -> Jitter:
    """Brightness, contrast and saturation factors uniform in [max(0, 1 - strength),
    1 + strength], a hue shift uniform in [-hue, hue] turns, and a random order."""
    order = torch.rand(n, 4, generator=generator).argsort(dim=1)
    low = max(0.0, 1.0 - strength)
    factors = torch.empty(n, 4)
    factors[:, :3].uniform_(low, 1.0 + strength, generator=generator)
    factors[:, 3].uniform_(-hue, hue, generator=generator)
    return Jitter(order, factors)


def jitter(images: torch.Tensor, drawn: Jitter, ops=(True, True, True, True)) -> torch.Tensor:
    """Apply each image's ops in its order: four rounds, in each of which every image
    takes its op of that round; `ops` leaves out the ones not asked for."""
    images = images.float()
    order, factors = drawn.order.to(images.device), drawn.factors.to(images.device)
    functions = (brightness, contrast, saturation, hue_shift)
    for slot in range(4):
        for op, function in enumerate(functions):
            chosen = (order[:, slot] == op).nonzero().squeeze(1)
            if ops[op] and len(chosen):
                images[chosen] = function(images[chosen], factors[chosen, op])
    return images


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images, other, factor):
    return (images * _per_image(factor) + other * _per_image(1.0 - factor)).clamp_(0, TOP)


def grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of RGB images; grey images as they are."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)


def brightness(images, factor):
    # A blend with black: the same bits as _blend with zeros, without a batch of them.
    return (images * _per_image(factor)).clamp_(0, TOP)


def contrast(images, factor):
    mean = grey(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def saturation(images, factor):
    if images.shape[1] == 1:
        return images
    return _blend(images, grey(images), factor)


def hue_shift(images, shift):
    """Turn each image's hues by `shift` (in turns) through HSV, which keeps each pixel's
    value (its largest channel) and saturation."""
    if images.shape[1] == 1:
        return images
    value, _ = images.max(dim=1)
    low, _ = images.min(dim=1)
    spread = value - low
    r, g, b = images.unbind(dim=1)
    safe = torch.where(spread > 0, spread, torch.ones_like(spread))
    # The hue in sixths of a turn, from whichever channel is largest.
    sixths = torch.where(
        value == r,
        ((g - b) / safe) % 6,
        torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    sixths = torch.where(spread > 0, sixths, torch.zeros_like(sixths))
    sixths = (sixths + 6 * shift.view(-1, 1, 1)) % 6
    # Back to RGB: each channel's distance round the colour wheel from the hue.
    channels = []
    for offset in (5.0, 3.0, 1.0):  # red, green, blue
        k = (offset + sixths) % 6
        channels.append(value - spread * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1).clamp_(0, TOP)
