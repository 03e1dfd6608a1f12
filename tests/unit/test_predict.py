import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.classifier import shipped
from cnnpipe.export import to_onnx
from cnnpipe.images import ImageError, network_input
from cnnpipe.model_files import Metadata, OnnxModel
from cnnpipe.predict import predict_files

from conftest import run

META = Metadata(image_size=16, in_channels=1, classes=list("abc"), mean=[0.5], std=[0.25])


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    spec = ModelSpec("lenet", 3, 1, 16, [0.5], [0.25], ["cat", "dog", "向日葵"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    to_onnx(shipped(spec.build(), spec), Metadata.from_spec(spec), path, opset=20)
    return path


def picture(mode: str, size=(20, 24)) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8), "RGB")
    return rgb if mode == "RGB" else rgb.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA"])
@pytest.mark.parametrize("channels", [1, 3])
def test_grey_and_colour_pictures_become_the_models_input(tmp_path, mode, channels):
    path = tmp_path / "x.png"
    picture(mode).save(path)
    meta = Metadata(16, channels, ["a"], [0.5] * channels, [0.25] * channels)
    x = network_input(path, meta)
    assert x.shape == (16, 16, channels) and x.dtype == np.uint8  # raw pixels, model's size


def test_pixels_reach_the_model_unscaled(tmp_path):
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "white.png")
    assert (network_input(tmp_path / "white.png", META) == 255).all()


def test_unusable_files_get_an_error_naming_file_and_reason(tmp_path):
    picture("RGB").save(tmp_path / "ok.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "ok.png").read_bytes()[:80])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a picture")
    picture("RGB").convert("CMYK").save(tmp_path / "cmyk.jpg")
    cases = {
        "truncated.png": "broken image",
        "empty.jpg": "empty file \\(0 bytes\\)",
        "notes.txt": "not an image file Pillow can read",
        "cmyk.jpg": "has 4 channel\\(s\\) in mode CMYK; expected an 8-bit grey, RGB or RGBA",
        "missing.png": "no such file",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageError, match=reason) as info:
            network_input(tmp_path / name, META)
        assert str(tmp_path / name) in str(info.value)


def test_a_broken_file_does_not_stop_the_others(tmp_path, onnx_file):
    model = OnnxModel(onnx_file)
    assert model.metadata.classes == ["cat", "dog", "向日葵"]  # from the file's metadata
    for i in range(3):
        picture("L", (16 + i, 16)).save(tmp_path / f"good{i}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    paths = sorted(tmp_path.iterdir())
    results = predict_files(model, paths, topk=2)
    assert [bool(r.error) for r in results] == [True, False, False, False]
    for r in results[1:]:
        assert len(r.top) == 2 and r.top[0][1] >= r.top[1][1]
        assert {name for name, _ in r.top} <= {"cat", "dog", "向日葵"}


def test_cli_on_a_folder_writes_csv_and_names_the_broken_file(tmp_path, onnx_file):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        picture("RGB").save(folder / f"img{i}.jpg")
    (folder / "broken.png").write_bytes(b"")
    result = run(
        ["cnnpipe", "predict", str(folder), "--model", str(onnx_file), "--topk", "2"],
        tmp_path,
        check=False,
    )
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["broken.png", "img0.jpg", "img1.jpg"]
    assert rows[0]["error"] and not rows[0]["class_1"]
    assert all(r["class_1"] and float(r["prob_1"]) >= float(r["prob_2"]) for r in rows[1:])
    assert result.stderr.strip() == f"error: {folder / 'broken.png'}: empty file (0 bytes)"


def test_onnx_prediction_never_imports_torch(tmp_path, onnx_file):
    picture("L").save(tmp_path / "x.png")
    code = (
        "import sys; from cnnpipe.cli import main; "
        f"main(['predict', {str(tmp_path / 'x.png')!r}, '--model', {str(onnx_file)!r}]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch')"
    )
    result = run(["python", "-c", code], tmp_path)
    assert result.stdout.splitlines()[-1] == "no torch"
    assert len(result.stdout.splitlines()) == 4  # three classes, then the check


def test_missing_model_file_is_named(tmp_path):
    result = run(
        ["cnnpipe", "predict", str(tmp_path), "--model", "nope.onnx"], tmp_path, check=False
    )
    assert result.returncode == 1
    assert "nope.onnx: no such model file" in result.stderr
