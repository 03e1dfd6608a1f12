"""Every batch augmentation at once, for the tests that train with all of them on (the
resume test, and the DDP epoch that test_distributed.py runs under torchrun)."""

from cnnpipe.data.augment import Augment


def every_augmentation(size: int, num_classes: int) -> Augment:
    """Resized crops, flips, TrivialAugment, colour jitter with hue, random erasing, MixUp
    and CutMix, for images prepared at `size`."""
    return Augment(
        hflip=True,
        size=size,
        source_size=size,
        erasing=0.25,
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        num_classes=num_classes,
        resized_crop=(0.5, 4 / 3),
        colour=(0.4, 0.1),
        policy=("trivial_augment", 9),
    )
