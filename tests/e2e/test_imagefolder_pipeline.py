"""Bring your own images: the real pipeline on a folder of PNG and JPEG files with broken
ones among them, trained with augmentation and cross-validated over three folds."""

import json

import numpy as np
import onnx
import pytest
from mlflow import MlflowClient
from PIL import Image

from conftest import BROKEN, DIGIT_CLASSES, make_clone, run, set_params, write_digit_folder

pytestmark = pytest.mark.e2e


def image_clone(tmp_path, per_class, **params):
    repo = make_clone(tmp_path / "repo")
    write_digit_folder(repo / "images", per_class=per_class)
    set_params(repo, data__source="imagefolder", data__root="images", **params)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "an image folder"], repo)
    return repo


def test_image_folder_with_bad_files_trains_and_cross_validates(tmp_path):
    repo = image_clone(
        tmp_path,
        per_class=40,
        data__channels=3,
        epochs=8,
        split__folds=3,
        augment__crop_padding=2,
        # Prepared at 36 px: training takes random 32 px crops, the rest the centre 32 px.
        data__resize_size=36,
        evaluate__tta="flip",
    )
    result = run(["dvc", "exp", "run", "export", "crossval"], repo)  # all but inspect
    output = result.stdout + result.stderr
    for name in BROKEN:
        assert f"unusable: one/{name}:" in output
    assert json.loads((repo / "metrics/prepare.json").read_text()) == {
        "images": 400,
        "bad_files": 3,
    }
    report = json.loads((repo / "data/prepared/report.json").read_text())
    assert report["images_per_class"]["向日葵"] == 40
    assert {b["path"] for b in report["bad_files"]} == {f"one/{n}" for n in BROKEN}

    assert np.load(repo / "data/prepared/images.npy", mmap_mode="r").shape == (400, 36, 36, 3)

    # Class names, spaces and all, reach the exported model, and how it sees a picture.
    meta = {p.key: p.value for p in onnx.load(repo / "models/model.onnx").metadata_props}
    assert json.loads(meta["classes"]) == sorted(DIGIT_CLASSES)
    assert (meta["image_size"], meta["resize"], meta["resize_size"]) == ("32", "crop", "36")
    picture = next((repo / "images/three").iterdir())
    shown = run(["cnnpipe", "preprocess", str(picture), "--out", "seen.png"], repo).stdout
    assert "crop to 36x36, then the centre 32x32" in shown
    assert Image.open(repo / "seen.png").size == (32, 32)
    scores = json.loads((repo / "metrics/evaluate.json").read_text())
    assert scores["test_acc"] > 0.6  # ten classes: chance is 0.1
    # Ten classes: top-5 beside top-1; and the flipped pass's own scores.
    assert scores["test_top5_acc"] >= scores["test_acc"]
    assert scores["test_top5_acc_tta"] >= scores["test_acc_tta"] > 0.3

    # Three folds and their aggregate, in metrics/ and in `dvc exp show`.
    crossval = json.loads((repo / "metrics/crossval.json").read_text())
    assert crossval["folds"] == 3
    scores = [crossval[f"fold_{k}"]["val_acc"] for k in (1, 2, 3)]
    assert crossval["val_acc"]["mean"] == pytest.approx(sum(scores) / 3)
    assert crossval["val_acc"]["std"] >= 0 and min(scores) > 0.3
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    workspace = shown[0]["data"]["metrics"]["metrics/crossval.json"]["data"]
    assert workspace["val_acc"]["mean"] == pytest.approx(crossval["val_acc"]["mean"])

    # In MLflow: the pipeline's run with the aggregate, and a nested run per fold.
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    parent_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.metrics["cv_val_acc_mean"] == pytest.approx(crossval["val_acc"]["mean"])
    assert parent.data.metrics["data_bad_files"] == 3
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert sorted(c.info.run_name for c in children) == ["fold 1", "fold 2", "fold 3"]
    for child in children:
        fold = int(child.data.params["fold"])
        assert child.info.status == "FINISHED"
        assert child.data.metrics["best_val_acc"] == pytest.approx(scores[fold - 1])
        assert len(client.get_metric_history(child.info.run_id, "val_acc")) == 8


def metrics_files(repo) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in (repo / "metrics").rglob("*") if p.is_file()}


def test_on_bad_file_fail_names_the_files_and_writes_nothing(tmp_path):
    repo = image_clone(tmp_path, per_class=8, data__on_bad_file="fail")
    committed = metrics_files(repo)
    result = run(["python", "stages/prepare.py"], repo, check=False)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 3 unusable file(s) in images (")
    assert "one/empty.png: empty file (0 bytes)" in error
    assert error.endswith("remove them or set data.on_bad_file: skip")
    assert list((repo / "data").iterdir()) == []  # no prepared set, no temporary left over
    assert metrics_files(repo) == committed
