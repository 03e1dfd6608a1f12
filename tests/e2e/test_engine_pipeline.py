"""The training engine under the real `dvc`: kill and resume, and DDP through torchrun, on
one machine and on two nodes."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import torch
from mlflow import MlflowClient

from conftest import cli_env, copy_repo, free_port, make_clone, run, set_params

pytestmark = pytest.mark.e2e


def mlflow_runs(repo):
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnpipe")
    return client, client.search_runs([experiment.experiment_id])


# Every training option of the photo recipes: a moving average, accumulation, clipping and
# every augmentation.
EVERY_OPTION = {"train__ema_decay": 0.9, "train__grad_accum_steps": 2, "train__clip_grad_norm": 1}
EVERY_OPTION |= {
    "augment__hflip": True,
    "augment__random_resized_crop": True,
    "augment__policy": "trivial_augment",
    "augment__color_jitter": 0.3,
    "augment__hue": 0.05,
    "augment__random_erasing": 0.25,
    "augment__mixup_alpha": 0.2,
    "augment__cutmix_alpha": 1.0,
}


def test_killed_training_resumes_to_the_same_result_in_one_mlflow_run(tmp_path):
    """Training with every augmentation, a moving average, accumulation and clipping,
    killed outright mid-run: the next `dvc repro` continues from the resume file and ends
    with the bytes of a run never killed. (Under DDP the same holds once the workers die
    with their launcher: tests/unit/test_distributed.py checks that they ask to.)"""
    # MobileNetV3 has BatchNorm and dropout, so the resumed RNG state matters.
    settings = {"model": "mobilenet_v3_small", "epochs": 4, "lr": 0.01, "optimizer": "adam"}
    # Fewer and smaller images per epoch: the same code paths, faster.
    settings |= {"split__fraction": 0.4, "data__image_size": 16} | EVERY_OPTION
    killed = make_clone(tmp_path / "killed")
    set_params(killed, **settings)
    run(["dvc", "repro", "split"], killed)
    clean = copy_repo(killed, tmp_path / "clean")  # the same split, never killed
    trainer = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=killed,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: dvc and the stage die together
    )
    state, done, deadline = killed / "models/train_state.pt", 0, time.time() + 300
    seen = None
    while done < 2 and time.time() < deadline and trainer.poll() is None:
        # Read the checkpoint only when a new one has replaced it: loading megabytes
        # twenty times a second would slow the training it waits for.
        stamp = state.stat().st_mtime_ns if state.exists() else None
        if stamp != seen:
            seen, done = stamp, len(torch.load(state, weights_only=True)["history"])
        time.sleep(0.05)
    os.killpg(trainer.pid, signal.SIGKILL)
    trainer.wait()
    assert 2 <= done < 4, "the kill must land mid-run"
    assert not (killed / "metrics/train.json").exists()  # nothing claims success

    resumed = run(["dvc", "repro", "train"], killed)
    assert f"resuming after epoch {done}" in resumed.stdout
    assert not state.exists()  # a finished run leaves no checkpoint behind
    run(["dvc", "repro", "train"], clean)
    for name in ("metrics/train.json", "metrics/history.csv"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
    weights = [torch.load(r / "models/best.pth", weights_only=True) for r in (killed, clean)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])

    client, runs = mlflow_runs(killed)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "val_acc")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # each epoch once
    assert (
        runs[0].data.metrics["best_val_acc"]
        == json.loads((clean / "metrics/train.json").read_text())["best_val_acc"]
    )


def test_torchrun_trains_with_ddp_on_two_gloo_processes(tmp_path):
    repo = make_clone(tmp_path / "repo")
    # The documented switch makes `dvc repro` itself train on two processes (torchrun).
    # Half the images at 16 px: the same code paths, faster. Every option on, so that each
    # is seen to work under DDP (the resume test above kills and resumes them).
    set_params(
        repo, epochs=3, train__nproc=2, split__fraction=0.5, data__image_size=16, **EVERY_OPTION
    )
    result = run(["dvc", "repro", "train"], repo)
    assert "starting 2 training processes" in result.stdout
    digests = dict(re.findall(r"rank (\d)/2: final weights ([0-9a-f]{16})", result.stdout))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    assert (repo / "models/best.pth").exists() and (repo / "metrics/train.json").exists()
    _, runs = mlflow_runs(repo)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 0 alone tracks

    # Cross-validation trains each fold the same way, logged as nested runs of that run.
    result = run(["dvc", "exp", "run", "crossval", "-S", "split.folds=2"], repo)
    assert "starting 2 training processes" in result.stdout
    assert "2-fold val accuracy" in result.stdout and "2 process(es) a fold" in result.stdout
    client, _ = mlflow_runs(repo)
    parent = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    experiment = client.get_experiment_by_name("cnnpipe").experiment_id
    folds = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_name for r in folds) == ["fold 1", "fold 2"]
    assert all(r.info.status == "FINISHED" and "best_val_acc" in r.data.metrics for r in folds)
    assert "Grad strides do not match" not in result.stdout + result.stderr


def test_two_nodes_train_one_network_and_a_late_node_joins(trained_copy, tmp_path):
    """Two "machines" on the loopback, one process each: node 0 by `dvc repro`, node 1,
    started seconds later, by running the stage's script; one network, one MLflow run."""
    node0 = trained_copy  # prepared and split: training starts at once
    master = f"127.0.0.1:{free_port()}"
    set_params(node0, epochs=2, train__nnodes=2, train__node_rank=0, train__master=master)
    node1 = copy_repo(node0, tmp_path / "node1")
    set_params(node1, train__node_rank=1)
    untouched = (node1 / "metrics/train.json").read_bytes()
    _, runs_of_node1 = mlflow_runs(node1)

    first = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=node0,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(5)  # node 0 waits at the rendezvous for the late one
    second = run(["python", "stages/train.py"], node1)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert "on node 0 of 2: -m torch.distributed.run --nnodes=2 --node-rank=0" in out
    weights = re.findall(r"rank (\d)/2: final weights ([0-9a-f]{16})", out + second.stdout)
    assert sorted(rank for rank, _ in weights) == ["0", "1"]
    assert len({digest for _, digest in weights}) == 1  # the same network on both

    _, runs = mlflow_runs(node0)
    trained = [r for r in runs if r.data.params.get("train.nnodes") == "2"]
    assert len(trained) == 1 and trained[0].info.status == "FINISHED"
    # Node 1 trained, but wrote and logged nothing of its own.
    assert (node1 / "metrics/train.json").read_bytes() == untouched
    assert len(mlflow_runs(node1)[1]) == len(runs_of_node1)
