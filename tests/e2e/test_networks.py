"""The README's Networks examples, run as written through the real `dvc exp run`: each must
learn the digits, export, and be tracked."""

import json
import re
import shlex

import pytest
from mlflow import MlflowClient

from conftest import REPO, make_clone, run

pytestmark = pytest.mark.e2e


def networks_commands() -> list[str]:
    """The `dvc exp run` lines of the first command block of the README's Networks section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Networks") : text.index("### Data")]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return re.findall(r"^dvc exp run .*$", block, re.M)


COMMANDS = networks_commands()


def test_the_readme_examples_are_found():
    models = [dict(s.split("=", 1) for s in shlex.split(c)[4::2])["model"] for c in COMMANDS]
    assert models == ["resnet18", "mobilenet_v3_small"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_clone(tmp_path_factory.mktemp("networks") / "repo")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.split("model=")[1].split()[0])
def test_readme_network_example_learns_exports_and_is_tracked(repo, command):
    run(["git", "checkout", "--", "params.yaml"], repo)  # as the README says, between them
    run(command, repo)
    model = command.split("model=")[1].split()[0]
    assert (
        (repo / "metrics/model_summary.txt").read_text().startswith(f"{model}: small-input variant")
    )
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_acc"] > 0.5, evaluation  # chance is 0.1
    export = json.loads((repo / "metrics/export.json").read_text())
    assert export["onnx_top1_agreement"] == 1.0
    assert json.loads((repo / "models/model.json").read_text())["model"] == model

    run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    tracked = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert tracked.data.params["model"] == model
    assert tracked.data.metrics["test_acc"] == pytest.approx(evaluation["test_acc"])
