"""Training augmentation of whole batches on their device: every image draws its own
parameters, and no Python loop runs over the images. The draws come from the CPU
generator that orders the epoch, so the same seed gives the same batches on any device
and a resumed run continues them exactly.
"""

import torch

from cnnpipe.crops import centre_offset


class Augment:
    """Random crops of `size` pixels and random horizontal flips, drawn for a whole uint8
    batch (B, C, H, W) at once on its device: no per-image Python work.

    A crop may start anywhere in the image (prepared larger than `size`:
    `data.resize_size`) and up to `crop_padding` pixels outside it, where it reads black.
    Crop and flip are one gather: each output pixel's source row and column are computed
    (the column read backwards for a flipped image) and read in a single indexing step;
    a source outside the image is the black padding, so nothing is padded or copied first.
    """

    def __init__(self, crop_padding: int = 0, hflip: bool = False, size=None, source_size=None):
        self.padding, self.hflip = crop_padding, hflip
        self.size, self.source_size = size, source_size or size

    def __bool__(self) -> bool:
        return bool(self.padding or self.hflip or self.source_size != self.size)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
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


def centre(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """The centre size x size of a batch (B, C, H, W), as images.centre_crop cuts a picture."""
    height, width = images.shape[-2:]
    if size is None or (height, width) == (size, size):
        return images
    top, left = centre_offset(height, size), centre_offset(width, size)
    return images[..., top : top + size, left : left + size]
