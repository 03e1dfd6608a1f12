"""End to end: the real `dvc` and MLflow in a temporary clone of this repository."""

import csv
import hashlib
import io
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from cnnpipe.checkpoint import load_model
from cnnpipe.classifier import shipped
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.inspection import gradcam, gradcam_layer
from cnnpipe.model_files import open_model
from cnnpipe.predict import predict_files

from conftest import (
    as_in_a_terminal,
    cli_env,
    copy_repo,
    free_port,
    make_clone,
    run,
    set_params,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(trained, tmp_path_factory):
    """A clone where `dvc repro` has run once with the default params, for this module's
    tests to read (the tests that change it take their own copy)."""
    return copy_repo(trained, tmp_path_factory.mktemp("pipeline") / "repo")


def client(repo) -> MlflowClient:
    return MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")


def read_json(path):
    return json.loads(path.read_text())


def test_repro_trains_evaluates_and_exports(repo):
    evaluation = read_json(repo / "metrics/evaluate.json")
    assert evaluation["test_acc"] >= 0.97
    export = read_json(repo / "metrics/export.json")
    for name in ("onnx", "torchscript"):
        assert export[f"{name}_top1_agreement"] == 1.0
        assert export[f"{name}_max_diff_ppm"] <= 100 + 100 * export["max_abs_logit"]
    assert not (repo / "models/unsafe_pickle/model_full.pth").exists()  # opt-in only
    for out in ("model.onnx", "model.pt", "model_state_dict.pth", "best.pth", "model.json"):
        assert (repo / "models" / out).stat().st_size > 0
    history = (repo / "metrics/history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc" and len(history) == 31
    assert (repo / "metrics/confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_reports_render_as_dvc_plots(repo, tmp_path):
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo)
    html = (tmp_path / "plots/index.html").read_text()
    for name in ("confusion.png", "confusion_normalized.png", "misclassified.png"):
        assert (repo / "metrics" / name).read_bytes()[:4] == b"\x89PNG"
        assert name.replace(".png", "") in html
    for plot in ("loss", "accuracy", "confusion", "confusion_normalized", "model_summary.csv"):
        assert plot in html
    layers = list(csv.DictReader(io.StringIO((repo / "metrics/model_summary.csv").read_text())))
    assert sum(int(row["params"]) for row in layers) == 61_706  # LeNet-5 on 10 classes


def test_inspect_draws_four_figures_as_plots_and_run_artifacts(repo, tmp_path):
    names = ["filters.png", "feature_maps.png", "gradcam.png", "augmented.png"]
    for name in names:
        assert (repo / "metrics/inspect" / name).read_bytes()[:4] == b"\x89PNG"
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo)
    html = (tmp_path / "plots/index.html").read_text()
    assert all(f"metrics/inspect/{name}" in html for name in names)
    run_id = read_json(repo / "metrics/mlflow_run.json")["mlflow_run_id"]
    logged = {a.path for a in client(repo).list_artifacts(run_id, "inspect")}
    assert logged == {f"inspect/{name}" for name in names}

    # The trained network's Grad-CAM finds evidence on every image the figure shows.
    network, spec = load_model(repo / "models/best.pth", repo / "models/model.json")
    model = shipped(network, spec)
    data, test = load_prepared(repo / "data/prepared"), load_split(repo / "data/split")["test"]
    inputs = model.prepare(torch.from_numpy(data.images[test[:10]]))
    with torch.no_grad():
        predicted = network(inputs).argmax(1)
    maps = gradcam(network, inputs, predicted, gradcam_layer(network, inputs))
    assert maps.shape == (10, 32, 32) and (maps.reshape(10, -1).std(axis=1) > 0.05).all()


def test_cnnpipe_inspect_draws_the_views_of_one_picture(repo, tmp_path):
    data = load_prepared(repo / "data/prepared")
    Image.fromarray(data.images[0][:, :, 0]).resize((50, 40)).save(tmp_path / "mine.png")
    result = run(["cnnpipe", "inspect", str(tmp_path / "mine.png"), "--out", "look"], repo)
    assert result.stdout.split() == [
        f"look/{n}" for n in ("filters.png", "feature_maps.png", "gradcam.png")
    ]
    assert all((repo / p).read_bytes()[:4] == b"\x89PNG" for p in result.stdout.split())

    (tmp_path / "empty.png").write_bytes(b"")
    failed = run(["cnnpipe", "inspect", str(tmp_path / "empty.png")], repo, check=False)
    assert failed.returncode == 1 and "empty.png: empty file (0 bytes)" in failed.stderr
    failed = run(
        ["cnnpipe", "inspect", str(tmp_path / "mine.png"), "--layer", "x"], repo, check=False
    )
    assert (
        failed.returncode == 1
        and "layer 'x' (inspect.layer, or --layer) is not a module" in failed.stderr
    )


def test_without_folds_no_cross_validation_is_done(repo):
    assert read_json(repo / "metrics/crossval.json") == {"folds": 1}
    assert (np.load(repo / "data/folds/folds.npy") == -1).all()


def test_second_repro_runs_nothing(repo):
    result = run(["dvc", "repro"], repo)
    assert "Running stage" not in result.stdout + result.stderr
    assert "Data and pipelines are up to date" in result.stdout


def test_one_mlflow_run_holds_every_stage(repo, tmp_path):
    run_id = read_json(repo / "metrics/mlflow_run.json")["mlflow_run_id"]
    mlflow_run = client(repo).get_run(run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["lr"] == "0.05"
    assert mlflow_run.data.params["data.image_size"] == "32"
    commit = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert mlflow_run.data.tags["git.commit"] == commit
    metrics = mlflow_run.data.metrics
    evaluation = read_json(repo / "metrics/evaluate.json")
    assert metrics["test_acc"] == pytest.approx(evaluation["test_acc"])
    assert "onnx_max_diff_ppm" in metrics
    # The environment it ran in: the lock's hash, and the lock itself.
    lock = (repo / "requirements.lock").read_bytes()
    assert mlflow_run.data.tags["env.lock"] == f"sha256:{hashlib.sha256(lock).hexdigest()}"
    logged = client(repo).download_artifacts(run_id, "environment/requirements.lock", str(tmp_path))
    assert Path(logged).read_bytes() == lock


PREPROCESSING_OPS = {
    "model.onnx": ["Transpose", "Cast", "Div", "Sub", "Div"],
    "model.pt": ["permute", "to", "div", "sub", "div"],
}


def start_netron(repo, model_file: str, port: int) -> subprocess.Popen:
    """`cnnpipe netron` on `port`, as from a terminal (Ctrl-C stops it); its lines on stdout."""
    return subprocess.Popen(
        ["cnnpipe", "netron", model_file, "--port", str(port)],
        cwd=repo,
        env=cli_env(),
        preexec_fn=as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def settled_nodes(page, timeout: float = 20) -> list[tuple[float, str]]:
    """(y, text) of every node Netron draws, top to bottom, once two reads half a second
    apart agree: the nodes appear before the layout has placed them all (one run read a
    constant's node above the graph's first operation)."""
    deadline, before = time.monotonic() + timeout, None
    while True:
        drawn = sorted(
            (n.bounding_box()["y"], n.text_content())
            for n in page.locator("#canvas g.node[id^='node-']").all()
        )
        if drawn == before or time.monotonic() > deadline:
            return drawn
        before = drawn
        page.wait_for_timeout(500)


@pytest.mark.parametrize("name", ["model.onnx", "model.pt"])
def test_netron_shows_the_exported_graph(repo, browser, screenshots, name):
    port = free_port()
    server = start_netron(repo, f"models/{name}", port)
    try:
        banner = server.stdout.readline()
        while banner and "http://" not in banner:
            banner = server.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner  # loopback only, URL printed
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#message-button").click(timeout=15_000)  # Netron's consent message
        page.wait_for_selector("#canvas g.node", timeout=30_000)
        assert page.locator("#canvas g.node").count() >= 8  # the layers, connected
        # Top to bottom, the graph opens with the preprocessing (layout, cast, scale,
        # normalise) and closes with the softmax.
        drawn = settled_nodes(page)
        ops = PREPROCESSING_OPS[name]
        assert [text[: len(op)] for (_, text), op in zip(drawn[:5], ops, strict=True)] == ops
        assert drawn[-1][1].lower().startswith("softmax"), drawn[-3:]
        page.screenshot(path=screenshots / f"netron-{name}.png")
        page.close()
    finally:
        server.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = server.wait(timeout=20)
        finally:
            server.kill()  # no server left behind, whatever happened above
    assert code == 0


def test_netron_stops_on_ctrl_c_while_a_browser_holds_an_idle_connection(repo):
    import socket

    port = free_port()
    server = start_netron(repo, "models/model.onnx", port)
    try:
        assert f"http://127.0.0.1:{port}" in server.stdout.readline()
        # Chromium opens spare connections it may never send a request on.
        with socket.create_connection(("127.0.0.1", port)):
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=20) == 0
    finally:
        server.kill()


def test_every_export_predicts_the_test_split_alike(repo, tmp_path):
    data, test = load_prepared(repo / "data/prepared"), load_split(repo / "data/split")["test"]
    folder = tmp_path / "test-images"
    folder.mkdir()
    for i in test:
        Image.fromarray(data.images[i][:, :, 0]).save(folder / f"{i:04d}.png")
    paths = sorted(folder.iterdir())
    results = {
        name: predict_files(open_model(repo / "models" / name), paths, topk=1)
        for name in ("model.onnx", "model.pt", "best.pth")
    }
    top = {name: [r.top[0][0] for r in res] for name, res in results.items()}
    assert top["model.onnx"] == top["model.pt"] == top["best.pth"]
    probs = {name: np.array([r.top[0][1] for r in res]) for name, res in results.items()}
    assert np.allclose(probs["model.onnx"], probs["best.pth"], atol=1e-5)
    # The saved PNGs go through predict's own preprocessing and score what evaluate scored.
    truth = [data.classes[data.labels[i]] for i in test]
    accuracy = np.mean([p == t for p, t in zip(top["model.onnx"], truth, strict=True)])
    assert accuracy == pytest.approx(read_json(repo / "metrics/evaluate.json")["test_acc"])

    (folder / "broken.png").write_bytes(b"\x89PNG\r\n")
    result = run(["cnnpipe", "predict", str(folder)], repo, check=False)  # default: ONNX
    assert result.returncode == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(test) + 1
    assert sum(bool(r["class_1"]) for r in rows) == len(test)
    assert "broken.png" in result.stderr


def test_bad_param_stops_the_pipeline_and_keeps_earlier_outputs(trained_copy):
    repo = trained_copy
    before = (repo / "models/model.onnx").read_bytes()
    set_params(repo, model="resnet999")
    try:
        result = run(["dvc", "repro"], repo, check=False)
    finally:
        run(["git", "checkout", "params.yaml"], repo)
    assert result.returncode != 0
    assert "error: params.yaml: model is 'resnet999', which is not registered" in result.stderr
    assert (repo / "models/model.onnx").read_bytes() == before


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lrr", 0.1, "unknown key 'lrr' (did you mean 'lr'?); allowed at top level: model, lr,"),
        ("lr", -0.1, "lr must be > 0, got -0.1"),
        ("model", "lenet5", "model is 'lenet5', which is not registered; allowed: lenet"),
        ("optimizer", "rmsprop", "optimizer is 'rmsprop'; allowed: sgd, adam"),
    ],
)
def test_stage_reports_bad_params_in_one_line_and_writes_nothing(tmp_path, key, value, message):
    repo = make_clone(tmp_path / "repo")
    set_params(repo, **{key: value})
    result = run(["python", "stages/prepare.py"], repo, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: params.yaml: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (repo / "data").exists()
