"""Image files -> pixels, one way for both ends of the pipeline.

Prepare reads an image folder with `read_picture`, and predict reads a user's images
with it too, so a picture is converted and resized the same way in training and in use.
Only Pillow and NumPy are needed here.

A picture is brought to a square `size` in one of three ways (`data.resize`):
  crop     the shorter side scaled to `size`, then the centre square: torchvision's
           `Resize(size)` + `CenterCrop(size)`, so nothing is distorted (photos)
  pad      the longer side scaled to `size`, the rest black: the whole picture, letterboxed
  stretch  scaled to size x size whatever its aspect ratio
For a square picture all three give the same pixels.
"""

from pathlib import Path

import numpy as np

from cnnpipe.crops import centre_crop, centre_offset
from cnnpipe.errors import CnnpipeError

# Pillow modes that are grey or colour pictures; others (CMYK, 16-bit, float) are refused
# rather than guessed at.
PICTURE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}
RESIZE_MODES = ("crop", "pad", "stretch")


class ImageError(CnnpipeError):
    """One image file cannot be used; the others still can."""


def read_picture(path: str | Path, channels: int, size: int, resize: str = "stretch") -> np.ndarray:
    """An image file -> uint8 (size, size, channels).

    Transparent pixels are laid over white, as a viewer shows them; grey and colour
    pictures become `channels` channels; the picture is brought to size x size by `resize`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if Path(path).stat().st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: broken image ({exc})") from None
    if image.mode not in PICTURE_MODES:
        raise ImageError(
            f"{path}: has {len(image.getbands())} channel(s) in mode {image.mode}; "
            "expected an 8-bit grey, RGB or RGBA picture"
        )
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation apart
    if image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, "white")
        image.alpha_composite(rgba)
    return to_pixels(image, channels, size, resize)


def to_pixels(image, channels: int, size: int, resize: str = "stretch") -> np.ndarray:
    """A Pillow grey or colour image -> uint8 (size, size, channels): converted (colour to
    grey with ITU-R 601 luma weights) and resized bilinearly by `resize`'s rule."""
    image = _square(image.convert("L" if channels == 1 else "RGB"), size, resize)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _square(image, size: int, resize: str):
    from PIL import Image

    width, height = image.size
    if (width, height) == (size, size):
        return image
    if resize == "stretch" or width == height:
        return image.resize((size, size), Image.Resampling.BILINEAR)
    if resize == "crop":  # the shorter side to `size`; the longer truncated, as torchvision does
        new = (
            (size, int(size * height / width))
            if width <= height
            else (int(size * width / height), size)
        )
    elif resize == "pad":  # the longer side to `size`
        new = (
            (size, max(1, int(size * height / width)))
            if width >= height
            else (max(1, int(size * width / height)), size)
        )
    else:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    image = image.resize(new, Image.Resampling.BILINEAR)
    if resize == "crop":
        left, top = centre_offset(new[0], size), centre_offset(new[1], size)
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new(image.mode, (size, size))  # black
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def network_input(path: str | Path, spec) -> np.ndarray:
    """An image file -> uint8 (H, W, C) exactly as a model of `spec` receives it: read at
    its prepared size by its resize rule, then its input's centre crop. `spec` is anything
    with in_channels, image_size, resize and resize_size (a model's spec or metadata)."""
    prepared = spec.resize_size or spec.image_size
    return centre_crop(read_picture(path, spec.in_channels, prepared, spec.resize), spec.image_size)
