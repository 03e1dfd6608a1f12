"""params.yaml -> a typed, validated, read-only config.

Every stage loads its settings through `load_params`. A bad value stops the stage with
one line that names the key and what is allowed, before anything is written. The schema
(schema.py) says what may be set, validate.py checks each value, rules.py the keys
that depend on one another.
"""

import dataclasses
from pathlib import Path

import yaml

from cnnpipe.config.rules import check_consistency
from cnnpipe.config.schema import (  # noqa: F401  (the sections, for the code that takes them)
    AugmentConfig,
    DataConfig,
    ExportConfig,
    InspectConfig,
    NetConfig,
    Params,
    SplitConfig,
    TrackingConfig,
    TrainConfig,
)
from cnnpipe.config.validate import ConfigError, build, one_line


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError naming the first bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
    return parse_params(raw or {}, source=str(path))


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    params = build(Params, raw, prefix="", source=source)
    check_consistency(params, source)
    return params


def flatten(params) -> dict[str, object]:
    """Params dataclass -> {"lr": 0.01, "data.image_size": 32, ...}."""
    flat = {}

    def walk(value, prefix):
        if dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{prefix}{f.name}.")
        else:
            flat[prefix.rstrip(".")] = value

    walk(params, "")
    return flat
