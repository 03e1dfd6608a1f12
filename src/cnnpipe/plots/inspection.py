"""The inspect stage's figures: first-layer kernels, feature maps per stage, Grad-CAM."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cnnpipe.plots import save, show_image


def filters_png(weight: np.ndarray, name: str, path: str | Path, limit: int = 64) -> None:
    """A convolution's kernels (out, in, k, k) as a grid: colour kernels of an RGB input as
    RGB, otherwise one cell per kernel and input channel, on one colour scale shared by
    all (blue negative, red positive), so that kernels can be compared with each other."""
    out, channels = weight.shape[:2]
    kernels = weight[:limit]
    bound = float(np.abs(kernels).max()) or 1.0
    rgb = channels == 3
    cells = (
        [k.transpose(1, 2, 0) / (2 * bound) + 0.5 for k in kernels]  # 0 is mid-grey
        if rgb
        else [k[c] for k in kernels for c in range(min(channels, 4))]
    )
    cols = min(16, len(cells))
    rows = -(-len(cells) // cols)
    fig, ax = plt.subplots(
        figsize=(0.8 * cols + 1.4, 0.8 * rows + 1.0)
        if len(cells) > 16
        else (1.3 * cols + 1.4, 2.4),
        layout="constrained",
    )
    ax.axis("off")
    # One image holding every cell, blank lines between them: one imshow draws in a tenth
    # of the time that an axes per cell takes (2.5 s for ResNet-18's 64 kernels).
    grid = mosaic(cells, cols)
    if rgb:
        ax.imshow(np.nan_to_num(grid, nan=1.0), interpolation="nearest")
    else:
        scale = plt.get_cmap("RdBu_r").with_extremes(bad="white")
        shown = ax.imshow(grid, cmap=scale, vmin=-bound, vmax=bound, interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8, label="weight")
    k = weight.shape[-1]
    shown_count = f"first {len(kernels)} of {out}" if out > limit else f"all {out}"
    how = "as RGB" if rgb else "per input channel" if channels > 1 else "grey input"
    fig.suptitle(f"{name}: {shown_count} kernels, {k}×{k}, {how}, one scale", fontsize=10)
    save(fig, path)


def mosaic(cells: list[np.ndarray], cols: int, gap: int = 2) -> np.ndarray:
    """Equal (k, k[, 3]) cells in rows of `cols`, each pixel enlarged to a block so a
    small kernel is still seen, with `gap` NaN lines between cells."""
    k = cells[0].shape[0]
    zoom = max(1, 24 // k)
    step = k * zoom + gap
    rows = -(-len(cells) // cols)
    grid = np.full((rows * step - gap, cols * step - gap, *cells[0].shape[2:]), np.nan)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        block = cell.repeat(zoom, axis=0).repeat(zoom, axis=1)
        grid[r * step : r * step + k * zoom, c * step : c * step + k * zoom] = block
    return grid


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
    size = (max(4.0, 2.0 * cols) + 1.0, 2.4 * rows + 0.6)  # and the colour bar
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    colours = plt.get_cmap("jet")
    for ax, image, heat, title in zip(axes.flat, images, maps, titles, strict=False):
        show_image(ax, image)
        # See-through where there is no evidence, so the picture stays visible under it.
        overlay = colours(heat)
        overlay[..., 3] = 0.65 * heat
        ax.imshow(overlay)
        ax.set_title(title, fontsize=8)
    scale = plt.cm.ScalarMappable(plt.Normalize(0, 1), colours)
    fig.colorbar(scale, ax=axes.ravel().tolist(), shrink=0.7, label="evidence (per image)")
    fig.suptitle(f"Grad-CAM at {layer}\nwhere the evidence for the predicted class is", fontsize=10)
    save(fig, path)


def augmented_png(
    originals: np.ndarray, seen: np.ndarray, titles: list[str], path: str | Path
) -> None:
    """The first images of a training batch: as prepared (uint8 N, H, W, C) above, and as
    the network received them (uint8 N, h, w, C, its input mapped back to pixels) below,
    each titled with its target."""
    cols = len(originals)
    fig, axes = plt.subplots(2, cols, figsize=(1.5 * cols + 0.8, 3.8), squeeze=False)
    for col in range(cols):
        show_image(axes[0, col], originals[col])
        show_image(axes[1, col], seen[col])
        axes[1, col].set_title(titles[col], fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("prepared", fontsize=8)
    axes[1, 0].set_ylabel("trained on", fontsize=8)
    fig.suptitle("the first training batch, augmented as the network received it", fontsize=10)
    save(fig, path)
