"""`cnnpipe tune`'s search files: ranges, choices, sampler and pruner, each checked before
anything runs; and the Optuna distributions they become."""

import pytest
import yaml

from cnnpipe.errors import CnnpipeError
from cnnpipe.studies.search import Choice, Range, load_search
from cnnpipe.studies.spec import load_study

from conftest import REPO

BASE = yaml.safe_load((REPO / "params.yaml").read_text())


def search_of(tmp_path, text: str):
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies/s.yaml").write_text(text)
    return load_search("s", tmp_path, BASE)


@pytest.mark.parametrize("name", ["tune_lenet", "tune_adam", "learning_rate", "optimizer"])
def test_the_shipped_searches_and_grids_load(name):
    search = load_search(name, REPO, BASE)
    assert search.space and search.trials >= 1
    assert set(search.distributions()) == set(search.space)


def test_the_params_own_type_decides_int_or_float(tmp_path):
    search = search_of(
        tmp_path,
        "search:\n  batch_size: {low: 16, high: 128, step: 16}\n"
        "  train.momentum: {low: 0, high: 0.9}\n  lr: {low: 0.001, high: 0.1, log: true}\n"
        "  optimizer: [sgd, adam]\n",
    )
    assert search.space["batch_size"] == Range(16, 128, False, 16, integer=True)
    assert not search.space["train.momentum"].integer  # 0 is an int, momentum a float
    assert search.space["optimizer"] == Choice(("sgd", "adam"))
    dists = search.distributions()
    assert type(dists["batch_size"]).__name__ == "IntDistribution"
    assert dists["lr"].log and type(dists["lr"]).__name__ == "FloatDistribution"
    assert search.sampler == "tpe" and search.pruner.kind == "median"


def test_a_grid_runs_through_the_grid_sampler(tmp_path):
    search = search_of(tmp_path, "grid:\n  lr: [0.1, 0.01]\n  batch_size: [32, 64]\n")
    assert search.sampler == "grid" and search.grid_size() == 4


@pytest.mark.parametrize(
    "text, words",
    [
        ("search:\n  learning_rate: {low: 0.1, high: 1}\n", "learning_rate"),
        ("search:\n  lr: {low: -0.1, high: 0.1}\n", "lr"),
        ("search:\n  train.momentum: {low: 0.5, high: 1.5}\n", "momentum"),
        ("search:\n  lr: {low: 0.1, high: 0.01}\n", "must be below high"),
        ("search:\n  lr: {low: 0, high: 0.1, log: true}\n", "log range needs low > 0"),
        ("search:\n  batch_size: {low: 16, high: 100.5}\n", "whole number"),
        ("search:\n  lr: {low: 0.01, high: 0.1, scale: 2}\n", "unknown scale"),
        ("search:\n  lr: []\n", "empty list"),
        ("search:\n  lr: {low: 0.01, high: 0.1}\nsampler: grid\n", "needs lists"),
        ("search:\n  lr: [0.1]\nsampler: bayes\n", "sampler 'bayes' is unknown"),
        ("search:\n  lr: [0.1]\npruner: hyperband\n", "pruner must be one of"),
        ("search:\n  lr: [0.1]\npruner: {kind: median, patience: 2}\n", "unknown patience"),
        ("search:\n  lr: [0.1]\ntrials: 0\n", "trials must be a whole number above 0"),
        ("search:\n  lr: [0.1]\ngrid:\n  lr: [0.1]\n", "either a `search`"),
        ("search:\n  lr: [0.1]\nsearch_space: 1\n", "unknown keys search_space"),
        ("search:\n  optimizer: [sgd, lbfgs]\n", "lbfgs"),
    ],
)
def test_a_bad_search_is_refused_in_one_line_naming_the_problem(tmp_path, text, words):
    with pytest.raises(CnnpipeError) as refused:
        search_of(tmp_path, text)
    message = str(refused.value)
    assert words in message and "\n" not in message and "studies/s.yaml" in message


def test_cnnpipe_study_sends_a_search_to_cnnpipe_tune(tmp_path):
    search_of(tmp_path, "search:\n  lr: {low: 0.01, high: 0.1}\n")
    with pytest.raises(CnnpipeError, match="run it with `cnnpipe tune s`"):
        load_study("s", tmp_path, BASE)
