"""Figures saved as PNG for MLflow and people: the confusion matrix."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or expected
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnpipe.files import atomic_path  # noqa: E402


def confusion_png(matrix: np.ndarray, classes: list[str], path: str | Path) -> None:
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                color = "white" if matrix[i, j] > threshold else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_title(f"confusion matrix ({int(matrix.sum())} test images)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
