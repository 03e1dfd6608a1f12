"""VGG-11/13/16/19 (Simonyan & Zisserman, 2014), with and without BatchNorm, from torchvision.

For small inputs the five max-pools already bring 32 px down to 1 px, so torchvision's
7x7 adaptive pool would copy that one pixel 49 times into a 25,088-wide classifier. The
small-input variant pools to 1x1 and uses a 512-wide classifier, as CIFAR VGGs do, and
drops early max-pools when the image is too small for all five.
"""

import math

from torch import nn
from torchvision import models as tvm

from cnnpipe.models import register
from cnnpipe.models.layers import stem_conv


def _build(name, num_classes, in_channels, image_size, small, dropout):
    model = getattr(tvm, name)(num_classes=num_classes, dropout=dropout)
    if small or in_channels != 3:
        model.features[0] = stem_conv(model.features[0], in_channels, small=False)
    if small:
        model.features = _keep_pools(model.features, int(math.log2(image_size)))
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )
        for layer in model.classifier:
            if isinstance(layer, nn.Linear):  # torchvision's VGG initialisation
                nn.init.normal_(layer.weight, 0, 0.01)
                nn.init.zeros_(layer.bias)
    return model


def _keep_pools(features: nn.Sequential, keep: int) -> nn.Sequential:
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    dropped = set(pools[: max(0, len(pools) - keep)])
    return nn.Sequential(*(layer for i, layer in enumerate(features) if i not in dropped))


def _register(name):
    @register(name)
    def builder(num_classes, in_channels, image_size, small, dropout=0.5):
        return _build(name, num_classes, in_channels, image_size, small, dropout)


for _depth in (11, 13, 16, 19):
    _register(f"vgg{_depth}")
    _register(f"vgg{_depth}_bn")
