"""Figures saved as PNG for MLflow, DVC and people, one module per stage that draws them
(evaluation, inspection, study); this module holds what they share."""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or expected
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnpipe.files import atomic_path  # noqa: E402

# Class names may be in any script; the bundled font draws a box for what it lacks.
warnings.filterwarnings("ignore", message="Glyph .* missing from font")


def save(fig, path: str | Path) -> None:
    if fig.get_layout_engine() is None:  # a figure with a colour bar lays itself out
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def show_image(ax, image: np.ndarray) -> None:
    """A uint8 (H, W, C) image, grey or colour."""
    grey = image.shape[2] == 1
    ax.imshow(image[:, :, 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255)
