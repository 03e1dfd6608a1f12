"""The evaluate stage's figures: confusion matrices, training curves and a grid of the
test images the model got wrong."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnpipe.plots import save


def confusion_png(
    matrix: np.ndarray, classes: list[str], path: str | Path, normalized: bool = False
) -> None:
    """Counts, or with `normalized` each true class's row as shares that sum to 1."""
    n = len(classes)
    if normalized:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", vmin=0)
    ax.set_xticks(range(n), classes, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                color = "white" if matrix[i, j] > threshold else "black"
                text = f"{matrix[i, j]:.2f}" if normalized else int(matrix[i, j])
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
    what = "share of each true class" if normalized else "test images"
    ax.set_title(f"confusion matrix ({what})")
    save(fig, path)


def curves_png(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy per epoch, training and validation."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            ax.plot(epochs, [row[f"{split}_{metric}"] for row in history], label=split)
        ax.set_xlabel("epoch")
        ax.set_title({"loss": "loss", "acc": "accuracy"}[metric])
        ax.legend()
    save(fig, path)


def misclassified_png(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    path: str | Path,
    limit: int = 36,
) -> int:
    """A grid of up to `limit` wrongly classified images (uint8 N, H, W, C), each titled
    with its true and predicted class. Returns how many were wrong in all."""
    wrong = np.flatnonzero(true != pred)
    shown = wrong[:limit]
    cols = max(1, min(6, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown, strict=False):
        image = images[i]
        grey = image.shape[2] == 1
        ax.imshow(
            image[:, :, 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255
        )
        ax.set_title(f"true {classes[true[i]]}\npred {classes[pred[i]]}", fontsize=8)
    if not len(shown):
        axes.flat[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    fig.suptitle(
        f"{len(wrong)} misclassified test images"
        + (f", first {limit}" if len(wrong) > limit else "")
    )
    save(fig, path)
    return len(wrong)
