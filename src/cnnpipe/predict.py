"""Use a trained model: decode each picture, resize it to the model's size, run the model.

Everything after decoding and resizing (scaling, normalisation, layout) happens inside the
model file, so a picture is treated exactly as the training images were.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnpipe.images import ImageError, read_picture
from cnnpipe.model_files import Metadata


def load_image(path: str | Path, metadata: Metadata) -> np.ndarray:
    """One image file -> uint8 (H, W, C) at the model's size and channels."""
    return read_picture(path, metadata.in_channels, metadata.image_size)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""


def predict_files(model, paths: list[Path], topk: int) -> list[Prediction]:
    """Top-k classes for every readable image; an unreadable one gets its error instead."""
    results = [Prediction(str(p)) for p in paths]
    images, good = [], []
    for result, path in zip(results, paths, strict=True):
        try:
            images.append(load_image(path, model.metadata))
            good.append(result)
        except ImageError as exc:
            result.error = str(exc)
    if images:
        probs = model.probabilities(np.stack(images))
        classes = model.metadata.classes
        for result, p in zip(good, probs, strict=True):
            best = np.argsort(-p, kind="stable")[:topk]
            result.top = [(classes[i], float(p[i])) for i in best]
    return results
