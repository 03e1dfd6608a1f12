"""The ops of the automatic augmentation policies (policy.py) for a group of images at
once: uint8 pixels (n, C, H, W) and each image's magnitude (n,) in, uint8 out, as
torchvision.transforms.v2's kernels compute them on uint8 images: the geometric ops
exactly (nearest neighbour, black outside), the colour ops truncated back to uint8.
"""

import torch

from cnnpipe.data import colour
from cnnpipe.data.geometry import gather_pixels


def affine(images: torch.Tensor, rotate=None, shear=(None, None), corner=False):
    """torchvision's affine (nearest neighbour, black outside) with each image's own
    rotation (degrees, anticlockwise) and shear angles (degrees), about the image's centre
    or (`corner`) its top left corner. Translations are `shift` below."""
    n, channels, height, width = images.shape
    zero = torch.zeros(n, dtype=torch.float64)

    def given(value):
        return zero if value is None else value.cpu().double()

    rot = torch.deg2rad(given(rotate))
    sx, sy = torch.deg2rad(given(shear[0])), torch.deg2rad(given(shear[1]))
    cx, cy = (-width * 0.5, -height * 0.5) if corner else (0.0, 0.0)
    # The rotation-shear matrix [[a, b], [c, d]] has determinant 1: its inverse is
    # [[d, -b], [-c, a]]; the output pixel (x, y) then reads the input at that inverse of
    # (x, y) moved by the centre.
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    theta = torch.stack(
        [
            torch.stack([d, -b, 0.0 + (cx - d * cx - (-b) * cy)], dim=1),
            torch.stack([-c, a, 0.0 + (cy - (-c) * cx - a * cy)], dim=1),
        ],
        dim=1,
    ).to(images.device, torch.float32)
    # Pixel centres relative to the image's centre, mapped by theta and scaled to
    # grid_sample's -1..1 (align_corners=False), in float32 as torchvision computes them.
    device = images.device
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    ones = torch.ones(height, width, device=device)
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width), ones], -1)
    base = base.reshape(1, height * width, 3)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=device)
    grid = base.expand(n, -1, -1).bmm(theta.transpose(1, 2) / scale)
    # Nearest neighbour as grid_sample's CPU kernel finds it (align_corners=False: the
    # same float32 steps, rounded half to even), read from the uint8 pixels directly.
    x = ((grid[..., 0] + 1) * (width / 2) - 0.5).round()
    y = ((grid[..., 1] + 1) * (height / 2) - 0.5).round()
    inside = (x > -1) & (x < width) & (y > -1) & (y < height)
    source = (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)).long()
    flat = images.reshape(n, channels, height * width)
    picked = flat.gather(2, source[:, None, :].expand(-1, channels, -1))
    return (picked * inside[:, None, :]).reshape(images.shape)


def _shear(axis: int):
    def op(images, m):
        angles = [None, None]
        angles[axis] = torch.rad2deg(torch.atan(m.double()))
        return affine(images, shear=tuple(angles), corner=True)

    return op


def shift(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Each image moved by its whole pixels (right, down), black where it left: what
    torchvision's affine gives for a translation (its sampling points are whole pixels
    then), as one gather of whole rows and columns instead of a sampling grid."""
    height, width = images.shape[-2:]
    device = images.device
    rows = torch.arange(height, device=device) - dy.to(device)[:, None]
    cols = torch.arange(width, device=device) - dx.to(device)[:, None]
    return gather_pixels(images, rows, cols)


def _translate(axis: int):
    def op(images, m):
        pixels = m.long()  # int(magnitude): whole pixels, towards zero
        none = torch.zeros_like(pixels)
        return shift(images, *((pixels, none) if axis == 0 else (none, pixels)))

    return op


def rotate(images, degrees):
    # rotate() turns anticlockwise, the affine matrix clockwise; angles taken mod 360.
    return affine(images, rotate=-(degrees.double() % 360))


def truncated(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixel values 0..255 as uint8, the fractions cut off (as torchvision's uint8
    kernels do). Through int16: on the CPU two narrowing conversions take a third of the
    time of PyTorch's direct float-to-uint8 one, with the same values in this range."""
    return pixels.to(torch.int16).to(torch.uint8)


