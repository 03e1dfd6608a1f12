"""MLflow that cannot be reached: a clear failure in seconds, or untracked with a warning."""

import json
import time

import pytest

from conftest import free_port, make_clone, run, set_params

pytestmark = pytest.mark.e2e


def test_unreachable_mlflow_fails_fast_or_goes_on_untracked(tmp_path):
    repo = make_clone(tmp_path / "repo")
    set_params(repo, epochs=2)
    run(["dvc", "repro", "split"], repo)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    start = time.monotonic()
    failed = run(["python", "stages/train.py"], repo, check=False, MLFLOW_TRACKING_URI=closed)
    assert time.monotonic() - start < 30
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: cannot reach MLflow at {closed}")
    assert "tracking.required: false" in failed.stderr
    assert not (repo / "models/best.pth").exists() and (repo / "data/split").exists()

    set_params(repo, tracking__required=False)
    went_on = run(["python", "stages/train.py"], repo, MLFLOW_TRACKING_URI=closed)
    assert f"warning: cannot reach MLflow at {closed}" in went_on.stderr
    assert (repo / "models/best.pth").exists()
    assert json.loads((repo / "metrics/mlflow_run.json").read_text()) == {"mlflow_run_id": None}


def test_a_lost_store_gets_a_new_run_and_leaves_train_outputs_alone(tmp_path):
    repo = make_clone(tmp_path / "repo")
    set_params(repo, epochs=2)
    run(["dvc", "repro"], repo)
    run_file = (repo / "metrics/mlflow_run.json").read_bytes()
    (repo / "mlflow.db").unlink()  # the store is lost; DVC's outputs are not

    set_params(repo, export__atol=0.001)  # only the export stage re-runs
    result = run(["dvc", "repro"], repo)
    assert (
        "Running stage 'export'" in result.stdout and "Running stage 'train'" not in result.stdout
    )
    assert "is not in sqlite" in result.stderr and "logging to a new run" in result.stderr
    assert (repo / "metrics/mlflow_run.json").read_bytes() == run_file
    assert "Running stage" not in run(["dvc", "repro"], repo).stdout
