"""The automatic augmentation policies (TrivialAugmentWide, RandAugment, AutoAugment):
each op against torchvision.transforms.v2's with the same magnitude (exact for the
geometric ops, within one grey level for the colour ops), a drawn batch against
torchvision image by image, and the draws against the policies' spaces."""

import math

import pytest
import torch
from torchvision.transforms import v2

from cnnpipe.data.augment import Augment
from cnnpipe.data.policy import (
    IMAGENET_POLICY,
    OPS,
    SIGNED,
    apply_policy,
    draw_policy,
    magnitudes,
)
from cnnpipe.data.policy_ops import OPERATIONS

GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
EXACT = GEOMETRIC | {"Posterize", "Solarize", "Equalize", "Invert", "Identity"}


def pictures(n=6, channels=3, size=24, seed=0) -> torch.Tensor:
    """uint8 images with structure (gradients, a bright square) and noise, so that every
    op has something to change; one image is flat."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = 200 * ramp[None, :] * ramp[:, None]
    images = base + torch.randint(0, 56, (n, channels, size, size), generator=generator)
    images[:, :, size // 4 : size // 2, size // 3 : size // 2] = 250
    images[-1] = 77
    return images.round().clamp(0, 255).to(torch.uint8)


def torchvisions(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """What torchvision's policies do for (op, magnitude) to one uint8 image."""
    policy = v2.TrivialAugmentWide()
    return policy._apply_image_or_video_transform(
        image, name, magnitude, interpolation=policy.interpolation, fill=policy._fill
    )


def assert_like_torchvision(ours: torch.Tensor, theirs: torch.Tensor, name: str):
    difference = (ours.int() - theirs.int()).abs().max().item()
    assert difference <= (0 if name in EXACT else 1), f"{name}: {difference} grey levels"


