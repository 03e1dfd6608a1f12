"""Use a trained model: read images, preprocess them as in training, and rank the classes.

Three kinds of model file open here: the ONNX file (needs only ONNX Runtime, NumPy and
Pillow: PyTorch is never imported), the TorchScript file, and the training checkpoint
(state_dict + model.json). Each carries its preprocessing (image size, channels, mean,
std) and class names, so an image is treated exactly as the training images were.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnpipe.errors import CnnpipeError
from cnnpipe.images import ImageError, read_picture

METADATA_FILE = "cnnpipe.json"  # the metadata's name inside a TorchScript archive
BATCH = 256


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    in_channels: int
    mean: list[float]
    std: list[float]
    classes: list[str]
    model: str = ""

    def to_metadata(self) -> dict[str, str]:
        """String key/values, the form ONNX metadata_props take."""
        return {
            "model": self.model,
            "classes": json.dumps(self.classes, ensure_ascii=False),
            "image_size": str(self.image_size),
            "in_channels": str(self.in_channels),
            "mean": json.dumps(self.mean),
            "std": json.dumps(self.std),
            "input_scale": "pixels / 255, then (x - mean) / std per channel",
        }

    @classmethod
    def from_spec(cls, spec) -> "Preprocessing":
        """From a checkpoint's ModelSpec."""
        return cls(spec.image_size, spec.in_channels, spec.mean, spec.std, spec.classes, spec.model)

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source) -> "Preprocessing":
        try:
            return cls(
                image_size=int(meta["image_size"]),
                in_channels=int(meta["in_channels"]),
                mean=json.loads(meta["mean"]),
                std=json.loads(meta["std"]),
                classes=json.loads(meta["classes"]),
                model=meta.get("model", ""),
            )
        except (KeyError, ValueError) as exc:
            raise CnnpipeError(
                f"{source}: no cnnpipe preprocessing metadata ({exc}); export it with cnnpipe"
            ) from None


class OnnxModel:
    def __init__(self, path: str | Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.prep = Preprocessing.from_metadata(meta, path)
        self.input = self.session.get_inputs()[0].name

    def logits(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                self.session.run(None, {self.input: images[i : i + BATCH]})[0]
                for i in range(0, len(images), BATCH)
            ]
        )


class TorchModel:
    """A TorchScript file, or a checkpoint (.pth) with model.json beside it."""

    def __init__(self, path: str | Path, spec: str | Path | None = None):
        path = Path(path)
        if path.suffix == ".pth":
            from cnnpipe.checkpoint import load_model

            self.module, spec = load_model(path, spec or path.with_name("model.json"))
            self.prep = Preprocessing.from_spec(spec)
        else:
            from cnnpipe.export import load_torchscript

            self.module, meta = load_torchscript(path)
            self.prep = Preprocessing.from_metadata(meta, path)

    def logits(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate(
                [
                    self.module(torch.from_numpy(images[i : i + BATCH])).numpy()
                    for i in range(0, len(images), BATCH)
                ]
            )


def open_model(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise CnnpipeError(f"{path}: no such model file; run `dvc repro` to export one")
    if path.suffix == ".onnx":
        return OnnxModel(path)
    if path.suffix in (".pt", ".pth"):
        return TorchModel(path)
    raise CnnpipeError(f"{path}: unknown model format; use a .onnx, .pt or .pth file")


def load_image(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """One image file -> float32 (C, H, W), converted, resized and normalised as in training."""
    x = read_picture(path, prep.in_channels, prep.image_size).astype(np.float32) / 255.0
    mean = np.asarray(prep.mean, dtype=np.float32)
    std = np.asarray(prep.std, dtype=np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_files(model, paths: list[Path], topk: int) -> list[Prediction]:
    """Top-k classes for every readable image; an unreadable one gets its error instead."""
    results = [Prediction(str(p)) for p in paths]
    images, good = [], []
    for result, path in zip(results, paths, strict=True):
        try:
            images.append(load_image(path, model.prep))
            good.append(result)
        except ImageError as exc:
            result.error = str(exc)
    if images:
        probs = softmax(model.logits(np.stack(images)))
        classes = model.prep.classes
        for result, p in zip(good, probs, strict=True):
            best = np.argsort(-p, kind="stable")[:topk]
            result.top = [(classes[i], float(p[i])) for i in best]
    return results
