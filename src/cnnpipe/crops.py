"""Where a network's input lies in a picture prepared larger than it (`data.resize_size`):
its centre, placed as torchvision's CenterCrop places it. Slicing only, so that the
stages that cut prepared arrays need neither Pillow nor PyTorch for it.
"""

import numpy as np


def centre_offset(big: int, small: int) -> int:
    """Where a centred `small` window starts in `big` pixels (torchvision's CenterCrop)."""
    return int(round((big - small) / 2.0))


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """The centre size x size of uint8 images (..., H, W, C): what the network sees of a
    picture prepared larger than its input (`data.resize_size`). A view, not a copy."""
    height, width = pixels.shape[-3:-1]
    top, left = centre_offset(height, size), centre_offset(width, size)
    return pixels[..., top : top + size, left : left + size, :]


def centre_chw(images, size: int | None):
    """The centre size x size of channel-first images (..., C, H, W), a NumPy array or a
    torch tensor: a batch cut as `centre_crop` cuts a picture."""
    height, width = images.shape[-2:]
    if size is None or (height, width) == (size, size):
        return images
    top, left = centre_offset(height, size), centre_offset(width, size)
    return images[..., top : top + size, left : left + size]
