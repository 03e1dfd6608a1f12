"""The model registry: a name in params.yaml -> a function that builds the network.

Every builder takes the same arguments, so a stage never needs to know which family
it is training: `build("lenet", num_classes=10, in_channels=1, image_size=32)`.
"""

from collections.abc import Callable

from torch import nn

from cnnpipe.errors import CnnpipeError

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register(name: str):
    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorate


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    if name not in _REGISTRY:
        raise CnnpipeError(
            f"model '{name}' is not registered; allowed: {', '.join(registered_names())}"
        )
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size)


# Importing a family's module registers its networks.
from cnnpipe.models import lenet  # noqa: E402, F401
