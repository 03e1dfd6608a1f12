"""Photos of mixed aspect ratios trained with the photo recipe (recipes/photos.yaml) through
`cnnpipe recipe`, i.e. one real `dvc exp run`, small enough for a CPU."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from conftest import experiments_shown, make_clone, run

pytestmark = pytest.mark.e2e


def write_photos(root, per_class=16) -> None:
    """Two classes, the two photos scikit-learn ships, as crops of every shape: landscape,
    portrait and square, from 40 to 160 px a side, PNG and JPEG."""
    rng = np.random.default_rng(0)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (root / name).mkdir(parents=True)
        height, width = photo.shape[:2]
        for i in range(per_class):
            h, w = (int(x) for x in rng.integers(40, 161, 2))
            top, left = rng.integers(0, height - h), rng.integers(0, width - w)
            crop = Image.fromarray(photo[top : top + h, left : left + w])
            crop.save(root / name / f"{i:02d}.{'jpg' if i % 2 else 'png'}")


def test_the_photo_recipe_trains_on_photos_of_every_shape(tmp_path):
    repo = make_clone(tmp_path / "repo")
    write_photos(repo / "photos")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "photos"], repo)
    # Offline, so no ImageNet weights; a small network and two epochs for the CPU.
    small = [
        *("-S", "data.root=photos", "-S", "data.image_size=64", "-S", "data.resize_size=72"),
        *("-S", "net.pretrained=null", "-S", "model=mobilenet_v3_small"),
        *("-S", "epochs=2", "-S", "batch_size=8"),
    ]
    result = run(["cnnpipe", "recipe", "photos", "evaluate", *small], repo)
    assert result.stdout.startswith("$ dvc exp run evaluate -S data.source=imagefolder")

    prepared = np.load(repo / "data/prepared/images.npy", mmap_mode="r")
    assert prepared.shape == (32, 72, 72, 3)  # every shape cropped to a 72 px square
    spec = json.loads((repo / "models/model.json").read_text())
    assert (spec["image_size"], spec["resize"], spec["resize_size"]) == (64, "crop", 72)
    scores = json.loads((repo / "metrics/evaluate.json").read_text())
    assert 0 <= scores["test_acc"] <= 1 and 0 <= scores["test_acc_tta"] <= 1
    assert "test_top5_acc" not in scores  # two classes

    (listed,) = experiments_shown(repo).values()
    params = listed["params"]["params.yaml"]["data"]
    assert params["augment"]["random_resized_crop"] is True
    assert params["augment"]["mixup_alpha"] == 0.2 and params["train"]["ema_decay"] == 0.999
