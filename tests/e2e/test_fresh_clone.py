"""A fresh clone of the committed tree, as a new user gets it: the committed dvc.lock
describes the committed code and params, and the committed results are there to read and
to compare an experiment with, before anything has run."""

import csv
import io
import json

import pytest
import yaml

from conftest import REPO, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    path = tmp_path_factory.mktemp("fresh") / "repo"
    run(["git", "clone", "-q", str(REPO), str(path)], REPO)
    return path


def stage_outputs(repo) -> set[str]:
    """Every path a stage of dvc.yaml writes."""
    paths = set()
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.add(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def stale_entries(status: dict, outputs: set[str]) -> list[str]:
    """What `dvc status` reports beyond outputs missing from an empty cache (and other
    stages' outputs missing as deps): each a sign that dvc.lock is not HEAD's."""
    stale = []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                stale.append(f"{stage}: {change}")
                continue
            for kind, entries in change.items():
                for path, state in entries.items():
                    missing_output = state in ("deleted", "not in cache") and (
                        kind == "changed outs" or path in outputs
                    )
                    if not missing_output:
                        stale.append(f"{stage}: {kind} {path} {state}")
    return stale


def test_committed_dvc_lock_matches_the_committed_code_and_params(clone):
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    locked = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(stages), f"dvc.lock lacks stages {set(stages) - set(locked)}"
    status = json.loads(run(["dvc", "status", "--json"], clone).stdout)
    stale = stale_entries(status, stage_outputs(clone))
    assert not stale, (
        "the committed dvc.lock does not describe the committed tree (run `dvc repro` and "
        "commit dvc.lock with metrics/): " + "; ".join(stale)
    )


def test_committed_results_show_and_compare_with_an_experiment(clone):
    committed = json.loads((clone / "metrics/evaluate.json").read_text())
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], clone).stdout)
    workspace = shown[""]["data"]["metrics/evaluate.json"]["data"]  # "": the workspace
    assert workspace["test_acc"] == committed["test_acc"]

    rows = list(csv.DictReader(io.StringIO(run(["dvc", "exp", "show", "--csv"], clone).stdout)))
    baseline = next(r for r in rows if r["typ"] == "baseline" and r["rev"] != "workspace")
    assert float(baseline["test_acc"]) == committed["test_acc"]

    run(["dvc", "exp", "run", "evaluate", "-S", "lr=0.01", "-S", "epochs=3"], clone)
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], clone).stdout)
    change = diff["metrics/evaluate.json"]["test_acc"]
    assert change["old"] == committed["test_acc"] and change["new"] != change["old"]

    plots = clone.parent / "plots"
    run(["dvc", "plots", "diff", "HEAD", "-o", str(plots)], clone)
    html = (plots / "index.html").read_text()
    assert "HEAD" in html and "workspace" in html
    # Images of both revisions: the committed one and the experiment's.
    drawn = sorted(p.name for p in (plots / "static").glob("*_metrics_confusion.png"))
    assert drawn == ["HEAD_metrics_confusion.png", "workspace_metrics_confusion.png"]
