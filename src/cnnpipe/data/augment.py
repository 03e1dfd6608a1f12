"""Training augmentation of whole batches on their device: every image draws its own
parameters, and no Python loop runs over the images. The draws come from the CPU
generator that orders the epoch, so the same seed gives the same batches on any device
and a resumed run continues them exactly.
"""

import torch
import torch.nn.functional as F

from cnnpipe.data.colour import draw_jitter, jitter
from cnnpipe.data.geometry import draw_flips, draw_resized_crop, padded_crops, resample
from cnnpipe.data.mixing import apply_mix, draw_erasing, draw_mix, erase
from cnnpipe.data.policy import apply_policy, draw_policy
from cnnpipe.data.policy_ops import truncated


class Augment:
    """A training batch's augmentation, drawn for a whole uint8 batch (B, C, H, W) at once
    on its device. Before normalisation (`__call__`): crops of `size` pixels, padded or
    resized (RandomResizedCrop), random horizontal flips, an automatic policy
    (policy.py: TrivialAugment, RandAugment, AutoAugment), colour jitter (colour.py).
    After it (`mix`): random erasing, then MixUp or CutMix (mixing.py).

    A padded crop may start anywhere in the image (prepared larger than `size`:
    `data.resize_size`) and up to `crop_padding` pixels outside it (geometry.py).
    """

    def __init__(
        self,
        crop_padding: int = 0,
        hflip: bool = False,
        size=None,
        source_size=None,
        erasing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        num_classes: int | None = None,
        resized_crop: tuple[float, float] | None = None,
        colour: tuple[float, float] | None = None,
        policy: tuple[str, int] | None = None,
    ):
        self.padding, self.hflip = crop_padding, hflip
        self.colour = colour  # (brightness, contrast and saturation strength; hue)
        self.policy = policy  # (TrivialAugment, RandAugment or AutoAugment; RandAugment's bin)
        self.resized_crop = resized_crop  # (least area share, largest aspect ratio)
        self.size, self.source_size = size, source_size or size
        self.erasing, self.num_classes = erasing, num_classes
        self.alphas = {"mixup": mixup_alpha, "cutmix": cutmix_alpha}
        if any(self.alphas.values()) and not num_classes:
            raise ValueError("MixUp and CutMix need num_classes for their soft targets")

    @classmethod
    def from_params(cls, params, num_classes: int, source_size: int) -> "Augment":
        """The training augmentation params.augment asks for, cutting params.data.image_size
        crops from images prepared at `source_size`."""
        cfg = params.augment
        return cls(
            cfg.crop_padding,
            cfg.hflip,
            params.data.image_size,
            source_size,
            erasing=cfg.random_erasing,
            mixup_alpha=cfg.mixup_alpha,
            cutmix_alpha=cfg.cutmix_alpha,
            num_classes=num_classes,
            resized_crop=(cfg.crop_scale, cfg.crop_ratio) if cfg.random_resized_crop else None,
            colour=(cfg.color_jitter, cfg.hue) if cfg.color_jitter or cfg.hue else None,
            policy=(cfg.policy, cfg.policy_magnitude) if cfg.policy != "none" else None,
        )

    @property
    def geometric(self) -> bool:
        return bool(
            self.padding or self.hflip or self.resized_crop or self.source_size != self.size
        )

    def __bool__(self) -> bool:
        return bool(
            self.geometric
            or self.colour
            or self.policy
            or self.erasing
            or any(self.alphas.values())
        )

    def mix(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """(images, targets) of a normalised batch: random erasing (to 0, the mean colour,
        as torchvision's RandomErasing does after Normalize), then MixUp or CutMix, whose
        targets are class probabilities (N, classes); without them the labels stay."""
        if self.erasing:
            images = erase(images, draw_erasing(images.shape, self.erasing, generator))
        kinds = [kind for kind, alpha in self.alphas.items() if alpha]
        if not kinds:
            return images, labels
        # One of the two for each batch, as the references' RandomChoice([MixUp, CutMix]).
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=generator))]
        mixing = draw_mix(kind, self.alphas[kind], images.shape, generator)
        return apply_mix(images, F.one_hot(labels, self.num_classes).float(), mixing)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch's geometric augmentation, its policy, then its colour jitter: uint8
        in; uint8 out for crops, flips and policies, float pixel values (0..255) after a
        resized crop or colour jitter alone."""
        if self.geometric:
            if self.resized_crop:
                images = self._resized_crops(images, generator)
            else:
                size = self.size or images.shape[-1]
                images = padded_crops(images, size, self.padding, self.hflip, generator)
        if self.policy:
            if images.is_floating_point():  # a resized crop: uint8, as torchvision's gives
                images = truncated(images.round_())  # the batch's own fresh copy
            name, magnitude = self.policy
            n, _, height, width = images.shape
            steps = draw_policy(name, n, height, width, magnitude, generator)
            images = apply_policy(images, steps)
        if self.colour:
            strength, hue = self.colour
            drawn = draw_jitter(len(images), strength, hue, generator)
            images = jitter(images, drawn, (bool(strength),) * 3 + (bool(hue),))
        return images

    def _resized_crops(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """torchvision's RandomResizedCrop (then RandomHorizontalFlip) for every image at
        once: each draws its box, and one bilinear sampling brings every box to `size`."""
        n, _, height, width = images.shape
        size = self.size or height
        box = draw_resized_crop((n, height, width), *self.resized_crop, generator)
        return resample(images, box, size, draw_flips(n, self.hflip, generator))
