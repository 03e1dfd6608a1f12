"""The registered model as MLflow users meet it: served over HTTP, loaded in Python, with the
run's datasets and system metrics on record."""

import json
import subprocess
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import onnxruntime as ort
import pytest
from mlflow import MlflowClient
from PIL import Image

from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split

from conftest import cli_env, copy_repo, free_port, run, set_params

# The module's tests share one registered model: on one worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serving")]


@pytest.fixture(scope="module")
def repo(trained, tmp_path_factory):
    """The trained pipeline (system metrics sampled every second) with registration
    switched on, which re-runs the export stage alone: its model is the champion."""
    path = copy_repo(trained, tmp_path_factory.mktemp("serving") / "repo")
    set_params(path, tracking__register=True)
    result = run(["dvc", "repro"], path)
    assert (
        "Running stage 'export'" in result.stdout and "Running stage 'train'" not in result.stdout
    )
    return path


def store(repo) -> str:
    return f"sqlite:///{repo / 'mlflow.db'}"


def pipeline_run(repo):
    run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    return MlflowClient(store(repo)).get_run(run_id)


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_until_up(server: subprocess.Popen, url: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} in {limit} s")


def test_served_champion_answers_raw_pixels_like_predict_and_onnxruntime(repo, tmp_path):
    # Three test images as PNG files, and as the uint8 arrays a PNG decoder gives back.
    data, test = load_prepared(repo / "data/prepared"), load_split(repo / "data/split")["test"]
    paths = []
    for i in test[:3]:
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(data.images[i][:, :, 0]).save(paths[-1])
    pixels = np.stack([np.asarray(Image.open(p))[:, :, None] for p in paths])
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 32, 32, 1)

    predicted = []
    for path in paths:
        first = run(["cnnpipe", "predict", str(path), "--topk", "1"], repo).stdout.split("\t")
        predicted.append(first[0])

    session = ort.InferenceSession(str(repo / "models/model.onnx"))
    probs = session.run(None, {"images": pixels})[0]
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    assert [classes[i] for i in probs.argmax(1)] == predicted

    port = free_port()
    server = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/cnnpipe@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=repo,
        env=cli_env(MLFLOW_TRACKING_URI=store(repo)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/ping")
        answer = post(f"http://127.0.0.1:{port}/invocations", {"inputs": pixels.tolist()})
        # Pictures of another size or channel count, not pixels, none, too many: a 400
        # whose message is the cause alone, in one line, without the request's numbers.
        for wrong, cause in [
            (np.zeros((1, 28, 28), np.uint8), "got an array of shape (1, 28, 28)"),
            (np.zeros((1, 32, 32, 3), np.uint8), "got an array of shape (1, 32, 32, 3)"),
            (pixels / 255, "expected whole pixel values 0..255; got float64 values"),
            (np.full((1, 32, 32, 1), "x"), "expected whole pixel values 0..255; got <U1"),
            (np.zeros((0, 32, 32, 1), np.uint8), "expected at least one image"),
            (np.zeros((1025, 32, 32, 1), np.uint8), "at most 1024 images a request; got 1025"),
        ]:
            with pytest.raises(urllib.error.HTTPError) as refused:
                post(f"http://127.0.0.1:{port}/invocations", {"inputs": wrong.tolist()})
            assert refused.value.code == 400
            message = json.loads(refused.value.read())["message"]
            assert cause in message and len(message) < 120 and "\n" not in message, message
        # A body that is not JSON: MLflow's own 400, which says so.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", b"[1, 2", {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400
        assert "valid JSON" in json.loads(refused.value.read())["message"]
        # And the server goes on answering.
        assert post(f"http://127.0.0.1:{port}/invocations", {"inputs": pixels.tolist()}) == answer
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = answer["predictions"]
    assert [row["class"] for row in rows] == predicted
    assert np.allclose([row["probability"] for row in rows], probs.max(1), atol=1e-6)
    assert np.allclose([row["probabilities"] for row in rows], probs, atol=1e-6)

    # The same in Python.
    mlflow.set_tracking_uri(store(repo))
    local = mlflow.pyfunc.load_model("models:/cnnpipe@champion").predict(pixels)
    assert list(local["class"]) == predicted


def test_system_metrics_are_sampled_while_training(repo):
    metrics = pipeline_run(repo).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics


def datasets(tracked) -> dict[str, tuple[str, str, dict]]:
    """context -> (name, digest, tags) of a run's dataset inputs."""
    found = {}
    for entry in tracked.inputs.dataset_inputs:
        tags = {t.key: t.value for t in entry.tags}
        found[tags.pop("mlflow.data.context")] = (entry.dataset.name, entry.dataset.digest, tags)
    return found


def test_run_lists_its_three_splits_whose_digests_follow_the_split(trained_copy):
    repo = trained_copy
    tracked = pipeline_run(repo)
    first = datasets(tracked)
    assert set(first) == {"training", "validation", "test"}
    sizes = {"training": "1259", "validation": "269", "test": "269"}
    for context, (name, digest, tags) in first.items():
        part = {"training": "train", "validation": "val", "test": "test"}[context]
        assert name == f"digits-{part}" and len(digest) == 16
        assert tags == {"images": sizes[context], "classes": "10"}
    assert len({digest for _, digest, _ in first.values()}) == 3

    # Search by dataset, as the UI's filter does.
    experiment = tracked.info.experiment_id
    found = MlflowClient(store(repo)).search_runs(
        [experiment], filter_string=f"dataset.digest = '{first['test'][1]}'"
    )
    assert [r.info.run_id for r in found] == [tracked.info.run_id]

    # Another split: every digest changes. The same split again: none does.
    set_params(repo, seed=7, epochs=1)  # the epochs are no part of a dataset's digest
    run(["dvc", "repro", "train"], repo)  # the stage that logs the datasets
    second = datasets(pipeline_run(repo))
    assert all(second[c][1] != first[c][1] for c in first)
    set_params(repo, seed=42)
    run(["dvc", "repro", "-f", "train"], repo)
    assert {c: d for c, (_, d, _) in datasets(pipeline_run(repo)).items()} == {
        c: d for c, (_, d, _) in first.items()
    }
