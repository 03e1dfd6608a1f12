"""The model registry's builders: a name in params.yaml -> the network.

Every builder takes the same arguments, so a stage never needs to know which family it
is training: `build("resnet18", num_classes=10, in_channels=1, image_size=32)`. The names
and options are plain data in cnnpipe.zoo; a family's module (and with it torch, and
torchvision for the families it supplies) is imported when one of its networks is built.
"""

import importlib
from collections.abc import Callable

from cnnpipe.errors import CnnpipeError
from cnnpipe.zoo import (  # noqa: F401  (the registry's queries, for callers of models)
    INITS,
    REGISTRY,
    check_options,
    family,
    has_variants,
    lookup,
    registered_names,
    resolve_variant,
)

_BUILDERS: dict[str, Callable] = {}  # filled by the family modules as they are imported


def register(name: str):
    """Decorator of a family module: `builder` builds the registered network `name`."""

    def decorate(builder):
        if name not in REGISTRY:
            raise ValueError(f"model '{name}' is built but not listed in the registry")
        _BUILDERS[name] = builder
        return builder

    return decorate


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
    entry = lookup(name)
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
