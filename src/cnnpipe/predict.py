"""Use a trained model: decode each picture, bring it to the model's input as prepare and
evaluation did (images.network_input), run the model.

Everything after that (scaling, normalisation, layout) happens inside the model file, so a
picture is treated exactly as the test images were.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnpipe.images import ImageError, network_input


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
            images.append(network_input(path, model.metadata))
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
