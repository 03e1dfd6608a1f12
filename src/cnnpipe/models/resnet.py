"""ResNet-18/34/50/101/152 (He et al., 2015) and ResNeXt-50 32x4d (Xie et al., 2016, group
convolution), from torchvision.

The small-input variant replaces the 7x7 stride-2 stem and its max-pool with one 3x3
stride-1 conv, as the CIFAR ResNets of the paper do, so a 32x32 image reaches the first
residual stage at full resolution.
"""

from torch import nn
from torchvision import models as tvm

from cnnpipe.models import register
from cnnpipe.models.layers import stem_conv


def _register(name):
    @register(name)
    def builder(num_classes, in_channels, image_size, small):
        model = getattr(tvm, name)(num_classes=num_classes)
        if small or in_channels != 3:
            model.conv1 = stem_conv(model.conv1, in_channels, small)
        if small:
            model.maxpool = nn.Identity()
        return model


for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d"):
    _register(_name)
