"""The model registry: a name in params.yaml -> the function that builds the network.

Every builder takes the same arguments, so a stage never needs to know which family it
is training: `build("resnet18", num_classes=10, in_channels=1, image_size=32)`.

Networks designed for 224x224 ImageNet images shrink a 32x32 image to almost nothing
before their first real layer. Each family therefore has a small-input variant (a 3x3
stride-1 stem and no early max-pool, as CIFAR implementations use) that `variant: auto`
picks for images of SMALL_INPUT_MAX pixels or less.

The table below is plain data, so validating params.yaml or listing the networks imports
neither torch nor torchvision; a family's module (and with it torch, and torchvision for
the families it supplies) is imported when one of its networks is built.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from cnnpipe.errors import CnnpipeError

SMALL_INPUT_MAX = 64
VARIANTS = ("auto", "small", "imagenet")
INITS = ("default", "kaiming", "xavier")


@dataclass(frozen=True)
class Entry:
    family: str  # the module of cnnpipe.models that builds it
    dropout: bool = False  # whether the family has dropout layers to configure
    lrn: bool = False  # whether the original paper's LocalResponseNorm can be switched on
    variants: bool = True  # whether small and ImageNet-sized inputs get different layouts


# In the order of the notes.
_REGISTRY: dict[str, Entry] = {
    "lenet": Entry("lenet", variants=False),
    "alexnet": Entry("alexnet", dropout=True, lrn=True),
    **{f"vgg{d}{bn}": Entry("vgg", dropout=True) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": Entry("googlenet", dropout=True, lrn=True),
    **{
        name: Entry("resnet")
        for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    },
    "resnext50_32x4d": Entry("resnet"),
    **{
        name: Entry("mobilenet", dropout=True)
        for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
    },
}
_BUILDERS: dict[str, Callable] = {}  # filled by the family modules as they are imported


def register(name: str):
    """Decorator of a family module: `builder` builds the registered network `name`."""

    def decorate(builder):
        if name not in _REGISTRY:
            raise ValueError(f"model '{name}' is built but not listed in the registry")
        _BUILDERS[name] = builder
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
    probe: bool = True,
):
    """The network `name`, freshly initialised. `probe` runs it once to check that it can
    take the image size; a network rebuilt from a trained model's spec needs no check."""
    entry = _entry(name)
    check_options(name, dropout, lrn)
    if init not in INITS:
        raise CnnpipeError(f"init '{init}' is unknown; allowed: {', '.join(INITS)}")
    options = {}
    if dropout is not None:
        options["dropout"] = dropout
    if entry.lrn:
        options["lrn"] = lrn
    # Here torch (and torchvision, for its families) are imported: only to build a network.
    from cnnpipe.models import layers

    importlib.import_module(f"cnnpipe.models.{entry.family}")
    builder = _BUILDERS[name]

    model = builder(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        small=resolve_variant(variant, image_size) == "small",
        **options,
    )
    if probe:
        layers.check_input_size(name, model, in_channels, image_size)
    if init != "default":
        layers.initialize(model, init)
    return model


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise CnnpipeError(
            f"model '{name}' is not registered; allowed: {', '.join(registered_names())}"
        )
    return _REGISTRY[name]
