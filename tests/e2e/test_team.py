"""A team on real servers: `cnnpipe server` refusing stores it cannot use, teammates
sharing results and experiments through a git remote, a DVC remote on S3 and the team's
tracking server (PostgreSQL, artifacts in S3), and outages of that server."""

import contextlib
import csv
import hashlib
import json
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from servers import S3_CREDENTIALS, TeamServer, team_server
from sklearn.datasets import load_digits

from conftest import cli_env, copy_repo, experiments_shown, free_port, run, set_params

pytestmark = pytest.mark.e2e


def test_cnnpipe_server_names_a_store_it_cannot_use_before_it_starts(postgres, s3, tmp_path):
    def refused(*args, **env):
        start = time.monotonic()
        command = ["cnnpipe", "server", "--port", str(free_port()), *args]
        result = run(command, tmp_path, False, **env)
        assert result.returncode == 1 and time.monotonic() - start < 60, result
        return result.stderr

    assert "no backend store: give --backend-store-uri" in refused()
    said = refused("--backend-store-uri", "s3://team/runs", "--artifacts-destination", "runs")
    assert "'s3://team/runs': not a database URI" in said
    closed = f"postgresql://mlflow:secret@127.0.0.1:{free_port()}/mlflow"
    said = refused("--backend-store-uri", closed, "--artifacts-destination", "s3://team/x")
    assert said.startswith("error: cannot reach the backend store postgresql://mlflow:***@")
    assert "secret" not in said
    said = refused(
        *("--backend-store-uri", postgres.url, "--artifacts-destination", "s3://nope/mlflow"),
        MLFLOW_S3_ENDPOINT_URL=s3,
        **S3_CREDENTIALS,
    )
    assert f"S3 bucket 'nope' at {s3}: no such bucket" in said


