"""One network of every family through the real `dvc exp run`, on a tenth of the digits at
16 px (the small-input variants take it; what is checked is the path, not the score)."""

import json

import pytest
from mlflow import MlflowClient

from conftest import make_clone, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_clone(tmp_path_factory.mktemp("zoo") / "repo")


@pytest.mark.parametrize(
    "model", ["alexnet", "vgg11_bn", "googlenet", "resnext50_32x4d", "mobilenet_v3_small"]
)
def test_exp_run_trains_one_epoch_of_each_family(repo, model):
    # Up to export: the inspect stage's figures are not what this test checks.
    settings = [f"model={model}", "epochs=1", "split.fraction=0.1", "data.image_size=16"]
    run(["dvc", "exp", "run", "export", *(a for s in settings for a in ("-S", s))], repo)
    summary = (repo / "metrics/model_summary.txt").read_text()
    assert summary.startswith(f"{model}: small-input variant")
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert 0 <= evaluation["test_acc"] <= 1
    export = json.loads((repo / "metrics/export.json").read_text())
    assert export["onnx_top1_agreement"] == 1.0
    assert json.loads((repo / "models/model.json").read_text())["model"] == model

    run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    tracked = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert tracked.data.params["model"] == model
    assert "test_acc" in tracked.data.metrics
