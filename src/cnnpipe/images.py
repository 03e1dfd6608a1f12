"""Image files -> pixels, one way for both ends of the pipeline.

Prepare reads an image folder with `read_picture`, and predict reads a user's images
with it too, so a picture is converted and resized the same way in training and in use.
Only Pillow and NumPy are needed here.
"""

from pathlib import Path

import numpy as np

from cnnpipe.errors import CnnpipeError

# Pillow modes that are grey or colour pictures; others (CMYK, 16-bit, float) are refused
# rather than guessed at.
PICTURE_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA"}


class ImageError(CnnpipeError):
    """One image file cannot be used; the others still can."""


def read_picture(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file -> uint8 (size, size, channels).

    Transparent pixels are laid over white, as a viewer shows them; grey and colour
    pictures become `channels` channels; the picture is resized to size x size.
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
    return to_pixels(image, channels, size)


def to_pixels(image, channels: int, size: int) -> np.ndarray:
    """A Pillow grey or colour image -> uint8 (size, size, channels): converted (colour to
    grey with ITU-R 601 luma weights) and resized bilinearly."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels
