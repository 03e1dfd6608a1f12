"""`cnnpipe tune`: an Optuna search whose trials are DVC experiments and MLflow runs,
killed mid-search and taken up again by the same command."""

import csv
import os
import re
import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient
from workspace import as_in_a_terminal

from conftest import cli_env, experiments_shown, run, set_params

pytestmark = pytest.mark.e2e

SEARCH = """\
question: Which learning rate, in two epochs?
search:
  lr: {low: 0.01, high: 0.2, log: true}
set:
  epochs: 2
sampler: random
pruner: none
trials: 2
"""


def trials_of(storage: str) -> list:
    import optuna

    return optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)


@pytest.mark.waits
def test_a_killed_search_goes_on_without_losing_or_repeating_a_trial(trained_copy, tmp_path):
    from optuna.trial import TrialState

    repo = trained_copy  # prepared and split: each trial trains at once
    (repo / "studies/tiny.yaml").write_text(SEARCH)
    # Any SQLAlchemy URL: here a second SQLite file outside the project.
    storage = f"sqlite:///{tmp_path / 'team-search.db'}"
    set_params(repo, tune__storage=storage)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "a tiny search"], repo)
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed below
    first = subprocess.Popen(
        ["cnnpipe", "tune", "tiny", "--jobs", "1"],
        cwd=repo,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=as_in_a_terminal,
    )
    # Kill it once a trial has ended and DVC runs the next one (at whichever of its
    # stages: a trial cut off before its MLflow run exists counts as interrupted too).
    deadline, victim = time.monotonic() + 400, None
    while victim is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(1)
        try:
            trials = trials_of(storage)
        except KeyError:  # the search is not created yet
            continue
        ended = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if ended and running:
            name = running[0].user_attrs["dvc_experiment"]
            status = run(["dvc", "queue", "status"], repo).stdout
            if re.search(rf"{name}\s+\S+ \S+\s+Running", status):
                victim = running[0]
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    assert victim is not None, (tmp_path / "first.log").read_text()[-3000:]
    # Its worker is a daemon of DVC's and goes on: stop the trial it runs, as a dead
    # machine would.
    name = victim.user_attrs["dvc_experiment"]
    run(["dvc", "queue", "kill", name], repo, check=False)  # it may have just ended
    for _ in range(60):
        if not re.search(r"\bRunning\b", run(["dvc", "queue", "status"], repo).stdout):
            break
        time.sleep(2)

    again = run(["cnnpipe", "tune", "tiny", "--jobs", "1"], repo)
    assert f"trial {victim.number} ({name}): interrupted" in again.stdout, again.stdout

    trials = trials_of(storage)
    numbers = [t.number for t in trials]
    assert numbers == sorted(set(numbers))
    states = {t.number: t.state for t in trials}
    assert states[victim.number] == TrialState.FAIL
    finished = [n for n, s in states.items() if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2 and max(finished) > victim.number  # its place was refilled
    assert not any(s == TrialState.RUNNING for s in states.values())
    assert not (repo / "optuna.db").exists()  # everything went to the configured storage

    # DVC: each finished trial is an experiment of its own name, listed once.
    experiments = experiments_shown(repo)
    for trial in trials:
        if trial.number in finished:
            listed = experiments[trial.user_attrs["dvc_experiment"]]
            lr = listed["params"]["params.yaml"]["data"]["lr"]
            assert lr == pytest.approx(trial.params["lr"])

    # MLflow: one run per trial, a child of the search's parent run, tagged with its state.
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnpipe").experiment_id
    (parent,) = client.search_runs([experiment], "tags.study_parent = 'tiny'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = [c.info.run_name for c in children]
    assert len(names) == len(set(names)), names
    by_name = {c.info.run_name: c for c in children}
    for trial in trials:
        tracked = by_name.get(trial.user_attrs["dvc_experiment"])
        if trial.number == victim.number and tracked is None:
            continue  # cut off before its run began
        expected = "interrupted" if trial.number == victim.number else "complete"
        assert tracked.data.tags["trial_state"] == expected
        assert tracked.data.tags["trial_number"] == str(trial.number)
    assert len(names) >= len(finished)

    report = repo / "reports/tiny"
    rows = list(csv.DictReader((report / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows] == numbers
    summary = (report / "search.md").read_text()
    best = max((t for t in trials if t.number in finished), key=lambda t: t.value)
    assert f"Best: trial {best.number}" in summary and "dvc exp run -S epochs=2 -S lr=" in summary
    assert (report / "history.png").is_file()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/search.md" in artifacts


def test_a_bad_search_is_refused_before_anything_runs(trained_copy):
    repo = trained_copy
    (repo / "studies/typo.yaml").write_text("search:\n  learning_rate: {low: 0.01, high: 0.1}\n")
    failed = run(["cnnpipe", "tune", "typo"], repo, check=False)
    assert failed.returncode == 1 and "learning_rate" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert "No experiment tasks" in run(["dvc", "queue", "status"], repo).stdout
