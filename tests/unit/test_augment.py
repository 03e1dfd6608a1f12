"""The reference recipes' batch augmentations (random erasing, MixUp, CutMix), each
checked against torchvision.transforms.v2 applied with the same drawn parameters, and
the drawn parameters against the ranges they come from."""

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from cnnpipe.config import TrainConfig
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.geometry import draw_resized_crop, resample
from cnnpipe.data.mixing import apply_mix, draw_erasing, draw_mix, erase
from cnnpipe.losses import make_loss


def batch(n=16, channels=3, size=20, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=generator)


def test_erasing_is_torchvisions_erase_at_the_drawn_boxes():
    images = batch(64)
    box = draw_erasing(images.shape, 0.5, torch.Generator().manual_seed(1))
    erased = erase(images.clone(), box)  # in place
    assert 0 < int(box.apply.sum()) < 64
    for i, image in enumerate(images):
        if box.apply[i]:
            top, left, h, w = (int(t[i]) for t in (box.top, box.left, box.height, box.width))
            expected = v2.functional.erase(image, top, left, h, w, torch.tensor(0.0))
        else:
            expected = image
        assert torch.equal(erased[i], expected), i


def test_erasing_draws_follow_torchvisions_ranges():
    n, side = 20_000, 32
    box = draw_erasing((n, 1, side, side), 0.25, torch.Generator().manual_seed(0))
    share = box.apply.float().mean().item()
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    h, w = box.height[box.apply].float(), box.width[box.apply].float()
    area = h * w / side**2
    # Rounding the sides moves the area a little outside 2..33% of the image.
    assert (
        area.min() >= 0.01 and area.max() <= 0.37 and area.mean() == pytest.approx(0.175, abs=0.02)
    )
    ratio = (h / w).log()
    assert ratio.min() > math.log(0.3) - 0.3 and ratio.max() < math.log(3.3) + 0.3
    top, left = box.top[box.apply], box.left[box.apply]
    assert (top >= 0).all() and (top + h <= side).all()
    assert (left >= 0).all() and (left + w <= side).all()
    # Every position a box fits at is drawn, the last one included.
    assert int((top + h == side).sum()) > 0 and int((top == 0).sum()) > 0


class _Fixed:
    """torchvision's transform with the parameters cnnpipe drew (its make_params)."""

    def __init__(self, transform, params):
        self.transform, self.params = transform, params
        transform.make_params = lambda flat_inputs: params

    def __call__(self, images, labels):
        return self.transform(images, labels)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixup_and_cutmix_are_torchvisions_with_the_drawn_lambda_and_box(kind):
    images, labels = batch(8), torch.arange(8) % 5
    mixing = draw_mix(kind, 1.0, images.shape, torch.Generator().manual_seed(3))
    targets = torch.nn.functional.one_hot(labels, 5).float()
    ours, targets = apply_mix(images.clone(), targets, mixing)  # in place for CutMix
    if kind == "mixup":
        reference = _Fixed(v2.MixUp(alpha=1.0, num_classes=5), {"lam": mixing.lam})
    else:
        x1, y1, x2, y2 = mixing.box
        assert 0 < (x2 - x1) * (y2 - y1) < 20 * 20
        reference = _Fixed(
            v2.CutMix(alpha=1.0, num_classes=5),
            {"box": mixing.box, "lam_adjusted": mixing.lam},
        )
    theirs, their_targets = reference(images.clone(), labels)
    # MixUp adds in another order than torchvision: equal within float rounding.
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-6) and torch.allclose(
        targets, their_targets
    )
    assert kind == "mixup" or torch.equal(ours, theirs)
    assert torch.allclose(targets.sum(1), torch.ones(8))


def test_mixing_lambdas_follow_the_beta_distribution():
    generator = torch.Generator().manual_seed(0)
    lams = np.array([draw_mix("mixup", 0.2, (4, 1, 8, 8), generator).lam for _ in range(4000)])
    # Beta(0.2, 0.2): mean 1/2, variance 1 / (4 (2a + 1)) = 0.179; mostly near 0 or 1.
    assert lams.mean() == pytest.approx(0.5, abs=0.03)
    assert lams.var() == pytest.approx(1 / (4 * 1.4), abs=0.02)
    assert ((lams < 0.1) | (lams > 0.9)).mean() > 0.5


def test_training_batches_mix_and_the_losses_take_their_soft_targets():
    images = np.random.default_rng(0).integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    augment = Augment(crop_padding=1, erasing=0.5, mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=4)
    data = DeviceData(images, np.arange(64) % 4, [0.5] * 3, [0.25] * 3, "cpu", augment)
    generator = torch.Generator().manual_seed(0)
    kinds = set()
    for x, targets in data.batches(16, shuffle=True, generator=generator):
        assert x.shape == (16, 3, 12, 12) and targets.shape == (16, 4)
        assert torch.allclose(targets.sum(1), torch.ones(16))
        kinds.add(int((targets > 0).sum(1).max()))
        logits = torch.randn(16, 4)
        for loss in ("cross_entropy", "nll", "mse"):
            value = make_loss(TrainConfig(loss=loss))(logits, targets)
            assert torch.isfinite(value)
    assert 2 in kinds  # images were mixed
    # Unshuffled (validation) batches are neither augmented nor mixed.
    x, labels = next(data.batches(64))
    assert labels.dtype == torch.long and torch.equal(labels, torch.arange(64) % 4)
    # Hard targets give what soft one-hot targets give.
    logits, hard = torch.randn(16, 4), torch.arange(16) % 4
    soft = torch.nn.functional.one_hot(hard, 4).float()
    for loss in ("cross_entropy", "nll", "l1"):
        fn = make_loss(TrainConfig(loss=loss))
        assert fn(logits, soft) == pytest.approx(fn(logits, hard).item(), rel=1e-6)


