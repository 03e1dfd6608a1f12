"""LeNet-5 (LeCun et al., 1998): conv -> pool -> conv -> pool -> three fully connected layers.

torchvision has no LeNet, so it is written here, with ReLU and max-pooling as modern
re-implementations use instead of the paper's tanh and trainable subsampling. It was
designed for 32x32 digits, so it has no separate small-input variant.
"""

from torch import nn

from cnnpipe.errors import CnnpipeError
from cnnpipe.models import register


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32):
        super().__init__()
        # A 5x5 conv without padding trims 4 pixels, a 2x2 pool halves: 32 -> 28 -> 14 -> 10 -> 5.
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise CnnpipeError(f"lenet needs image_size >= 16, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register("lenet")
def lenet(num_classes: int, in_channels: int, image_size: int, small: bool) -> nn.Module:
    return LeNet5(num_classes, in_channels, image_size)