def test_a_teammate_pulls_results_and_an_experiment_and_predicts_without_training(
    trained_copy, postgres, s3, tmp_path
):
    """Results through an S3 remote, an experiment through git (`dvc exp push` / `pull`),
    its MLflow run on the team's server."""
    mine, credentials = trained_copy, {"MLFLOW_S3_ENDPOINT_URL": s3, **S3_CREDENTIALS}
    run(["dvc", "remote", "add", "-d", "team", "s3://team/dvc"], mine)
    run(["dvc", "remote", "modify", "team", "endpointurl", s3], mine)
    run(["dvc", "push"], mine, **credentials)
    run(["git", "add", "-A"], mine)
    run(["git", "commit", "-qm", "results and the team's DVC remote"], mine)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], mine)
    run(["git", "push", "-q", "origin", "main"], mine)

    theirs = tmp_path / "theirs"
    run(["git", "clone", "-q", str(origin), str(theirs)], tmp_path)
    assert not (theirs / "models/model.onnx").exists()
    run(["dvc", "pull"], theirs, **credentials)
    for name in ("models/model.onnx", "models/best.pth", "data/prepared/images.npy"):
        assert digest(theirs / name) == digest(mine / name), name
    assert "Data and pipelines are up to date" in run(["dvc", "status"], theirs).stdout
    assert "Running stage" not in run(["dvc", "repro"], theirs).stdout
    digits = load_digits()  # the first image is a 0
    Image.fromarray((digits.images[0] * 15).astype(np.uint8)).save(tmp_path / "digit.png")
    predicted = run(["cnnpipe", "predict", str(tmp_path / "digit.png")], theirs)
    assert re.match(r"0\t(0\.9|1\.0)", predicted.stdout), predicted.stdout

    with team_server(postgres.url, "s3://team/mlflow", s3, tmp_path / "server.log") as server:
        command = ["dvc", "exp", "run", "train", "-S", "lr=0.01", "-S", "epochs=2", "-n", "slow-lr"]
        run(command, mine, MLFLOW_TRACKING_URI=server)
        run(["dvc", "exp", "push", "origin", "slow-lr"], mine, **credentials)

        run(["dvc", "exp", "pull", "origin", "slow-lr"], theirs, **credentials)
        shown = experiments_shown(theirs)["slow-lr"]
        assert shown["params"]["params.yaml"]["data"]["lr"] == 0.01
        assert "best_val_acc" in shown["metrics"]["metrics/train.json"]["data"]
        run(["dvc", "exp", "apply", "slow-lr"], theirs)
        run_id = json.loads((theirs / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
        tracked = MlflowClient(server).get_run(run_id)
        assert tracked.data.params["lr"] == "0.01" and tracked.info.run_name == "slow-lr"
        assert digest(theirs / "models/best.pth") == digest(mine / "models/best.pth")


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.waits
def test_outages_of_the_server_or_its_database_lose_nothing(trained_copy, postgres, s3, tmp_path):
    """The tracking server killed mid-epoch and back within seconds, then PostgreSQL
    restarted under it: training waits, its run's history is whole and its outputs are
    those of a run without an outage. A server that stays away fails the stage naming it;
    the next `dvc repro` resumes into the same run."""
    repo = trained_copy  # prepared and split: `dvc repro train` trains at once
    set_params(repo, epochs=4, batch_size=8)  # epochs of a few seconds, to land in
    run(["git", "commit", "-qam", "slower epochs"], repo)
    clean = copy_repo(repo, tmp_path / "clean")
    run(["dvc", "repro", "train"], clean)  # the same training, tracked locally, no outage
    server = TeamServer(postgres.url, "s3://team/mlflow", s3, tmp_path / "server.log")
    uri = server.start()

    def train(outage, **env) -> subprocess.CompletedProcess:
        """`dvc repro -f train` against the server, `outage()` once its new run has
        logged epoch 1."""
        run_file = repo / "metrics/mlflow_run.json"
        before = json.loads(run_file.read_text())["mlflow_run_id"]
        trainer = subprocess.Popen(
            ["dvc", "repro", "-f", "train"],
            cwd=repo,
            env=cli_env(MLFLOW_TRACKING_URI=uri, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        client, deadline = MlflowClient(uri), time.monotonic() + 300
        while trainer.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the file half written, the run not yet
                run_id = json.loads(run_file.read_text())["mlflow_run_id"]
                if run_id != before and client.get_metric_history(run_id, "val_acc"):
                    break
            time.sleep(0.2)
        if trainer.poll() is None:
            began = time.monotonic()
            outage()
            back = time.monotonic() - began
        out, err = trainer.communicate(timeout=600)
        # The timeline, for `pytest -s`: the outage's length and the stage's end after it.
        print(
            f"{outage.__name__}: back after {back:.1f} s (-1: never), stage ended after "
            f"{time.monotonic() - began:.1f} s with exit code {trainer.returncode}"
        )
        return subprocess.CompletedProcess(trainer.args, trainer.returncode, out, err)

    def history_is_whole():
        run_id = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
        logged = MlflowClient(uri).get_metric_history(run_id, "val_acc")
        with open(repo / "metrics/history.csv") as rows:
            expected = [float(row["val_acc"]) for row in csv.DictReader(rows)]
        assert {m.step: m.value for m in logged} == dict(enumerate(expected, start=1))
        for name in ("metrics/train.json", "metrics/history.csv", "models/best.pth"):
            assert digest(repo / name) == digest(clean / name), name
        return run_id

    try:

        def server_down_for_a_while():
            server.stop(signal.SIGKILL)
            time.sleep(5)
            server.start()

        result = train(server_down_for_a_while)
        assert result.returncode == 0, result.stderr[-3000:]
        history_is_whole()

        def database_down_for_a_while():
            postgres.stop()
            time.sleep(5)
            postgres.start()

        result = train(database_down_for_a_while)
        assert result.returncode == 0, result.stderr[-3000:]
        history_is_whole()

        # Gone for longer than the client's retries (here one, to be quick): the stage
        # stops naming the server, its last epoch saved; the next run resumes into its run.
        def server_gone():
            server.stop(signal.SIGKILL)

        result = train(server_gone, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1")
        assert result.returncode != 0
        assert f"error: lost the MLflow server at {uri}" in result.stderr, result.stderr[-3000:]
        started = json.loads((repo / "metrics/mlflow_run.json").read_text())["mlflow_run_id"]
        server.start()
        resumed = run(["dvc", "repro", "train"], repo, MLFLOW_TRACKING_URI=uri)
        assert "resuming after epoch" in resumed.stdout
        assert history_is_whole() == started
    finally:
        server.stop()
