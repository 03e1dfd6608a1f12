"""MLflow as a team runs it: a tracking server on PostgreSQL with its artifacts in S3, its
web UI, and what happens when the server cannot be reached."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import boto3
import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from servers import s3_keys, team_server

from cnnpipe.checkpoint import load_model
from cnnpipe.classifier import shipped
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split

from conftest import as_in_a_terminal, cli_env, free_port, make_clone, run, set_params

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


def test_a_lost_store_gets_a_new_run_and_leaves_train_outputs_alone(trained_copy):
    repo = trained_copy
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


KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}


@pytest.fixture
def server(tmp_path, postgres, s3):
    """A team's tracking server, `cnnpipe server`: runs in PostgreSQL, artifacts in S3
    (moto's server), proxied by the server, which alone holds the S3 credentials."""
    with team_server(postgres.url, "s3://team/mlflow", s3, tmp_path / "server.log") as uri:
        yield uri


def test_pipeline_logs_to_a_tracking_server_and_its_ui_shows_the_run(
    tmp_path, server, s3, browser, screenshots, monkeypatch
):
    repo = make_clone(tmp_path / "repo")
    set_params(repo, epochs=2, tracking__register=True)
    # Up to export, which logs and registers the models; the inspect stage is not checked.
    # No S3 credentials here: no keys, no ~/.aws files, for the stages nor for this process.
    assert not KEYS & set(os.environ)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "no-such-file"))
    run(["dvc", "repro", "export"], repo, MLFLOW_TRACKING_URI=server)
    assert not (repo / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(server)
    run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    tracked = client.get_run(run_id)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["lr"] == "0.05" and tracked.data.params["epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [1, 2]
    test_acc = json.loads((repo / "metrics/evaluate.json").read_text())["test_acc"]
    assert tracked.data.metrics["test_acc"] == pytest.approx(test_acc)
    artifacts = {
        a.path
        for folder in ("evaluate", "model", "train")
        for a in client.list_artifacts(run_id, folder)
    }
    assert {
        "evaluate/confusion.png",
        "evaluate/confusion_normalized.png",
        "evaluate/misclassified.png",
        "evaluate/per_class.csv",
        "train/curves.png",
        "model/model.onnx",
        "model/model_summary.txt",
    } <= artifacts
    assert tracked.info.artifact_uri.startswith("mlflow-artifacts:")  # served, not a local path
    # The server put them in the bucket.
    listed = boto3.client("s3", endpoint_url=s3, **s3_keys()).list_objects_v2(
        Bucket="team", Prefix="mlflow/"
    )
    stored = [entry["Key"] for entry in listed["Contents"]]
    assert any(key.endswith(f"/{run_id}/artifacts/model/model.onnx") for key in stored), stored
    # The UI's download link: the server fetches the file from the bucket.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    link = f"{server}/get-artifact?path=model/model_summary.txt&run_uuid={run_id}"
    with direct.open(link, timeout=30) as answer:
        assert answer.read() == (repo / "metrics/model_summary.txt").read_bytes()

    # The logged models take raw uint8 images (N, H, W, C) and return probabilities: the
    # PyTorch one predicts what the checkpoint does, the registered classifier names the
    # classes.
    mlflow.set_tracking_uri(server)
    experiment = client.get_experiment(tracked.info.experiment_id)
    logged = {
        m.name: m
        for m in mlflow.search_logged_models(
            experiment_ids=[experiment.experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
            output_format="list",
        )
    }
    assert set(logged) == {"pytorch", "onnx", "classifier"}
    info = mlflow.models.get_model_info(f"models:/{logged['pytorch'].model_id}")
    spec = info.signature.inputs.to_dict()[0]["tensor-spec"]
    assert spec["shape"] == (-1, 32, 32, 1) and spec["dtype"] == "uint8"
    assert info.metadata["classes"] == [str(d) for d in range(10)]
    loaded = mlflow.pytorch.load_model(f"models:/{logged['pytorch'].model_id}")
    network, model_spec = load_model(repo / "models/best.pth", repo / "models/model.json")
    data, test = load_prepared(repo / "data/prepared"), load_split(repo / "data/split")["test"]
    images = data.images[test[:64]]
    with torch.no_grad():
        expected = shipped(network, model_spec)(torch.from_numpy(images)).numpy()
        assert np.allclose(loaded(torch.from_numpy(images)).numpy(), expected, atol=1e-6)
    champion = client.get_model_version_by_alias("cnnpipe", "champion")
    assert champion.run_id == run_id
    answer = mlflow.pyfunc.load_model("models:/cnnpipe@champion").predict(images)  # names
    assert list(answer["class"]) == [model_spec.classes[i] for i in expected.argmax(1)]
    assert np.allclose(answer["probability"], expected.max(1), atol=1e-5)

    # The web UI shows the run, named, with its test accuracy.
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}/#/experiments/{experiment.experiment_id}/runs/{run_id}")
    page.get_by_text("test_acc", exact=True).first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert tracked.info.run_name in body and run_id in body
    after = body[body.index("test_acc") :].split("\n")
    assert float(after[1]) == pytest.approx(test_acc)
    page.screenshot(path=screenshots / "mlflow-run.png", full_page=True)
    page.close()


def test_cnnpipe_ui_prints_its_address_once_it_answers_and_stops_whole(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(
        ["cnnpipe", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the UI and the server it starts, one process group
        preexec_fn=as_in_a_terminal,
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        said = []  # the server's own lines come through the same stdout
        while not said or "Ctrl-C stops it" not in said[-1]:
            said.append(ui.stdout.readline())
            assert said[-1], f"cnnpipe ui ended without its address: {said}"
        assert f"at {url} (Ctrl-C stops it)" in said[-1]
        with direct.open(f"{url}/health", timeout=5) as answer:  # answering when it says so
            assert answer.status == 200
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's process group
        try:
            code = ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)  # nothing left behind when it hangs
            raise
    assert code == 0
    with pytest.raises(OSError):
        direct.open(f"{url}/health", timeout=2)  # the server went with it
