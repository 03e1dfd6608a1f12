"""Studies: a grid of DVC experiments on parallel workers, one parent run in MLflow, a report."""

import csv
import re

import pytest
from mlflow import MlflowClient

from conftest import REPO, experiments_shown, make_clone, run, set_params

pytestmark = pytest.mark.e2e


def readme_commands(*starts: str) -> list[str]:
    """The README's command lines that begin with these words, in the README's order,
    without their comments; each must be there."""
    lines = [line.split("  #")[0].strip() for line in (REPO / "README.md").read_text().splitlines()]
    found = [next((line for line in lines if line.startswith(s)), None) for s in starts]
    assert None not in found, f"the README no longer has {starts[found.index(None)]!r}"
    assert sorted(found, key=lines.index) == found, "the README gives them in another order"
    return found


def experiment_listed_and_tracked(repo, client, experiment, result, params: dict) -> None:
    """`dvc exp run`'s experiment is listed by `dvc exp show` with its params and metrics,
    and tracked as one MLflow run of its name with every epoch and the exported model."""
    name = re.search(r"Ran experiment\(s\): (\S+)", result.stdout).group(1)
    # Not on a terminal: no progress bars and no INFO lines from MLflow in the output.
    assert "Downloading artifacts" not in result.stdout + result.stderr
    assert "INFO mlflow" not in result.stdout + result.stderr

    listed = experiments_shown(repo)[name]
    assert params.items() <= listed["params"]["params.yaml"]["data"].items()
    test_acc = listed["metrics"]["metrics/evaluate.json"]["data"]["test_acc"]

    (tracked,) = client.search_runs([experiment], f"tags.`dvc.exp_name` = '{name}'")
    assert tracked.info.run_name == name
    assert all(tracked.data.params[k] == str(v) for k, v in params.items())
    epochs = listed["params"]["params.yaml"]["data"]["epochs"]
    history = client.get_metric_history(tracked.info.run_id, "val_acc")
    assert [m.step for m in history] == list(range(1, epochs + 1))
    assert tracked.data.metrics["test_acc"] == pytest.approx(test_acc) and test_acc > 0.5
    artifacts = [a.path for a in client.list_artifacts(tracked.info.run_id, "model")]
    assert "model/model.onnx" in artifacts
    # Artifacts live under the project root, not in a temporary copy.
    assert tracked.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())


@pytest.mark.waits
def test_readme_commands_in_order_then_a_study_on_the_committed_params(trained_copy):
    """The README's Using-it commands one after the other: an Adam experiment, registration
    switched on, then a study. The study still trains with the committed SGD, registers
    nothing, and leaves the other studies' committed reports alone."""
    repo = trained_copy
    # Shorter: three epochs a run, and the shipped learning-rate study on a reduced grid.
    set_params(repo, epochs=3)
    (repo / "studies/learning_rate.yaml").write_text(
        "question: What does the learning rate do?\ngrid:\n  lr: [0.1, 0.01]\n"
    )
    run(["git", "commit", "-qam", "short runs, a short study"], repo)
    reports = {p: p.read_bytes() for p in (repo / "reports").rglob("*") if p.is_file()}
    adam, register, study = readme_commands(
        "dvc exp run -S optimizer=adam", "dvc exp run -S tracking.register=true", "cnnpipe study"
    )
    assert study == "cnnpipe study learning_rate"
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnpipe").experiment_id

    result = run(adam, repo)
    experiment_listed_and_tracked(repo, client, experiment, result, {"optimizer": "adam"})
    run(register, repo)

    first = run(["cnnpipe", "study", "learning_rate"], repo)
    assert "params.yaml differs from HEAD in lr, optimizer, tracking.register" in first.stdout
    report = repo / "reports/learning_rate"
    assert {p.name for p in report.iterdir()} == {
        "curves.png",
        "results.csv",
        "results.md",
        "summary.md",
    }
    assert "reports/learning_rate/summary.md" in first.stdout
    assert first.stdout.count(": success") == 2  # a line as each experiment ends
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert [r["setting"] for r in rows] == ["lr=0.1", "lr=0.01"]
    why = [(r["setting"], r["status"], r["error"]) for r in rows]
    assert all(r["status"] == "FINISHED" and 0 < float(r["test_acc"]) <= 1 for r in rows), why
    assert all(float(r["train_seconds"]) > 0 and r["best_epoch"] for r in rows)
    best = max(rows, key=lambda r: float(r["test_acc"]))
    summary = (report / "summary.md").read_text()
    assert "What does the learning rate do?" in summary and best["setting"] in summary
    assert f"best test accuracy, {float(best['test_acc']):.4f}" in summary

    (parent,) = client.search_runs([experiment], "tags.study_parent = 'learning_rate'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.params["lr"] for c in children) == ["0.01", "0.1"]
    assert all(c.data.tags["study"] == "learning_rate" for c in children)
    assert all(c.data.params["optimizer"] == "sgd" for c in children)
    assert all(c.data.params["tracking.register"] == "False" for c in children)
    # The one registered version is the README's registration experiment's.
    (registered,) = client.search_model_versions("name = 'cnnpipe'")
    assert registered.run_id not in {c.info.run_id for c in children}
    others = {p: b for p, b in reports.items() if "learning_rate" not in p.parts}
    assert others and all(p.read_bytes() == b for p, b in others.items())
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/curves.png" in artifacts and "report/summary.md" in artifacts

    # Again: every experiment ran on this commit already, so nothing is queued or trained
    # and MLflow gets no new run; the report is drawn again from the same runs.
    (report / "summary.md").unlink()
    before = len(client.search_runs([experiment]))
    again = run(["cnnpipe", "study", "learning_rate"], repo)
    assert "2 of 2 experiments ran on this commit already; running 0" in again.stdout
    assert len(client.search_runs([experiment])) == before
    assert (report / "summary.md").is_file()
    assert list(csv.DictReader((report / "results.csv").open())) == rows


def test_a_bad_study_is_refused_naming_the_problem(tmp_path):
    repo = make_clone(tmp_path / "repo")
    failed = run(["cnnpipe", "study", "nope"], repo, check=False)
    assert failed.returncode == 1 and "studies/nope.yaml: no such study; known:" in failed.stderr
    assert "learning_rate" in failed.stderr

    (repo / "studies/typo.yaml").write_text("grid:\n  learning_rate: [0.1]\n")
    failed = run(["cnnpipe", "study", "typo"], repo, check=False)
    assert failed.returncode == 1 and "learning_rate" in failed.stderr
    assert "did you mean" in failed.stderr or "unknown" in failed.stderr
    assert not (repo / "reports/typo").exists()
