"""Data sources: each returns uint8 images (N, H, W, C), int labels and class names."""

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.config import DataConfig


def load_source(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if cfg.source == "digits":
        return digits(cfg.image_size, cfg.channels)
    raise ValueError(f"unknown data source {cfg.source!r}")  # config validation prevents this


def digits(image_size: int, channels: int):
    """scikit-learn's 1,797 handwritten digits: real 8x8 scans that ship with the package."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are ink counts 0..16; scale to 0..1, then resize the whole batch at once.
    x = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    x = x.permute(0, 2, 3, 1).repeat(1, 1, 1, channels)
    classes = [str(name) for name in bunch.target_names]
    return x.numpy(), bunch.target.astype(np.int64), classes
