"""Recipes: a named set of params (recipes/NAME.yaml, dotted keys to values, as `-S`
takes them) that one `dvc exp run` applies, so a whole training recipe is one command.
The recipe's settings and the user's own `-S` (which win) are checked together by
params.yaml's validation before DVC starts."""

import shlex
import subprocess
from pathlib import Path

import yaml

from cnnpipe.config import parse_params
from cnnpipe.errors import CnnpipeError
from cnnpipe.studies.spec import apply_setting, yaml_value

RECIPES = "recipes"


def load_recipe(name: str, root: Path) -> dict[str, object]:
    """recipes/NAME.yaml's settings; a missing file is named with the recipes there."""
    path = Path(RECIPES, f"{name}.yaml")
    if not (root / path).is_file():
        known = sorted(p.stem for p in (root / RECIPES).glob("*.yaml"))
        raise CnnpipeError(f"{path}: no such recipe; known: {', '.join(known) or 'none'}")
    try:
        raw = yaml.safe_load((root / path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CnnpipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict) or not raw:
        raise CnnpipeError(f"{path}: expected a mapping of params (train.lr: 0.01, ...)")
    return raw


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`-S key=value` strings -> {key: value}, each value read as YAML as DVC reads it."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CnnpipeError(f"-S {pair}: expected KEY=VALUE, e.g. -S data.root=images")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def recipe_command(settings: dict, targets: list[str]) -> list[str]:
    command = ["dvc", "exp", "run", *targets]
    for key, value in settings.items():
        command += ["-S", f"{key}={yaml_value(value)}"]
    return command


def run_recipe(name: str, targets: list[str], overrides: list[str], dry_run=False) -> int:
    """Check recipes/NAME.yaml with the `overrides` on top of params.yaml, then run them as
    one `dvc exp run` (printed first); returns its exit code."""
    from cnnpipe.files import project_root

    root = project_root()
    settings = {**load_recipe(name, root), **parse_overrides(overrides)}
    base = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    source = f"{RECIPES}/{name}.yaml with {' '.join(overrides) or 'no -S'}"
    parse_params(apply_setting(base, settings), source=source)  # names a bad key or value
    command = recipe_command(settings, targets)
    print(f"$ {shlex.join(command)}", flush=True)
    if dry_run:
        return 0
    return subprocess.call(command, cwd=root)
