"""GoogLeNet (Szegedy et al., 2014), from torchvision: Inception blocks with 1x1 reductions
and two auxiliary classifiers.

In training the network returns (logits, aux2, aux1) and the engine adds the auxiliary
losses with weight 0.3, as the paper does; in eval mode (and so in every export) only the
logits come out. `lrn` restores the paper's LocalResponseNorm after the first max-pool and
after conv3, which torchvision leaves out. The small-input variant uses a 3x3 stride-1 stem
and skips the first two max-pools, as CIFAR GoogLeNets do.
"""

from torch import nn
from torchvision import models as tvm

from cnnpipe.models import register
from cnnpipe.models.layers import lrn as make_lrn
from cnnpipe.models.layers import stem_conv


@register("googlenet")
def googlenet(num_classes, in_channels, image_size, small, dropout=0.2, lrn=False):
    model = tvm.googlenet(
        num_classes=num_classes, aux_logits=True, init_weights=True, dropout=dropout
    )
    if small or in_channels != 3:
        model.conv1.conv = stem_conv(model.conv1.conv, in_channels, small)
    if small:
        model.maxpool1 = nn.Identity()
        model.maxpool2 = nn.Identity()
    if lrn:
        model.maxpool1 = nn.Sequential(model.maxpool1, make_lrn())
        model.conv3 = nn.Sequential(model.conv3, make_lrn())
    return model
