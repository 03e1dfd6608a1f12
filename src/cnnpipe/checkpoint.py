"""A trained model on disk: a state_dict plus a JSON spec saying how to rebuild it.

The weights are plain tensors, loaded with `weights_only=True`, so opening a checkpoint
never runs code from the file. The spec holds everything else a user of the model needs:
architecture, input size and channels, normalisation and class names.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnpipe import models
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_path, read_json, write_json


@dataclass(frozen=True)
class ModelSpec:
    model: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    classes: list[str]
    variant: str = "auto"  # resolved to small | imagenet when the spec is made
    dropout: float | None = None
    lrn: bool = False
    # How a picture becomes the network's input: brought to a resize_size square by the
    # rule `resize` (images.py), then its centre image_size crop. A spec from before
    # these fields existed had stretched its pictures to image_size.
    resize: str = "stretch"
    resize_size: int | None = None

    def build(self, init: str = "default", probe: bool = True) -> nn.Module:
        return models.build(
            self.model,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            image_size=self.image_size,
            variant=self.variant,
            init=init,
            dropout=self.dropout,
            lrn=self.lrn,
            probe=probe,
        )


def save_weights(state_dict: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state_dict, tmp)


def save_spec(spec: ModelSpec, path: str | Path) -> None:
    write_json(path, dataclasses.asdict(spec))


def load_model(weights: str | Path, spec_path: str | Path, device="cpu"):
    """Rebuild the network from its spec and load the weights; returns (model, spec)."""
    for p in (weights, spec_path):
        if not Path(p).exists():
            raise CnnpipeError(f"{p}: not found; run the train stage first")
    spec = ModelSpec(**read_json(spec_path))
    model = spec.build(probe=False)  # its size was checked when it was trained
    state = torch.load(weights, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), spec
