"""Studies: a grid of DVC experiments on parallel workers, one parent run in MLflow, a report."""

import csv

import pytest
from mlflow import MlflowClient

from conftest import make_clone, run, set_params

pytestmark = pytest.mark.e2e


def test_study_runs_its_grid_once_and_reports_it(tmp_path):
    repo = make_clone(tmp_path / "repo")
    # The shipped learning-rate study, on a reduced grid and fewer epochs.
    (repo / "studies/learning_rate.yaml").write_text(
        "question: What does the learning rate do?\ngrid:\n  lr: [0.1, 0.01]\nset:\n  epochs: 3\n"
    )
    run(["git", "commit", "-qam", "a short study"], repo)
    # What the README's earlier commands leave in params.yaml (an Adam experiment, then
    # registration on) is not the study's base: the commit's params are.
    set_params(repo, optimizer="adam", tracking__register=True)

    first = run(["cnnpipe", "study", "learning_rate"], repo)
    assert "params.yaml differs from HEAD in optimizer, tracking.register" in first.stdout
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

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnpipe").experiment_id
    (parent,) = client.search_runs([experiment], "tags.study_parent = 'learning_rate'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.params["lr"] for c in children) == ["0.01", "0.1"]
    assert all(c.data.tags["study"] == "learning_rate" for c in children)
    assert all(c.data.params["optimizer"] == "sgd" for c in children)
    assert all(c.data.params["tracking.register"] == "False" for c in children)
    assert client.search_registered_models() == []
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/curves.png" in artifacts and "report/summary.md" in artifacts

    # Again: every experiment ran on this commit already, so nothing is queued or trained
    # and MLflow gets no new run; the report is drawn again from the same runs.
    (report / "summary.md").unlink()
    again = run(["cnnpipe", "study", "learning_rate"], repo)
    assert "2 of 2 experiments ran on this commit already; running 0" in again.stdout
    assert len(client.search_runs([experiment])) == len(children) + 1
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
