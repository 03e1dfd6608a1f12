import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm

from cnnpipe import models
from cnnpipe.checkpoint import ModelSpec
from cnnpipe.classifier import shipped
from cnnpipe.errors import CnnpipeError
from cnnpipe.export import compare, reference, to_onnx
from cnnpipe.losses import forward_loss
from cnnpipe.model_files import Metadata, OnnxModel

TORCHVISION_BACKED = [name for name in models.registered_names() if name != "lenet"]
ONE_PER_FAMILY = ["alexnet", "vgg11_bn", "googlenet", "resnet18", "mobilenet_v3_small"]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet5_has_the_textbook_parameter_count():
    # conv1 6*(1*25+1) + conv2 16*(6*25+1) + fc 400*120+120 + 120*84+84 + 84*10+10
    model = models.build("lenet", num_classes=10, in_channels=1, image_size=32)
    assert n_params(model) == 156 + 2416 + 48120 + 10164 + 850 == 61706


def test_the_registry_holds_every_network_of_the_notes():
    expected = {"lenet", "alexnet", "googlenet", "resnext50_32x4d", "mobilenet_v2"}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    expected |= {"mobilenet_v3_small", "mobilenet_v3_large"}
    assert set(models.registered_names()) == expected


@pytest.mark.parametrize("name", TORCHVISION_BACKED)
def test_imagenet_configuration_has_torchvision_parameter_count(name):
    extra = {"init_weights": True} if name == "googlenet" else {}
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        ours = models.build(name, num_classes=1000, in_channels=3, image_size=224)
        reference = getattr(tvm, name)(num_classes=1000, **extra)
    assert n_params(ours) == n_params(reference)


@pytest.mark.parametrize(
    "name, count",
    # As torchvision documents them (GoogLeNet with its two auxiliary heads).
    [
        ("alexnet", 61_100_840),
        ("vgg16", 138_357_544),
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("googlenet", 13_004_888),
        ("mobilenet_v2", 3_504_872),
    ],
)
def test_documented_imagenet_parameter_counts(name, count):
    with torch.device("meta"):
        model = models.build(name, num_classes=1000, in_channels=3, image_size=224)
    assert n_params(model) == count


CASES = [(name, {}) for name in models.registered_names()]
CASES += [("alexnet", {"lrn": True}), ("googlenet", {"lrn": True})]
# Every kind of block once: depth variants (vgg13..19, resnet34..152, the large MobileNetV3)
# repeat their family's blocks and would only make the ONNX exports slower.
EXPORTED = {"lenet", "alexnet", "vgg11", "vgg11_bn", "googlenet", "resnet18", "resnet50"}
EXPORTED |= {"resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small"}


def small_input_network(name, options):
    spec = ModelSpec(name, 5, 1, 16, [0.5], [0.25], list("abcde"), variant="small", **options)
    torch.manual_seed(0)
    return spec, spec.build()


@pytest.mark.parametrize("name, options", CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_small_input_network_trains(name, options):
    _, model = small_input_network(name, options)
    images, labels = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])

    model.train()
    logits, loss = forward_loss(model(images), labels, nn.CrossEntropyLoss())
    loss.backward()
    assert logits.shape == (4, 5)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "name, options",
    [case for case in CASES if case[0] in EXPORTED],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_small_input_network_exports_to_onnx(name, options, tmp_path):
    spec, model = small_input_network(name, options)
    served = shipped(model, spec)
    to_onnx(served, Metadata.from_spec(spec), tmp_path / "model.onnx", opset=20)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    expected, scale = reference(served, pixels)
    parity = compare("onnx", OnnxModel(tmp_path / "model.onnx").probabilities(pixels), expected)
    # Untrained deep networks can have huge logits; compare relative to their scale.
    assert parity["onnx_max_diff_ppm"] <= 100 * max(1.0, scale)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_imagenet_variant_takes_grey_images(name):
    model = models.build(name, num_classes=3, in_channels=1, image_size=64, variant="imagenet")
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 64, 64)).shape == (2, 3)


def test_auto_variant_follows_the_image_size():
    assert models.resolve_variant("auto", 32) == "small"
    assert models.resolve_variant("auto", 64) == "small"
    assert models.resolve_variant("auto", 96) == "imagenet"
    small = models.build("resnet18", num_classes=10, in_channels=3, image_size=32)
    large = models.build("resnet18", num_classes=10, in_channels=3, image_size=224)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)


def test_too_small_images_fail_with_the_size_named():
    with pytest.raises(CnnpipeError, match="alexnet cannot take 40x40 images"):
        models.build("alexnet", num_classes=10, in_channels=3, image_size=40, variant="imagenet")
    with pytest.raises(CnnpipeError, match="lenet needs image_size >= 16, got 12"):
        models.build("lenet", num_classes=10, in_channels=1, image_size=12)


def test_dropout_and_lrn_options_reach_the_layers():
    vgg = models.build("vgg11", num_classes=10, in_channels=3, image_size=32, dropout=0.3)
    assert {m.p for m in vgg.modules() if isinstance(m, nn.Dropout)} == {0.3}
    alexnet = models.build("alexnet", num_classes=10, in_channels=3, image_size=32, lrn=True)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in alexnet.modules()) == 2
    with pytest.raises(CnnpipeError, match="resnet18 has no dropout to set"):
        models.build("resnet18", num_classes=10, in_channels=3, image_size=32, dropout=0.3)
    with pytest.raises(CnnpipeError, match="vgg11 has no LRN option; models with one: alexnet"):
        models.build("vgg11", num_classes=10, in_channels=3, image_size=32, lrn=True)


@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_init_schemes_reset_conv_and_linear_weights(scheme):
    torch.manual_seed(0)
    default = models.build("lenet", num_classes=10, in_channels=1, image_size=32)
    torch.manual_seed(0)
    model = models.build("lenet", num_classes=10, in_channels=1, image_size=32, init=scheme)
    conv = model.features[0]
    assert not torch.equal(conv.weight, default.features[0].weight)
    assert torch.count_nonzero(conv.bias) == 0
    fan_in, fan_out = 25, 6 * 25
    expected = np.sqrt(2 / fan_out) if scheme == "kaiming" else np.sqrt(2 / (fan_in + fan_out))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.35)


def test_unknown_model_lists_the_registry():
    with pytest.raises(CnnpipeError, match="allowed: lenet, alexnet, vgg11"):
        models.build("lenet7", num_classes=10, in_channels=1, image_size=32)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_v3_batchnorm_statistics_keep_up_with_short_runs(name):
    # torchvision's 0.01 left eval-mode accuracy at chance after ten epochs of the digits.
    model = models.build(name, num_classes=10, in_channels=1, image_size=32)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and {m.momentum for m in norms} == {0.1}
