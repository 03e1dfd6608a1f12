"""A study file: its question, its grid of params and the params it fixes, each
checked by params.yaml's own validation before anything is queued."""

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml

from cnnpipe.config import parse_params
from cnnpipe.errors import CnnpipeError

STUDIES = "studies"


@dataclass
class Study:
    name: str
    question: str
    grid: dict[str, list]
    fixed: dict[str, object]

    def settings(self) -> list[dict[str, object]]:
        """Every combination of the grid, each with the fixed params."""
        keys = list(self.grid)
        return [
            {**dict(zip(keys, values, strict=True)), **self.fixed}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]

    def label(self, setting: dict) -> str:
        return ", ".join(f"{k}={setting[k]}" for k in self.grid)


def read_study_file(name: str, root: Path) -> tuple[Path, dict]:
    """studies/NAME.yaml's path and contents; a missing one is named with those there."""
    path = root / STUDIES / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / STUDIES).glob("*.yaml"))
        raise CnnpipeError(f"{path}: no such study; known: {', '.join(known) or 'none'}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CnnpipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise CnnpipeError(f"{path}: expected a mapping of keys (question, grid, set, ...)")
    return path, raw


def load_study(name: str, root: Path, base: dict) -> Study:
    """Read studies/NAME.yaml; every key must be a param and every value valid for it on
    top of `base` (params.yaml's dict)."""
    path, raw = read_study_file(name, root)
    if "search" in raw:
        raise CnnpipeError(f"{path}: a search of ranges: run it with `cnnpipe tune {name}`")
    # sampler, pruner, trials and seed are for `cnnpipe tune` on the same grid.
    unknown = set(raw) - {"question", "grid", "set", "sampler", "pruner", "trials", "seed"}
    if unknown or not isinstance(raw.get("grid"), dict) or not raw["grid"]:
        raise CnnpipeError(
            f"{path}: needs a `grid` of params to lists of values (and may have `question` "
            f"and `set`){'; unknown: ' + ', '.join(sorted(unknown)) if unknown else ''}"
        )
    grid = {k: v if isinstance(v, list) else [v] for k, v in raw["grid"].items()}
    study = Study(name, str(raw.get("question", "")), grid, dict(raw.get("set") or {}))
    for setting in study.settings():
        parse_params(apply_setting(base, setting), source=str(path))  # names a bad key or value
    return study


def apply_setting(raw: dict, setting: dict) -> dict:
    """params.yaml's dict with dotted keys ("train.loss") set, as `dvc exp run -S` does."""
    out = copy.deepcopy(raw)
    for key, value in setting.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def yaml_value(value) -> str:
    """A value as `-S key=value` reads it back (YAML), e.g. true, null, 0.001."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