def _to_uint8(blend):
    """A colour op of colour.py (floats 0..255, clamped) on uint8 pixels, truncated back."""

    def op(images, m):
        return truncated(blend(images.float(), 1.0 + m.float()))

    return op


def sharpness(images, m):
    """Each image blended with its 3x3 smoothed copy (weights 1, centre 5, over 13),
    rounded; the border pixels stay.

    The smoothed value is the 3x3 sum plus 4 x the centre, over 13, summed in whole
    numbers: a sum over 13 is never halfway between two integers, so rounding it gives
    what torchvision's float convolution rounds to, several times faster than conv2d."""
    height, width = images.shape[-2:]
    if height <= 2 or width <= 2:
        return images
    out = images.float()
    rows = out[..., :-2, :] + out[..., 1:-1, :] + out[..., 2:, :]
    inner = out[..., 1:-1, 1:-1]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    smooth = box.add_(inner, alpha=4).div_(13).round_()
    inner += (smooth - inner) * (-m.float()).view(-1, 1, 1, 1)  # 1 - factor = -m
    return truncated(out.clamp_(0, 255))


def posterize(images, bits):
    keep = (255 << (8 - bits.long())) & 255  # the top `bits` bits of each pixel
    return images & keep.to(torch.uint8).view(-1, 1, 1, 1)


def solarize(images, share):
    # The threshold in float32, as a uint8 image compares with torchvision's float: at a
    # share of 0.2, 51.0000008 in float64, 51 in float32.
    threshold = (255.0 * share.double()).float().view(-1, 1, 1, 1)
    return torch.where(images >= threshold, 255 - images, images)


def autocontrast(images, _=None):
    """Each channel stretched to 0..255 (a flat channel stays)."""
    pixels = images.float()
    low = pixels.amin(dim=(2, 3), keepdim=True)
    high = pixels.amax(dim=(2, 3), keepdim=True)
    flat = high == low
    step = torch.where(flat, 1.0, (high - low) * (1.0 / 255.0))
    low = torch.where(flat, 0.0, low)
    return truncated(((pixels - low) / step).clamp_(0, 255))


def equalize(images, _=None):
    """Each channel's histogram equalised as PIL's ImageOps.equalize does it: with `step`
    the pixels outside the brightest occupied level over 255, level v becomes
    (step // 2 + the pixels below v) // step; a channel with step 0 stays."""
    n, channels, height, width = images.shape
    levels = images.reshape(n * channels, height * width).long()
    counts = torch.zeros(n * channels, 256, dtype=torch.long, device=images.device)
    counts.scatter_add_(1, levels, torch.ones_like(levels))
    brightest = 255 - counts.flip(1).ne(0).long().argmax(dim=1, keepdim=True)
    step = (height * width - counts.gather(1, brightest)) // 255
    below = counts.cumsum(dim=1) - counts
    table = ((below + step // 2) // step.clamp(min=1)).clamp_(max=255)
    table = torch.where(step > 0, table, torch.arange(256, device=images.device))
    return table.gather(1, levels).to(torch.uint8).reshape(images.shape)


def invert(images, _=None):
    return 255 - images


OPERATIONS = {
    "ShearX": _shear(0),
    "ShearY": _shear(1),
    "TranslateX": _translate(0),
    "TranslateY": _translate(1),
    "Rotate": rotate,
    "Brightness": _to_uint8(colour.brightness),
    "Color": _to_uint8(colour.saturation),
    "Contrast": _to_uint8(colour.contrast),
    "Sharpness": sharpness,
    "Posterize": posterize,
    "Solarize": solarize,
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
}
