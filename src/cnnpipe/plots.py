"""Figures saved as PNG for MLflow, DVC and people: confusion matrices, training curves and
a grid of the test images the model got wrong."""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or expected
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnpipe.files import atomic_path  # noqa: E402

# Class names may be in any script; the bundled font draws a box for what it lacks.
warnings.filterwarnings("ignore", message="Glyph .* missing from font")


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


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
    _save(fig, path)


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
    _save(fig, path)


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
    _save(fig, path)
    return len(wrong)


def _show_image(ax, image: np.ndarray) -> None:
    """A uint8 (H, W, C) image, grey or colour."""
    grey = image.shape[2] == 1
    ax.imshow(image[:, :, 0] if grey else image, cmap="gray" if grey else None, vmin=0, vmax=255)


def filters_png(weight: np.ndarray, name: str, path: str | Path, limit: int = 64) -> None:
    """A convolution's kernels (out, in, k, k) as a grid: colour kernels of an RGB input as
    RGB, otherwise one cell per kernel and input channel. Each kernel is scaled to its own
    range, so the pattern it detects shows whatever its magnitude."""
    out, channels = weight.shape[:2]
    kernels = weight[:limit]
    low = kernels.min(axis=(1, 2, 3), keepdims=True)
    high = kernels.max(axis=(1, 2, 3), keepdims=True)
    scaled = (kernels - low) / np.where(high > low, high - low, 1.0)
    cells = (
        [k.transpose(1, 2, 0) for k in scaled]
        if channels == 3
        else [k[c] for k in scaled for c in range(min(channels, 4))]
    )
    cols = min(16, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols + 0.4, 0.8 * rows + 0.9))
    for ax in np.atleast_1d(axes).flat:
        ax.axis("off")
    for ax, cell in zip(np.atleast_1d(axes).flat, cells, strict=False):
        ax.imshow(cell, cmap=None if channels == 3 else "gray", vmin=0, vmax=1)
    k = weight.shape[-1]
    shown = f"first {len(kernels)} of {out}" if out > limit else f"all {out}"
    how = "as RGB" if channels == 3 else "per input channel" if channels > 1 else "grey input"
    fig.suptitle(f"{name}: {shown} kernels, {k}×{k}, {how}", fontsize=10)
    _save(fig, path)


def feature_maps_png(images: np.ndarray, labels: list[str], stages: list, path: str | Path) -> None:
    """Per image (uint8 N, H, W, C) a row: the image, then each stage's feature maps
    averaged over channels, titled with the stage's name and its C×H×W."""
    n, cols = len(images), len(stages) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.55 * cols, 1.5 * n + 0.6), squeeze=False)
    for row in range(n):
        _show_image(axes[row, 0], images[row])
        axes[row, 0].set_ylabel(labels[row], rotation=0, ha="right", va="center")
        for col, stage in enumerate(stages, start=1):
            axes[row, col].imshow(stage.maps[row].mean(0).numpy(), cmap="viridis")
    axes[0, 0].set_title("input\n" + "×".join(map(str, images.shape[1:][::-1])), fontsize=8)
    for col, stage in enumerate(stages, start=1):
        c, h, w = stage.maps.shape[1:]
        axes[0, col].set_title(f"{stage.name}\n{c}×{h}×{w}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("feature maps after each stage (mean over channels)", fontsize=10)
    _save(fig, path)


def gradcam_png(
    images: np.ndarray, maps: np.ndarray, titles: list[str], layer: str, path: str | Path
) -> None:
    """Each image (uint8 N, H, W, C) with its Grad-CAM map (N, H, W in 0..1) laid over it."""
    cols = max(1, min(5, len(images)))
    rows = -(-len(images) // cols)
    size = (max(4.0, 2.0 * cols), 2.4 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat, title in zip(axes.flat, images, maps, titles, strict=False):
        _show_image(ax, image)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"Grad-CAM at {layer}\nwhere the evidence for the predicted class is", fontsize=10)
    _save(fig, path)


def study_curves_png(curves: dict[str, list[dict]], title: str, path: str | Path) -> None:
    """Validation loss and accuracy per epoch, one line per setting of a study."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, rows in curves.items():
        epochs = [row["epoch"] for row in rows]
        axes[0].plot(epochs, [row["val_loss"] for row in rows], label=label)
        axes[1].plot(epochs, [row["val_acc"] for row in rows], label=label)
    for ax, name in zip(axes, ("validation loss", "validation accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(name)
    if curves:
        axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
