"""AlexNet (Krizhevsky et al., 2012), from torchvision.

torchvision leaves out the paper's LocalResponseNorm, so `lrn` puts it back after the
first two ReLUs. Its 11x11 stride-4 stem fails below 63 px; the small-input variant uses
a 3x3 stride-1 stem instead.
"""

from torch import nn
from torchvision import models as tvm

from cnnpipe.models import register
from cnnpipe.models.layers import lrn as make_lrn
from cnnpipe.models.layers import stem_conv


@register("alexnet")
def alexnet(num_classes, in_channels, image_size, small, dropout=0.5, lrn=False):
    model = tvm.alexnet(num_classes=num_classes, dropout=dropout)
    if small or in_channels != 3:
        model.features[0] = stem_conv(model.features[0], in_channels, small)
    if lrn:
        layers = []
        for i, layer in enumerate(model.features):
            layers.append(layer)
            if i in (1, 4):  # after the ReLUs of conv1 and conv2, before their max-pools
                layers.append(make_lrn())
        model.features = nn.Sequential(*layers)
    return model
