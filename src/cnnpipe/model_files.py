"""The contract of cnnpipe's model files, shared by export (which writes them) and predict
(which reads them).

Every exported model takes uint8 images (N, H, W, C) as a PNG or JPEG decoder gives them,
already brought to `image_size` with `in_channels` channels (images.network_input: the
`resize` rule to a `resize_size` square, then its centre crop), and returns the class
probabilities (N, classes); scaling, normalisation and the layout change happen inside
(classifier.py). The metadata says which size, channels and classes: ONNX keeps it in
metadata_props, TorchScript in a JSON file inside the archive, MLflow in the model's
metadata. Three kinds of file open here: the ONNX file (needs only ONNX Runtime and NumPy:
PyTorch is never imported), the TorchScript file, and the training checkpoint
(state_dict + model.json).
"""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnpipe.errors import CnnpipeError

INPUT, OUTPUT = "images", "probabilities"  # the graph's input and output names
CONTRACT = "uint8 images (N, H, W, C) in, probabilities (N, classes) out"
METADATA_FILE = "cnnpipe.json"  # the metadata's name inside a TorchScript archive
BATCH = 256

# TorchScript is deprecated in favour of torch.export from PyTorch 2.14 on, but it is the
# format that Netron draws as a graph under a .pt name and that libtorch loads from C++.
TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


@dataclass(frozen=True)
class Metadata:
    image_size: int
    in_channels: int
    classes: list[str]
    mean: list[float]  # applied inside the graph; kept here so that it can be read
    std: list[float]
    model: str = ""
    resize: str = "stretch"  # how a picture was brought to a square (images.py) ...
    resize_size: int | None = None  # ... of this side (None: image_size), then centre-cropped

    def __post_init__(self):
        if self.resize_size is None:
            object.__setattr__(self, "resize_size", self.image_size)

    def to_props(self) -> dict[str, str]:
        """String key/values, the form ONNX metadata_props take."""
        return {
            "contract": CONTRACT,
            "model": self.model,
            "classes": json.dumps(self.classes, ensure_ascii=False),
            "image_size": str(self.image_size),
            "in_channels": str(self.in_channels),
            "mean": json.dumps(self.mean),
            "std": json.dumps(self.std),
            "resize": self.resize,
            "resize_size": str(self.resize_size),
            "preprocessing": "inside the graph: pixels / 255, then (x - mean) / std per channel",
        }

    @classmethod
    def from_spec(cls, spec) -> "Metadata":
        """From a checkpoint's ModelSpec."""
        return cls(
            spec.image_size,
            spec.in_channels,
            spec.classes,
            spec.mean,
            spec.std,
            spec.model,
            spec.resize,
            spec.resize_size,
        )

    @classmethod
    def from_props(cls, props: dict[str, str], source) -> "Metadata":
        if "classes" in props and props.get("contract") != CONTRACT:
            raise CnnpipeError(
                f"{source}: exported by an older cnnpipe, for normalised float input; "
                "run `dvc repro -f export` to export it again"
            )
        try:
            return cls(
                image_size=int(props["image_size"]),
                in_channels=int(props["in_channels"]),
                classes=json.loads(props["classes"]),
                mean=json.loads(props["mean"]),
                std=json.loads(props["std"]),
                model=props.get("model", ""),
                # Files exported before these keys had stretched their pictures.
                resize=props.get("resize", "stretch"),
                resize_size=int(props.get("resize_size", props["image_size"])),
            )
        except (KeyError, ValueError) as exc:
            raise CnnpipeError(
                f"{source}: no cnnpipe metadata ({exc}); export it with cnnpipe"
            ) from None


class OnnxModel:
    def __init__(self, path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        providers = providers or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.metadata = Metadata.from_props(self.session.get_modelmeta().custom_metadata_map, path)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                self.session.run(None, {INPUT: images[i : i + BATCH]})[0]
                for i in range(0, len(images), BATCH)
            ]
        )


def load_torchscript(path: str | Path):
    """(module, metadata props) of a TorchScript file that export wrote."""
    import torch

    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    props = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    return module.eval(), props


class TorchModel:
    """A TorchScript file, or a checkpoint (.pth) with model.json beside it."""

    def __init__(self, path: str | Path, spec: str | Path | None = None):
        path = Path(path)
        if path.suffix == ".pth":
            from cnnpipe.checkpoint import load_model
            from cnnpipe.classifier import shipped

            network, spec = load_model(path, spec or path.with_name("model.json"))
            self.module, self.metadata = shipped(network, spec), Metadata.from_spec(spec)
        else:
            self.module, props = load_torchscript(path)
            self.metadata = Metadata.from_props(props, path)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
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
