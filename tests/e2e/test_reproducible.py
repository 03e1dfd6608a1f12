"""The same commit gives the same bytes: a second clone, in another folder and importing
its own copy of the code, reproduces every output of the shared trained pipeline."""

import hashlib

import pytest
import yaml

from conftest import make_clone, run

pytestmark = pytest.mark.e2e

# The one output that names this run rather than describing the result.
RUN_ID = "metrics/mlflow_run.json"


def recorded_hashes(repo) -> dict[str, str]:
    """Every output's and dependency's hash as dvc.lock records them, stage by stage."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        f"{stage}: {entry['path']}": entry.get("md5") or entry.get("hash")
        for stage, recorded in lock["stages"].items()
        for entry in recorded.get("deps", []) + recorded.get("outs", [])
        if entry["path"] != RUN_ID
    }


def file_hashes(repo, folders) -> dict[str, str]:
    return {
        str(path.relative_to(repo)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted((repo / folder).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def test_a_second_clone_reproduces_every_output_byte_for_byte(trained, tmp_path):
    other = make_clone(tmp_path / "another" / "place")
    # Its stages import the clone's own source, so no absolute path of either checkout
    # can hide in a file (stack traces in ONNX, source ranges in TorchScript).
    run(["dvc", "repro"], other, PYTHONPATH=str(other / "src"))

    mine, theirs = recorded_hashes(trained), recorded_hashes(other)
    assert mine.keys() == theirs.keys()
    differing = sorted(key for key in mine if mine[key] != theirs[key])
    assert not differing, differing

    outputs = ["metrics", "models", "data"]
    mine, theirs = file_hashes(trained, outputs), file_hashes(other, outputs)
    mine.pop(RUN_ID), theirs.pop(RUN_ID)
    assert mine.keys() == theirs.keys()
    assert sorted(name for name in mine if mine[name] != theirs[name]) == []
