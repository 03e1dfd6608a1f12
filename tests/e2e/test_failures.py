"""A failed experiment keeps the last good results: bad params are refused by the check
stage, upstream of every other, before DVC deletes any stage's outputs."""

import hashlib

import pytest

from conftest import run, set_params

pytestmark = pytest.mark.e2e


def outputs(repo) -> dict[str, str]:
    return {
        str(path.relative_to(repo)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("data", "models", "metrics")
        for path in sorted((repo / folder).rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    "settings, message",
    [
        (["lr=-1"], "error: params.yaml: lr must be > 0, got -1"),
        (["model=resnet19"], "error: params.yaml: model is 'resnet19', which is not registered"),
        (
            ["data.source=imagefolder", "data.root=does/not/exist"],
            "does/not/exist: no such folder",
        ),
    ],
)
def test_a_failed_experiment_leaves_every_output_in_place(trained_copy, settings, message):
    repo = trained_copy
    before = outputs(repo)
    failed = run(["dvc", "exp", "run", *(a for s in settings for a in ("-S", s))], repo, False)
    assert failed.returncode != 0
    assert message in failed.stdout + failed.stderr
    assert "Running stage 'prepare'" not in failed.stdout
    assert outputs(repo) == before
    # The failed experiment's params are either gone from params.yaml or visible to git
    # (compared by content: git's own status trusts the file's recorded size and time).
    committed = run(["git", "show", "HEAD:params.yaml"], repo).stdout
    if (repo / "params.yaml").read_text() != committed:
        assert "params.yaml" in run(["git", "status", "--porcelain"], repo).stdout


def test_a_run_that_learns_nothing_says_so(trained_copy):
    # So small a learning rate that one epoch leaves the network guessing.
    set_params(trained_copy, lr=1e-7, epochs=1)
    result = run(["dvc", "repro", "train"], trained_copy)
    assert "is about chance for 10 classes: the network has not learned" in result.stderr
