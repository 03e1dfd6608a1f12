"""The model registry: a name in params.yaml -> a function that builds the network.

Every builder takes the same arguments, so a stage never needs to know which family it
is training: `build("resnet18", num_classes=10, in_channels=1, image_size=32)`.

Networks designed for 224x224 ImageNet images shrink a 32x32 image to almost nothing
before their first real layer. Each family therefore has a small-input variant (a 3x3
stride-1 stem and no early max-pool, as CIFAR implementations use) that `variant: auto`
picks for images of SMALL_INPUT_MAX pixels or less.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnpipe.errors import CnnpipeError

SMALL_INPUT_MAX = 64
VARIANTS = ("auto", "small", "imagenet")
INITS = ("default", "kaiming", "xavier")


@dataclass(frozen=True)
class Entry:
    builder: Callable[..., nn.Module]
    family: str
    dropout: bool  # whether the family has dropout layers to configure
    lrn: bool  # whether the original paper's LocalResponseNorm can be switched on
    variants: bool  # whether small and ImageNet-sized inputs get different layouts


_REGISTRY: dict[str, Entry] = {}


def register(name: str, family: str, dropout=False, lrn=False, variants=True):
    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = Entry(builder, family, dropout, lrn, variants)
        return builder

    return decorate


def registered_names() -> list[str]:
    return list(_REGISTRY)


def family(name: str) -> str:
    return _entry(name).family


def has_variants(name: str) -> bool:
    return _entry(name).variants


def resolve_variant(variant: str, image_size: int) -> str:
    """'auto' -> 'small' or 'imagenet' by image size."""
    if variant not in VARIANTS:
        raise CnnpipeError(f"variant '{variant}' is unknown; allowed: {', '.join(VARIANTS)}")
    if variant == "auto":
        return "small" if image_size <= SMALL_INPUT_MAX else "imagenet"
    return variant


def check_options(name: str, dropout: float | None = None, lrn: bool = False) -> None:
    entry = _entry(name)
    if dropout is not None and not entry.dropout:
        with_dropout = [n for n, e in _REGISTRY.items() if e.dropout]
        raise CnnpipeError(
            f"{name} has no dropout to set; models with dropout: {', '.join(with_dropout)}"
        )
    if lrn and not entry.lrn:
        with_lrn = [n for n, e in _REGISTRY.items() if e.lrn]
        raise CnnpipeError(f"{name} has no LRN option; models with one: {', '.join(with_lrn)}")


def build(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    variant: str = "auto",
    init: str = "default",
    dropout: float | None = None,
    lrn: bool = False,
) -> nn.Module:
    entry = _entry(name)
    check_options(name, dropout, lrn)
    if init not in INITS:
        raise CnnpipeError(f"init '{init}' is unknown; allowed: {', '.join(INITS)}")
    options = {}
    if dropout is not None:
        options["dropout"] = dropout
    if entry.lrn:
        options["lrn"] = lrn

    def make():
        return entry.builder(
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            small=resolve_variant(variant, image_size) == "small",
            **options,
        )

    _check_input_size(name, make, in_channels, image_size)
    model = make()
    if init != "default":
        initialize(model, init)
    return model


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialise every conv and linear weight; biases start at zero."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def stem_conv(old: nn.Conv2d, in_channels: int, small: bool) -> nn.Conv2d:
    """The first conv, rebuilt for `in_channels`, and as 3x3 stride 1 for small inputs."""
    kernel, stride, padding = (3, 1, 1) if small else (old.kernel_size, old.stride, old.padding)
    conv = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def lrn() -> nn.LocalResponseNorm:
    """LocalResponseNorm with the constants of the AlexNet paper (also used by GoogLeNet)."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise CnnpipeError(
            f"model '{name}' is not registered; allowed: {', '.join(registered_names())}"
        )
    return _REGISTRY[name]


def _check_input_size(name, make, in_channels: int, image_size: int) -> None:
    """Run the network on a shape-only 'meta' tensor: a size it cannot take fails here,
    in a clear sentence, instead of deep inside the first training step."""
    with torch.device("meta"):
        probe = make().eval()
        try:
            probe(torch.zeros(1, in_channels, image_size, image_size))
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:200]
            raise CnnpipeError(
                f"{name} cannot take {image_size}x{image_size} images ({detail})"
            ) from None


# Importing a family's module registers its networks, in the order of the notes.
# isort: off
from cnnpipe.models import lenet, alexnet, vgg, googlenet, resnet, mobilenet  # noqa: E402, F401
# isort: on
