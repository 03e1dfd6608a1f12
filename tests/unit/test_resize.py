"""Pictures of any aspect ratio: `data.resize` (crop, pad, stretch) and `data.resize_size`,
checked against torchvision's transforms on the photos scikit-learn ships."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms import v2

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.cli import main as cnnpipe
from cnnpipe.config import ConfigError, parse_params
from cnnpipe.crops import centre_crop
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import DeviceData
from cnnpipe.images import network_input, read_picture, to_pixels
from cnnpipe.model_files import Metadata, OnnxModel

# china.jpg and flower.jpg: 640 x 427 colour photos.
PHOTOS = [Image.fromarray(photo) for photo in load_sample_images().images]


def tv_pixels(picture) -> np.ndarray:
    return np.asarray(picture, dtype=np.uint8)


@pytest.mark.parametrize("photo", PHOTOS, ids=["china", "flower"])
@pytest.mark.parametrize("channels", [3, 1])
def test_crop_sees_what_torchvision_resize_and_center_crop_see(photo, channels):
    mode = "RGB" if channels == 3 else "L"
    ours = centre_crop(to_pixels(photo, channels, 256, "crop"), 224)
    assert ours.shape == (224, 224, channels)
    reference = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])
    # On a Pillow image torchvision resizes with Pillow: the same pixels exactly.
    expected = tv_pixels(reference(photo.convert(mode))).reshape(ours.shape)
    assert np.array_equal(ours, expected)
    # Its own tensor kernel (antialiased bilinear) differs in rounding only.
    tensor = v2.functional.pil_to_tensor(photo.convert(mode))
    theirs = reference(tensor).permute(1, 2, 0).numpy()
    off = np.abs(ours.astype(int) - theirs.astype(int))
    assert off.max() <= 2 and (off <= 1).mean() >= 0.99


def test_pad_keeps_the_whole_picture_between_black_bars():
    photo = PHOTOS[0]  # 640 x 427: landscape
    padded = to_pixels(photo, 3, 64, "pad")
    assert padded.shape == (64, 64, 3)
    height = int(64 * 427 / 640)  # 42 rows of picture
    top = (64 - height) // 2
    assert (padded[:top] == 0).all() and (padded[top + height :] == 0).all()
    whole = np.asarray(photo.resize((64, height), Image.Resampling.BILINEAR))
    assert np.array_equal(padded[top : top + height], whole)


def test_stretch_squeezes_and_square_pictures_are_the_same_every_way():
    photo = PHOTOS[1]
    stretched = to_pixels(photo, 3, 48, "stretch")
    assert np.array_equal(stretched, np.asarray(photo.resize((48, 48), Image.Resampling.BILINEAR)))
    square = photo.crop((0, 0, 300, 300))
    same = [to_pixels(square, 1, 40, mode) for mode in ("crop", "pad", "stretch")]
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])


def test_resize_size_below_image_size_is_refused():
    with pytest.raises(ConfigError, match=r"data.resize_size \(24\) must be at least"):
        parse_params({"data": {"image_size": 32, "resize_size": 24}}, "params.yaml")
    with pytest.raises(ConfigError, match="data.resize"):
        parse_params({"data": {"resize": "squash"}}, "params.yaml")


def torchvision_crop(image: torch.Tensor, top: int, left: int, size: int, flip: bool):
    crop = v2.functional.crop(image, top, left, size, size)  # black outside the image
    return v2.functional.horizontal_flip(crop) if flip else crop


def test_training_crops_are_torchvision_crops_drawn_over_the_whole_range():
    """Each augmented image equals torchvision's crop (and flip) of its source at one of
    the allowed offsets, and over many draws every offset of the range is used."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8, generator=generator)
    augment = Augment(crop_padding=1, hflip=True, size=8, source_size=12)
    seen = set()
    for _ in range(4):
        out = augment(images, generator)
        assert out.shape == (64, 3, 8, 8)
        for image, crop in zip(images, out, strict=True):
            matches = [
                (top, left, flip)
                for top in range(-1, 6)
                for left in range(-1, 6)
                for flip in (False, True)
                if torch.equal(torchvision_crop(image, top, left, 8, flip), crop)
            ]
            assert matches, "not a crop of its source"
            seen.update(matches)
    assert {(t, f) for t, _, f in seen} == {(t, f) for t in range(-1, 6) for f in (0, 1)}
    assert {left for _, left, _ in seen} == set(range(-1, 6))


def test_evaluation_batches_are_the_centre_crops():
    images = np.random.default_rng(0).integers(0, 256, (10, 13, 13, 1), dtype=np.uint8)
    data = DeviceData(images, np.arange(10), [0.0], [1 / 255], "cpu", size=8)
    batch, _ = next(data.batches(10))
    assert torch.equal(
        batch.round().to(torch.uint8)[:, 0], torch.from_numpy(images[:, 2:10, 2:10, 0])
    )


@pytest.fixture(scope="module")
def cropping_model(tmp_path_factory):
    """A tiny exported model whose pictures are prepared at 20 px and cut to 16."""
    from cnnpipe.classifier import shipped
    from cnnpipe.export import to_onnx

    spec = ModelSpec("lenet", 2, 3, 16, [0.5] * 3, [0.25] * 3, ["a", "b"], "small")
    spec = ModelSpec(**{**spec.__dict__, "resize": "crop", "resize_size": 20})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    to_onnx(shipped(spec.build(), spec), Metadata.from_spec(spec), path, opset=20)
    return path


def test_preprocess_writes_exactly_what_the_model_receives(cropping_model, tmp_path, capsys):
    PHOTOS[0].save(tmp_path / "china.jpg", quality=95)
    model = OnnxModel(cropping_model)
    assert (model.metadata.resize, model.metadata.resize_size) == ("crop", 20)
    cnnpipe(
        [
            "preprocess",
            str(tmp_path / "china.jpg"),
            "--model",
            str(cropping_model),
            "--out",
            str(tmp_path / "seen.png"),
        ]
    )
    assert "crop to 20x20, then the centre 16x16" in capsys.readouterr().out
    seen = np.asarray(Image.open(tmp_path / "seen.png"))
    received = network_input(tmp_path / "china.jpg", model.metadata)
    assert seen.shape == (16, 16, 3) and np.array_equal(seen, received)
    assert np.array_equal(received, read_picture(tmp_path / "china.jpg", 3, 20, "crop")[2:18, 2:18])


def test_preprocess_refuses_a_lossy_output_and_writes_nothing(cropping_model, tmp_path, capsys):
    PHOTOS[1].save(tmp_path / "flower.png")
    with pytest.raises(SystemExit) as exit_info:
        cnnpipe(
            [
                "preprocess",
                str(tmp_path / "flower.png"),
                "--model",
                str(cropping_model),
                "--out",
                str(tmp_path / "seen.jpg"),
            ]
        )
    assert exit_info.value.code == 1
    assert "give a .png file" in capsys.readouterr().err
    assert not (tmp_path / "seen.jpg").exists()


def test_model_files_from_before_resize_existed_stretch_their_pictures():
    props = Metadata(16, 1, ["a"], [0.5], [0.25]).to_props()
    del props["resize"], props["resize_size"]
    old = Metadata.from_props(props, "old.onnx")
    assert (old.resize, old.resize_size) == ("stretch", 16)
