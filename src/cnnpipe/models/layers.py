"""Layers and checks the families share: the rebuilt stem, the papers' LocalResponseNorm,
weight initialisation schemes, and a shape-only probe of the input size."""

import torch
from torch import nn

from cnnpipe.errors import CnnpipeError


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


def check_input_size(name: str, model: nn.Module, in_channels: int, image_size: int) -> None:
    """Run the new network once on one blank image: a size it cannot take fails here, in a
    clear sentence, instead of deep inside the first training step. (In eval mode and
    without gradients, so no weight, statistic or random number changes.)"""
    training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels, image_size, image_size, device=device))
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CnnpipeError(
            f"{name} cannot take {image_size}x{image_size} images ({detail})"
        ) from None
    finally:
        model.train(training)
