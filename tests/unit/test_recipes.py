"""`cnnpipe recipe`: recipes/NAME.yaml and the user's -S, checked together before DVC runs."""

import shlex

import pytest

from cnnpipe.cli import main as cnnpipe
from cnnpipe.studies.recipes import load_recipe, parse_overrides, recipe_command

from conftest import REPO


def test_the_photo_recipe_becomes_one_dvc_exp_run(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    dry_run = ["recipe", "photos", "evaluate", "--dry-run"]
    cnnpipe([*dry_run, "-S", "data.root=my photos", "-S", "epochs=3"])  # exit code 0
    command = shlex.split(capsys.readouterr().out.removeprefix("$ "))
    assert command[:4] == ["dvc", "exp", "run", "evaluate"]
    settings = dict(command[i + 1].split("=", 1) for i, a in enumerate(command) if a == "-S")
    assert settings["data.root"] == "my photos" and settings["epochs"] == "3"  # the user's win
    assert settings["augment.random_resized_crop"] == "true"
    assert settings["net.pretrained"] == "IMAGENET1K_V1"
    assert set(settings) == set(load_recipe("photos", REPO)) | {"data.root"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["recipe", "photos", "--dry-run"], "data.root must name the folder"),
        (["recipe", "photos", "--dry-run", "-S", "data.root=x", "-S", "lr=-1"], "lr must be > 0"),
        (["recipe", "photos", "--dry-run", "-S", "data.root=x", "-S", "lr"], "expected KEY=VALUE"),
        (["recipe", "nope"], "recipes/nope.yaml: no such recipe; known: photos"),
    ],
)
def test_bad_recipes_and_settings_are_refused_before_dvc_runs(args, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exited:
        cnnpipe(args)
    assert exited.value.code == 1
    out = capsys.readouterr()
    assert message in out.err and "$ dvc" not in out.out


def test_values_are_passed_as_yaml_reads_them_back():
    assert parse_overrides(["a.b=null", "c=0.001", "d=true", "e=text"]) == {
        "a.b": None,
        "c": 0.001,
        "d": True,
        "e": "text",
    }
    assert recipe_command({"x": None, "y": 1e-4}, []) == [
        "dvc",
        "exp",
        "run",
        "-S",
        "x=null",
        "-S",
        "y=0.0001",
    ]
