import numpy as np
import pytest
import torch
from PIL import Image

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.classifier import shipped
from cnnpipe.errors import CnnpipeError
from cnnpipe.inspection import VIEWS, Shown, gradcam, gradcam_layer, stages, write_views

FAMILIES = [
    "lenet",
    "alexnet",
    "vgg11_bn",
    "googlenet",
    "resnet18",
    "resnext50_32x4d",
    "mobilenet_v2",
    "mobilenet_v3_small",
]


def pixels(n: int, size: int, channels: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def model_of(name: str, size: int, channels: int, variant: str):
    spec = ModelSpec(
        name,
        3,
        channels,
        size,
        [0.5] * channels,
        [0.25] * channels,
        ["a", "b", "c"],
        variant=variant,
    )
    torch.manual_seed(0)
    return shipped(spec.build(), spec)


# Every family small and grey, and (LeNet-5 has one form) large and RGB.
CASES = [(name, 32, 1, "small") for name in FAMILIES] + [
    (name, 96, 3, "imagenet") for name in FAMILIES if name != "lenet"
]


@pytest.mark.parametrize(("name", "size", "channels", "variant"), CASES)
def test_every_family_draws_the_three_views(tmp_path, name, size, channels, variant):
    model = model_of(name, size, channels, variant)
    images = pixels(4, size, channels)
    paths = write_views(
        model, Shown(images[:3], list("abc")), Shown(images, list("wxyz")), [0, 1, 2, 0], tmp_path
    )
    assert [p.name for p in paths] == list(VIEWS)
    for path in paths:
        with Image.open(path) as png:
            assert png.format == "PNG" and min(png.size) > 100

    found = stages(model.network, model.prepare(torch.from_numpy(images)))
    sizes = [s.maps.shape[-1] for s in found]
    assert len(found) >= 2 and sizes == sorted(set(sizes), reverse=True)  # shrinking maps
    assert all(s.maps.shape[0] == 4 and s.maps.shape[-1] > 1 for s in found)


def test_stages_follow_the_structure_not_names():
    model = model_of("resnet18", 64, 3, "imagenet")
    found = stages(model.network, model.prepare(torch.from_numpy(pixels(2, 64, 3))))
    assert [s.name for s in found][-4:] == ["layer1", "layer2", "layer3", "layer4"]
    assert [tuple(s.maps.shape[1:]) for s in found][-2:] == [(256, 4, 4), (512, 2, 2)]


def test_a_wrong_layer_is_named_with_the_stages_it_could_be():
    model = model_of("lenet", 32, 1, "small")
    inputs = model.prepare(torch.from_numpy(pixels(1, 32, 1)))
    assert gradcam_layer(model.network, inputs, "features.3") == "features.3"
    with pytest.raises(
        CnnpipeError,
        match=r"layer 'conv9' \(inspect.layer, or --layer\) is not.*stages are: features\.1",
    ):
        gradcam_layer(model.network, inputs, "conv9")


def trained_lenet():
    """LeNet-5 after three epochs on scikit-learn's digits, and some of its test images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images, np.ones((4, 4)))[..., None] * (255 / 16)
    images = images.astype(np.uint8)
    spec = ModelSpec("lenet", 10, 1, 32, [0.3], [0.4], [str(d) for d in range(10)])
    torch.manual_seed(0)
    model = shipped(spec.build(), spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.from_numpy(images[:1500]), torch.from_numpy(digits.target[:1500])
    model.train()
    # One thread, whatever the worker's share: float sums (and so this net) vary with it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(3):
        for i in range(0, len(x), 32):
            loss = torch.nn.functional.cross_entropy(model.logits(x[i : i + 32]), y[i : i + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.set_num_threads(threads)
    return model.eval(), images[1500:1510]


def test_gradcam_maps_have_the_input_size_and_show_somewhere():
    model, images = trained_lenet()
    inputs = model.prepare(torch.from_numpy(images))
    with torch.no_grad():
        predicted = model.network(inputs).argmax(1)
    maps = gradcam(model.network, inputs, predicted, gradcam_layer(model.network, inputs))
    assert maps.shape == (10, 32, 32)
    peaks = maps.max(axis=(1, 2))
    assert maps.min() >= 0 and np.isclose(peaks, 1.0).sum() + (peaks == 0).sum() == 10
    # Grad-CAM keeps only the evidence for the class (ReLU): after three epochs an image may
    # have none at this layer; the rest point somewhere. (The pipeline's e2e test asks
    # the fully trained model for a map on every image.)
    assert (maps.reshape(10, -1).std(axis=1) > 0.05).sum() >= 8
