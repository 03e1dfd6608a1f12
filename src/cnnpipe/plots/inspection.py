"""The inspect stage's figures: first-layer kernels, feature maps per stage, Grad-CAM."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnpipe.plots import save, show_image


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
    save(fig, path)


def feature_maps_png(images: np.ndarray, labels: list[str], stages: list, path: str | Path) -> None:
    """Per image (uint8 N, H, W, C) a row: the image, then each stage's feature maps
    averaged over channels, titled with the stage's name and its C×H×W."""
    n, cols = len(images), len(stages) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.55 * cols, 1.5 * n + 0.6), squeeze=False)
    for row in range(n):
        show_image(axes[row, 0], images[row])
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
    save(fig, path)


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
        show_image(ax, image)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"Grad-CAM at {layer}\nwhere the evidence for the predicted class is", fontsize=10)
    save(fig, path)
