"""The automatic augmentation policies of the reference recipes for a whole uint8 batch
on its device: TrivialAugmentWide, RandAugment and AutoAugment's ImageNet policy, with
torchvision.transforms.v2's ops, magnitude bins and draws.

Each image draws its own ops from the CPU generator that orders the epoch. Then each op
runs once, on all the images that drew it: the Python loop is over the fifteen ops, never
over the images. Every op takes and gives uint8 pixels, as torchvision's do on a uint8
image, so a policy's second op sees what torchvision's would.
"""

from dataclasses import dataclass

import torch

from cnnpipe.data.policy_ops import OPERATIONS

POLICIES = ("none", "trivial_augment", "rand_augment", "auto_augment")
OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",  # AutoAugment's policy only
)
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}
RAND_AUGMENT_OPS, RAND_AUGMENT_BINS = 2, 31  # torchvision's RandAugment defaults
WIDE_BINS, AUTO_BINS = 31, 10

# AutoAugment's ImageNet policy (Cubuk et al. 2019): 25 pairs of (op, probability, bin).
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)


def magnitudes(policy: str, bins: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """Each op's magnitude bins, in the dtype torchvision computes them in (float32
    ranges, int bits); ops without a magnitude are absent. TrivialAugment's are wide."""
    wide = policy == "trivial_augment"
    shear, colours = (0.99, 0.99) if wide else (0.3, 0.9)
    shift_x, shift_y = (32.0, 32.0) if wide else (150.0 / 331.0 * width, 150.0 / 331.0 * height)
    levels = 6 if wide else 4  # Posterize: 8 bits down to 2 (wide) or 4

    def span(high: float) -> torch.Tensor:
        return torch.linspace(0.0, high, bins)

    return {
        "ShearX": span(shear),
        "ShearY": span(shear),
        "TranslateX": span(shift_x),
        "TranslateY": span(shift_y),
        "Rotate": span(135.0 if wide else 30.0),
        **{name: span(colours) for name in ("Brightness", "Color", "Contrast", "Sharpness")},
        "Posterize": (8 - (torch.arange(bins) / ((bins - 1) / levels))).round().int(),
        "Solarize": torch.linspace(1.0, 0.0, bins),  # the threshold's share of 255
    }


def value_table(policy: str, bins: int, height: int, width: int) -> torch.Tensor:
    """(len(OPS), bins) float64: each op's magnitude at each bin, 0 for ops without one."""
    table = torch.zeros(len(OPS), bins, dtype=torch.float64)
    for name, values in magnitudes(policy, bins, height, width).items():
        table[OPS.index(name)] = values.double()
    return table


# Which ops draw a sign for their magnitude, by index in OPS.
SIGNS = torch.tensor([name in SIGNED for name in OPS])


@dataclass
class Step:
    """One op for each image: its index in OPS (-1: none) and its signed magnitude."""

    op: torch.Tensor  # (N,) long
    magnitude: torch.Tensor  # (N,) float64


def draw_policy(policy: str, n: int, height: int, width: int, rand_magnitude: int, generator):
    """Each image's ops, as the policy draws them image by image: TrivialAugment one op
    and one bin; RandAugment two ops at bin `rand_magnitude`; AutoAugment one of its 25
    pairs, each op applied with its probability. A signed op's sign is flipped with
    probability 1/2."""
    steps = []
    if policy == "auto_augment":
        table = value_table(policy, AUTO_BINS, height, width)
        pair = torch.randint(len(IMAGENET_POLICY), (n,), generator=generator)
        for slot in range(2):
            entries = [pairs[slot] for pairs in IMAGENET_POLICY]
            ops = torch.tensor([OPS.index(name) for name, _, _ in entries])[pair]
            # float32, as torchvision compares torch.rand(()) with the probability
            odds = torch.tensor([odds for _, odds, _ in entries])[pair]
            levels = torch.tensor([level or 0 for _, _, level in entries])[pair]
            applied = torch.rand(n, generator=generator) <= odds
            steps.append(_signed(torch.where(applied, ops, -1), table[ops, levels], generator))
        return steps
    wide = policy == "trivial_augment"
    bins = WIDE_BINS if wide else RAND_AUGMENT_BINS
    table = value_table(policy, bins, height, width)
    for _ in range(1 if wide else RAND_AUGMENT_OPS):
        op = torch.randint(len(OPS) - 1, (n,), generator=generator)  # all but Invert
        if wide:
            level = torch.randint(bins, (n,), generator=generator)
        else:
            level = torch.full((n,), rand_magnitude)
        steps.append(_signed(op, table[op, level], generator))
    return steps


def _signed(op: torch.Tensor, values: torch.Tensor, generator) -> Step:
    flip = torch.rand(len(op), generator=generator) <= 0.5
    signed = (op >= 0) & SIGNS[op.clamp(min=0)]
    return Step(op, torch.where(flip & signed, -values, values))


def apply_policy(images: torch.Tensor, steps: list[Step]) -> torch.Tensor:
    """The drawn ops on a uint8 batch (N, C, H, W), step after step, in place (the batch
    is a fresh copy)."""
    for step in steps:
        for index in step.op.unique().tolist():
            if index <= 0:  # not applied, or Identity
                continue
            chosen = (step.op == index).nonzero().squeeze(1).to(images.device)
            values = step.magnitude[step.op == index].to(images.device)
            images[chosen] = OPERATIONS[OPS[index]](images[chosen], values)
    return images
