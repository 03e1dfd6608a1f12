"""The README's Networks examples, run as written through the real `dvc exp run`: each must
learn the digits and be tracked."""

import json
import re
import shlex

import pytest
from mlflow import MlflowClient

from conftest import REPO, make_clone, run

# One clone for the examples, one after the other: they share its prepared 16 px images.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("networks")]


def networks_commands() -> list[str]:
    """The `dvc exp run` commands (continuation lines joined) of the first command block of
    the README's Networks section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Networks") : text.index("### Data")]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [" ".join(line.split()) for line in re.findall(r"^dvc exp run .*$", block, re.M)]


COMMANDS = networks_commands()


def model_of(command: str) -> str:
    return dict(s.split("=", 1) for s in shlex.split(command) if s.startswith("model="))["model"]


def test_the_readme_examples_are_found():
    assert [model_of(c) for c in COMMANDS] == ["resnet18", "mobilenet_v3_small", "alexnet"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_clone(tmp_path_factory.mktemp("networks") / "repo")


@pytest.mark.parametrize("command", COMMANDS, ids=model_of)
def test_readme_network_example_learns_and_is_tracked(repo, command):
    run(["git", "checkout", "--", "params.yaml"], repo)  # as the README says, between them
    run(command, repo)
    model = model_of(command)
    assert (
        (repo / "metrics/model_summary.txt").read_text().startswith(f"{model}: small-input variant")
    )
    evaluation = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluation["test_acc"] > 0.5, evaluation  # chance is 0.1
    assert json.loads((repo / "models/model.json").read_text())["model"] == model

    run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    tracked = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_id)
    assert tracked.data.params["model"] == model
    assert tracked.data.metrics["test_acc"] == pytest.approx(evaluation["test_acc"])