# Magnitudes from the policies' bins, both signs; 90 degrees is a bin of TrivialAugment's.
CASES = {
    "ShearX": [0.99, -0.3, 0.5],
    "ShearY": [0.3, -0.99, 0.1],
    "TranslateX": [32.0, -7.9, 150 / 331 * 24],
    "TranslateY": [-32.0, 10.7, 3.0],
    "Rotate": [135.0, -30.0, 90.0, -90.0, 4.5],
    "Brightness": [0.99, -0.99, 0.33],
    "Color": [0.9, -0.5, 0.2],
    "Contrast": [0.99, -0.7, 0.4],
    "Sharpness": [0.99, -0.99, 0.5],
    "Posterize": [2.0, 4.0, 7.0, 8.0],
    "Solarize": [1.0, 0.5, 0.0, 0.2, 0.2333],
    "AutoContrast": [0.0],
    "Equalize": [0.0],
    "Invert": [0.0],
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_each_op_is_torchvisions_with_the_same_magnitude(name, channels):
    assert set(CASES) == set(OPS[1:]) == set(OPERATIONS)
    for value in CASES[name]:
        images = pictures(channels=channels)
        # Each image its own magnitude: this one, or its half, alternating.
        values = torch.tensor([value if i % 2 == 0 else value / 2 for i in range(len(images))])
        if name == "Posterize":
            values = values.ceil()
        ours = OPERATIONS[name](images.clone(), values.double())
        for i, image in enumerate(images):
            assert_like_torchvision(ours[i], torchvisions(image, name, float(values[i])), name)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_drawn_batch_is_torchvisions_ops_image_by_image(channels):
    images = pictures(n=64, channels=channels, seed=1)
    (step,) = draw_policy("trivial_augment", 64, 24, 24, 9, torch.Generator().manual_seed(2))
    assert len(step.op.unique()) >= 10  # most ops drawn at least once
    ours = apply_policy(images.clone(), [step])
    for i, image in enumerate(images):
        name = OPS[int(step.op[i])]
        assert_like_torchvision(ours[i], torchvisions(image, name, float(step.magnitude[i])), name)


def test_trivial_augment_draws_every_op_bin_and_sign_alike():
    n = 28000
    (step,) = draw_policy("trivial_augment", n, 32, 32, 9, torch.Generator().manual_seed(3))
    counts = torch.bincount(step.op, minlength=len(OPS))
    assert counts[-1] == 0  # Invert is AutoAugment's alone
    assert torch.allclose(counts[:-1].double() / n, torch.tensor(1 / 14).double(), atol=0.01)
    table = magnitudes("trivial_augment", 31, 32, 32)
    rotations = step.magnitude[step.op == OPS.index("Rotate")]
    # each of the 31 bins, either sign, about equally often
    levels = (rotations.abs() / 4.5).round().long()
    assert torch.equal(levels.unique(), torch.arange(31))
    assert torch.allclose(rotations.abs(), table["Rotate"].double()[levels])
    assert abs((rotations < 0).double().mean().item() - 0.5) < 0.05
    for name in set(OPS[1:-1]) - SIGNED:
        assert (step.magnitude[step.op == OPS.index(name)] >= 0).all()


def test_rand_augment_draws_two_ops_at_its_magnitude():
    n = 14000
    steps = draw_policy("rand_augment", n, 32, 40, 9, torch.Generator().manual_seed(4))
    table = magnitudes("rand_augment", 31, 32, 40)
    assert len(steps) == 2
    for step in steps:
        counts = torch.bincount(step.op, minlength=len(OPS))
        assert torch.allclose(counts[:-1].double() / n, torch.tensor(1 / 14).double(), atol=0.012)
        for name, values in table.items():
            drawn = step.magnitude[step.op == OPS.index(name)].abs()
            assert torch.allclose(drawn, values[9].double().expand_as(drawn)), name
    shifts = steps[0].magnitude[steps[0].op == OPS.index("TranslateX")].abs()
    assert shifts.max().item() == pytest.approx(150 / 331 * 40 * 9 / 30, rel=1e-6)


def test_auto_augment_applies_each_pair_with_its_probabilities():
    n = 50000
    first, second = draw_policy("auto_augment", n, 32, 32, 9, torch.Generator().manual_seed(5))
    # Two pairs begin ("Invert", 0.6) and go on ("Equalize", 1.0).
    inverted = first.op == OPS.index("Invert")
    assert inverted.double().mean().item() == pytest.approx(2 * 0.6 / 25, abs=0.004)
    # Both pairs that invert then equalize, the latter with probability 1.
    assert (second.op[inverted] == OPS.index("Equalize")).all()
    applied = (first.op >= 0).double().mean().item()
    expected = sum(a[1] for a, _ in IMAGENET_POLICY) / 25
    assert applied == pytest.approx(expected, abs=0.01)
    # ShearX only in pair 18, at bin 5 of 0..0.3, either sign.
    shears = first.magnitude[first.op == OPS.index("ShearX")]
    assert torch.allclose(shears.abs(), torch.tensor(0.3 * 5 / 9).double(), atol=1e-6)
    assert abs((shears < 0).double().mean().item() - 0.5) < 0.05


def test_training_batches_take_the_policy_between_the_crops_and_the_colours():
    images = pictures(n=32, seed=6)
    generator = torch.Generator().manual_seed(7)
    plain = Augment(crop_padding=2, size=24)(images, generator)
    generator = torch.Generator().manual_seed(7)
    augment = Augment(crop_padding=2, size=24, policy=("trivial_augment", 9))
    out = augment(images, generator)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    changed = (out != plain).flatten(1).any(dim=1)
    assert 0.6 < changed.double().mean().item() < 1  # identity and no-op draws stay
    # after a resized crop (float pixels) too, rounded to uint8 first
    resized = Augment(size=16, resized_crop=(0.5, 4 / 3), policy=("auto_augment", 9))
    out = resized(images, torch.Generator().manual_seed(8))
    assert out.dtype == torch.uint8 and out.shape == (32, 3, 16, 16)
    assert math.isfinite(out.float().mean().item())
