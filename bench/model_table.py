"""Print the README's table of registered networks: parameters and multiply-adds per image
at the pipeline's default size (1x32x32, 10 classes) and at ImageNet's (3x224x224, 1000).

    python bench/model_table.py
"""

import torch

from cnnpipe import models
from cnnpipe.summary import summarize


def measure(name: str, in_channels: int, image_size: int, num_classes: int):
    # Shapes are all a summary needs, so the networks are built on the meta device:
    # no weights are allocated and a VGG-19 costs no more than a LeNet.
    with torch.device("meta"):
        model = models.build(
            name, num_classes=num_classes, in_channels=in_channels, image_size=image_size
        )
        return summarize(model, in_channels, image_size)


def main():
    print(
        "| model | family | params, 1×32×32, 10 classes | mult-adds "
        "| params, 3×224×224, 1000 classes | mult-adds |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in models.registered_names():
        small = measure(name, 1, 32, 10)
        large = measure(name, 3, 224, 1000)
        print(
            f"| {name} | {models.family(name)} | {small.params:,} | {small.macs / 1e6:,.1f} M "
            f"| {large.params:,} | {large.macs / 1e9:,.2f} G |"
        )


if __name__ == "__main__":
    main()
