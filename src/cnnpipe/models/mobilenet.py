"""MobileNetV2 (Sandler et al., 2018) and MobileNetV3 small/large (Howard et al., 2019),
depthwise-separable convolutions, from torchvision.

The small-input variant makes the stem conv stride 1, so 32x32 images end at 2x2 rather
than 1x1 before the classifier.

torchvision's MobileNetV3 updates its BatchNorm running statistics with momentum 0.01,
which suits ImageNet's 5,000 steps an epoch: on the digits (20 steps an epoch) the
statistics would still be near their initial values after ten epochs, and the network
that reaches 93% in training mode would score 10% in eval mode. Here it gets PyTorch's
default 0.1, as MobileNetV2 has; the weights, and so pretrained weights, are the same.
"""

from torch import nn
from torchvision import models as tvm

from cnnpipe.models import register
from cnnpipe.models.layers import stem_conv


def _register(name):
    @register(name)
    def builder(num_classes, in_channels, image_size, small, dropout=0.2):
        model = getattr(tvm, name)(num_classes=num_classes, dropout=dropout)
        for layer in model.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.momentum = 0.1
        stem = model.features[0]  # Conv2dNormActivation: conv, norm, activation
        if small or in_channels != 3:
            old = stem[0]
            stem[0] = stem_conv(old, in_channels, small=False)
            if small:
                stem[0].stride = (1, 1)
        return model


for _name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
    _register(_name)
