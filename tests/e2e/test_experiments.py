"""DVC experiments and MLflow together: a queued sweep on parallel workers, a failed
experiment, the model registry, and the queue's logs while an experiment trains (a team
sharing results: test_team.py)."""

import re
import subprocess
import time

import pytest
from mlflow import MlflowClient
from servers import TeamServer

from conftest import cli_env, experiments_shown, make_clone, run, set_params

pytestmark = pytest.mark.e2e


def busy(status: str) -> bool:
    """`dvc queue status` lists an experiment still queued or running."""
    return re.search(r"\b(Queued|Running)\b", status) is not None


def wait_for_queue(repo, limit=900):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not busy(status):
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {limit} s:\n{status}")


def wait_for_experiments(repo, successes: int, failed: bool = False, limit=900):
    """Wait until the queue has nothing queued or running, asking it once git shows the
    experiments ended (DVC commits each successful one to a ref of its own under
    refs/exps, and keeps failed ones in refs/exps/celery/failed), or every 30 s in case
    one ended otherwise. A git call costs milliseconds; `dvc queue status`, half a
    CPU-second."""
    deadline, asked = time.monotonic() + limit, time.monotonic()
    while time.monotonic() < deadline:
        refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout
        ended = [r for r in refs.split() if not r.startswith("refs/exps/celery/")]
        seen = len(ended) >= successes and (not failed or "refs/exps/celery/failed" in refs)
        if seen or time.monotonic() - asked > 30:
            status = run(["dvc", "queue", "status"], repo).stdout
            if not busy(status):
                return status
            asked = time.monotonic()
        time.sleep(1)
    raise AssertionError(f"the queue did not finish in {limit} s")


def start_workers(repo, *args, **env):
    """`dvc queue start`, not through run(): the workers DVC leaves behind inherit the
    command's stdout and stderr, and reading captured pipes to their end would wait until
    the last worker exits, ten seconds after the whole queue has run."""
    subprocess.run(
        ["dvc", "queue", "start", *args],
        cwd=repo,
        env=cli_env(**env),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


RATES = ["0.1", "0.08", "0.06", "0.04", "0.02", "0.01"]


@pytest.mark.crowds
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_queued_sweep_on_three_workers_lands_in_one_store(store, tmp_path, request):
    """Six experiments on three queue workers at once, each writing its run, datasets,
    models and registered version: to the default SQLite file, or to the team's server
    on PostgreSQL. On SQLite a seventh diverges and is recorded as failed."""
    repo = make_clone(tmp_path / "repo")
    set_params(repo, epochs=2, split__fraction=0.3, tracking__register=True)
    run(["git", "commit", "-qam", "short runs"], repo)
    # As the README says: the stages all experiments share run once, so that two workers
    # do not write the same run-cache entry at once.
    run(["dvc", "repro", "split"], repo)
    env, tracking = {}, f"sqlite:///{repo / 'mlflow.db'}"
    if store == "postgresql":
        postgres, s3 = request.getfixturevalue("postgres"), request.getfixturevalue("s3")
        server = TeamServer(postgres.url, "s3://team/mlflow", s3, tmp_path / "server.log")
        request.addfinalizer(server.stop)
        tracking = server.start()
        env["MLFLOW_TRACKING_URI"] = tracking

    # Up to export, which logs and registers the models; the inspect stage is not checked.
    run(["dvc", "exp", "run", "--queue", "export", "-S", f"lr={','.join(RATES)}"], repo)
    if store == "sqlite":
        diverging = ["-S", "lr=1e10", "--name", "diverges"]
        run(["dvc", "exp", "run", "--queue", "export", *diverging], repo)
    start_workers(repo, "-j", "3", OMP_NUM_THREADS="1", **env)  # a thread each
    status = wait_for_experiments(repo, len(RATES), failed=store == "sqlite")
    assert len(re.findall(r"\bSuccess\b", status)) == 6, status

    experiments = experiments_shown(repo)
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("cnnpipe")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert len(runs) == 6 + (store == "sqlite")  # one per experiment: none lost, none doubled

    finished = {name: r for name, r in runs.items() if r.info.status == "FINISHED"}
    assert sorted(r.data.params["lr"] for r in finished.values()) == sorted(RATES)
    baseline = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    for name, tracked in finished.items():
        tags = tracked.data.tags
        assert tags["dvc.exp_name"] == name and tags["dvc.baseline"] == baseline
        assert tags["data.prepared"].startswith("md5:") and tags["data.split"].startswith("md5:")
        assert tags["git.dirty"] in ("true", "false")
        assert len(tracked.inputs.dataset_inputs) == 3  # train, val, test
        models = client.list_artifacts(tracked.info.run_id, "model")
        assert "model/model.onnx" in [a.path for a in models]
        # `dvc exp show` lists the run id beside the experiment's metrics.
        metrics = experiments[name]["metrics"]
        assert metrics["metrics/mlflow_run.json"]["data"]["mlflow_run_id"] == tracked.info.run_id
        test_acc = metrics["metrics/evaluate.json"]["data"]["test_acc"]
        assert tracked.data.metrics["test_acc"] == pytest.approx(test_acc)

    # Each epoch left one plain line in an experiment's log.
    logs = run(["dvc", "queue", "logs", name], repo).stdout
    assert [int(e) for e in re.findall(r"^epoch (\d+)/2: train loss", logs, re.M)] == [1, 2]

    if store == "sqlite":
        assert re.search(r"diverges\s+\S+ \S+\s+Failed", status), status
        failed = runs["diverges"]
        assert failed.info.status == "FAILED"
        assert "training loss became non-finite" in failed.data.tags["error"]

    # Six versions registered; the champion has the best test accuracy of them (on a tie,
    # whichever registered first).
    versions = client.search_model_versions("name = 'cnnpipe'")
    assert len(versions) == 6
    champion = client.get_model_version_by_alias("cnnpipe", "champion")
    best = max(r.data.metrics["test_acc"] for r in finished.values())
    assert client.get_run(champion.run_id).data.metrics["test_acc"] == best


def test_queue_logs_show_each_epoch_while_the_experiment_trains(trained_copy):
    repo = trained_copy  # its data is prepared and split: the queued run trains at once
    set_params(repo, epochs=60, batch_size=4)  # small batches: epochs slow enough to watch
    run(["git", "commit", "-qam", "a longer run"], repo)
    run(["dvc", "exp", "run", "--queue", "train", "--name", "long"], repo)
    start_workers(repo)

    epoch_line = r"^epoch (\d+)/60: train loss [\d.]+ acc [\d.]+, val loss .* images/s$"
    deadline, lines = time.monotonic() + 600, []
    while not lines and time.monotonic() < deadline:
        time.sleep(3)  # each `dvc queue logs` costs half a second of CPU
        logs = run(["dvc", "queue", "logs", "long"], repo, check=False).stdout
        lines = re.findall(epoch_line, logs, re.M)
    # Epochs' lines are in the log while the later epochs are still being trained: each
    # epoch so far once, in order.
    assert lines and int(lines[-1]) < 60, logs[-3000:]
    assert [int(e) for e in lines] == list(range(1, len(lines) + 1)), logs[-3000:]
    # That is what this test is for; the other 50-odd epochs would teach it nothing.
    run(["dvc", "queue", "kill", "long"], repo)
    status = wait_for_queue(repo)
    assert not re.search(r"\bRunning\b", status), status
