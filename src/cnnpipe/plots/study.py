"""A study's figure: validation curves, one line per setting."""

from pathlib import Path

import matplotlib.pyplot as plt

from cnnpipe.plots import save


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
    save(fig, path)