def test_resized_crops_are_torchvisions_resized_crop_of_the_drawn_boxes():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 40, 40), dtype=torch.uint8, generator=generator)
    box = draw_resized_crop((48, 40, 40), 0.08, 4 / 3, generator)
    flip = torch.arange(48) % 2 == 0
    ours = resample(images, box, 24, flip)
    for i, image in enumerate(images):
        top, left, h, w = (int(t[i]) for t in (box.top, box.left, box.height, box.width))
        for pixels in (image, image.float()):
            theirs = v2.functional.resized_crop(pixels, top, left, h, w, [24, 24], antialias=False)
            if flip[i]:
                theirs = v2.functional.horizontal_flip(theirs)
            # torch's uint8 kernel rounds in fixed point: within one grey level of it.
            assert (ours[i].round() - theirs.float()).abs().max() <= 1, i
        # On a float image it is the same sampling, up to float rounding.
        assert torch.allclose(ours[i], theirs, rtol=0, atol=2e-3), i


def test_resized_crop_draws_follow_torchvisions_ranges():
    from torchvision.transforms import RandomResizedCrop

    n, side = 8000, 64
    box = draw_resized_crop((n, side, side), 0.08, 4 / 3, torch.Generator().manual_seed(0))
    h, w = box.height.float(), box.width.float()
    torch.manual_seed(0)
    image = torch.zeros(1, side, side)
    theirs = torch.tensor(
        [RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    ).float()
    # The same distribution as torchvision's sampler: area share, aspect ratio, position.
    for ours, reference in (
        (h * w / side**2, theirs[:, 2] * theirs[:, 3] / side**2),
        ((w / h).log(), (theirs[:, 3] / theirs[:, 2]).log()),
        (box.top.float() / side, theirs[:, 0] / side),
    ):
        assert ours.mean() == pytest.approx(reference.mean().item(), abs=0.015)
        assert ours.std() == pytest.approx(reference.std().item(), abs=0.015)
    assert (box.top >= 0).all() and (box.top + box.height <= side).all()
    assert (box.left >= 0).all() and (box.left + box.width <= side).all()
    assert int((box.left == 0).sum()) > 0 and int((box.left + box.width == side).sum()) > 0
    # A box that cannot fit in ten tries falls back to the centre crop torchvision takes.
    wide = draw_resized_crop((4, 10, 40), 0.99, 1.0001, torch.Generator().manual_seed(0))
    assert wide.height.tolist() == [10] * 4 and wide.width.tolist() == [10] * 4
    assert wide.left.tolist() == [15] * 4 and wide.top.tolist() == [0] * 4


def test_training_with_resized_crops_takes_them_from_the_whole_prepared_image():
    images = np.random.default_rng(0).integers(0, 256, (32, 20, 20, 1), dtype=np.uint8)
    augment = Augment(hflip=True, size=12, source_size=20, resized_crop=(0.08, 4 / 3))
    assert augment.geometric
    data = DeviceData(images, np.arange(32) % 2, [0.5], [0.25], "cpu", augment, size=12)
    x, labels = next(data.batches(32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (32, 1, 12, 12) and labels.dtype == torch.long


def test_colour_jitter_is_torchvisions_ops_in_each_images_order():
    from cnnpipe.data.colour import draw_jitter, jitter

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=generator)
    drawn = draw_jitter(32, 0.4, 0.1, generator)
    ours = jitter(images, drawn)
    functions = (
        v2.functional.adjust_brightness,
        v2.functional.adjust_contrast,
        v2.functional.adjust_saturation,
        v2.functional.adjust_hue,
    )
    for i, image in enumerate(images):
        theirs = image.float() / 255
        for op in drawn.order[i].tolist():
            theirs = functions[op](theirs, float(drawn.factors[i, op]))
        # Within one grey level; most pixels within a hundredth of one.
        off = (ours[i] - theirs * 255).abs()
        assert off.max() <= 1.0, i
        assert (off < 0.01).float().mean() > 0.95, i


def test_colour_jitter_draws_follow_the_ranges_and_orders():
    from cnnpipe.data.colour import draw_jitter

    drawn = draw_jitter(20_000, 0.4, 0.1, torch.Generator().manual_seed(0))
    scale, hue = drawn.factors[:, :3], drawn.factors[:, 3]
    assert scale.min() >= 0.6 and scale.max() <= 1.4 and scale.mean() == pytest.approx(1, abs=0.01)
    assert hue.min() >= -0.1 and hue.max() <= 0.1 and hue.mean() == pytest.approx(0, abs=0.005)
    assert (drawn.order.sort(dim=1).values == torch.arange(4)).all()  # permutations
    # Every op comes first in about a quarter of the images.
    firsts = torch.bincount(drawn.order[:, 0], minlength=4).float() / 20_000
    assert ((firsts - 0.25).abs() < 0.02).all()
