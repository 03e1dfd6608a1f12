"""params.yaml -> a typed, validated, read-only config.

Every stage loads its settings through `load_params`. A bad value stops the stage with
one line that names the key and what is allowed, before anything is written.
"""

import contextlib
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from cnnpipe.errors import CnnpipeError


class ConfigError(CnnpipeError):
    pass


def _bound(lo=None, hi=None, lo_open=False, hi_open=False):
    """Field metadata describing the allowed interval of a number."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}


def _positive():
    return _bound(lo=0, lo_open=True)


SOURCES = ("digits", "imagefolder", "mnist", "fashion_mnist", "cifar10", "cifar100")


@dataclass(frozen=True)
class DataConfig:
    source: Literal[SOURCES] = "digits"
    root: str | None = None
    download: bool = True
    image_size: int = field(default=32, metadata=_bound(lo=8, hi=1024))
    channels: Literal[1, 3] = 1
    on_bad_file: Literal["skip", "fail"] = "skip"


@dataclass(frozen=True)
class SplitConfig:
    val: float = field(default=0.15, metadata=_bound(lo=0, hi=1, lo_open=True, hi_open=True))
    test: float = field(default=0.15, metadata=_bound(lo=0, hi=1, lo_open=True, hi_open=True))
    fraction: float = field(default=1.0, metadata=_bound(lo=0, hi=1, lo_open=True))
    folds: int = field(default=1, metadata=_bound(lo=1, hi=100))


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int = field(default=2, metadata=_bound(lo=0, hi=64))
    hflip: bool = False


@dataclass(frozen=True)
class NetConfig:
    variant: Literal["auto", "small", "imagenet"] = "auto"
    init: Literal["default", "kaiming", "xavier"] = "default"
    dropout: float | None = field(default=None, metadata=_bound(lo=0, hi=1, hi_open=True))
    lrn: bool = False
    pretrained: str | None = None
    freeze: Literal["none", "backbone"] = "none"
    head_lr: float | None = field(default=None, metadata=_positive())


@dataclass(frozen=True)
class TrainConfig:
    momentum: float = field(default=0.9, metadata=_bound(lo=0, hi=1, hi_open=True))
    nesterov: bool = False
    beta1: float = field(default=0.9, metadata=_bound(lo=0, hi=1, hi_open=True))
    beta2: float = field(default=0.999, metadata=_bound(lo=0, hi=1, hi_open=True))
    eps: float = field(default=1e-8, metadata=_positive())
    weight_decay: float = field(default=5e-4, metadata=_bound(lo=0))
    schedule: Literal["constant", "step", "cosine", "onecycle"] = "cosine"
    warmup_epochs: int = field(default=0, metadata=_bound(lo=0))
    step_size: int = field(default=10, metadata=_bound(lo=1))
    gamma: float = field(default=0.1, metadata=_bound(lo=0, hi=1, lo_open=True))
    loss: Literal["cross_entropy", "nll", "l1", "mse", "smooth_l1"] = "cross_entropy"
    label_smoothing: float = field(default=0.1, metadata=_bound(lo=0, hi=1, hi_open=True))
    smooth_l1_beta: float = field(default=1.0, metadata=_positive())
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    compile: bool = False
    data_placement: Literal["auto", "device", "host"] = "auto"
    workers: int = field(default=2, metadata=_bound(lo=0))
    patience: int = field(default=0, metadata=_bound(lo=0))
    nproc: int = field(default=1, metadata=_bound(lo=1))
    resume: bool = True
    device: str = "auto"
    deterministic: bool = True


@dataclass(frozen=True)
class ExportConfig:
    opset: int = field(default=20, metadata=_bound(lo=18, hi=23))
    atol: float = field(default=1e-4, metadata=_bound(lo=0))
    rtol: float = field(default=1e-4, metadata=_bound(lo=0))
    min_top1_agreement: float = field(default=1.0, metadata=_bound(lo=0, hi=1))
    full_pickle: bool = False


@dataclass(frozen=True)
class InspectConfig:
    images: int = field(default=10, metadata=_bound(lo=1, hi=32))
    layer: str = "auto"


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    required: bool = True
    experiment: str = "cnnpipe"
    register: bool = False
    model_name: str = "cnnpipe"
    system_metrics: bool = True
    study: str | None = None


@dataclass(frozen=True)
class Params:
    model: str = "lenet"
    lr: float = field(default=0.05, metadata=_positive())
    batch_size: int = field(default=64, metadata=_bound(lo=1))
    epochs: int = field(default=30, metadata=_bound(lo=1))
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    seed: int = field(default=42, metadata=_bound(lo=0))
    net: NetConfig = NetConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    inspect: InspectConfig = InspectConfig()
    tracking: TrackingConfig = TrackingConfig()


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raise ConfigError naming the first bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(exc)})") from None
    return parse_params(raw or {}, source=str(path))


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    params = _build(Params, raw, prefix="", source=source)
    _check_consistency(params, source)
    return params


def _build(cls, raw, prefix: str, source: str):
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), fields, n=1)
            maybe = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}'{maybe}; "
                f"allowed at {where}: {', '.join(fields)}"
            )
    values = {}
    hints = typing.get_type_hints(cls)
    for name, f in fields.items():
        if name not in raw:
            continue
        key = f"{prefix}{name}"
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = _build(kind, raw[name], prefix=f"{key}.", source=source)
        else:
            values[name] = _check_value(key, kind, raw[name], f.metadata, source)
    return cls(**values)


def _check_value(key: str, kind, value, bounds, source: str):
    args = typing.get_args(kind)
    if type(None) in args:  # `X | None`: null means "the default of whatever uses it"
        if value is None:
            return None
        (kind,) = (a for a in args if a is not type(None))
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if value not in allowed or isinstance(value, bool):
            choices = ", ".join(str(a) for a in allowed)
            raise ConfigError(f"{source}: {key} is {_show(value)}; allowed: {choices}")
        return value
    if kind is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept it as the number it means.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{source}: {key} must be a number, got {_show(value)}")
        value = float(value)
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {_show(value)}")
    elif kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{source}: {key} must be a non-empty string, got {_show(value)}")
    elif kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {_show(value)}")
    else:
        raise TypeError(f"no validation rule for {key} of type {kind}")
    if bounds:
        _check_bounds(key, value, bounds, source)
    return value


def _check_bounds(key, value, b, source):
    lo, hi = b["lo"], b["hi"]
    too_low = lo is not None and (value <= lo if b["lo_open"] else value < lo)
    too_high = hi is not None and (value >= hi if b["hi_open"] else value > hi)
    if too_low or too_high:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if b['lo_open'] else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if b['hi_open'] else '<='} {hi}")
        raise ConfigError(f"{source}: {key} must be {' and '.join(parts)}, got {value}")


def _check_consistency(params: Params, source: str) -> None:
    from cnnpipe import models

    names = models.registered_names()
    if params.model not in names:
        raise ConfigError(
            f"{source}: model is '{params.model}', which is not registered; "
            f"allowed: {', '.join(names)}"
        )
    for key, value in (("dropout", params.net.dropout), ("lrn", params.net.lrn)):
        try:
            models.check_options(params.model, **{key: value})
        except CnnpipeError as exc:
            raise ConfigError(f"{source}: net.{key} is {value}, but {exc}") from None
    if params.split.val + params.split.test >= 1:
        raise ConfigError(
            f"{source}: split.val + split.test must be < 1 to leave images for training, "
            f"got {params.split.val} + {params.split.test}"
        )
    if params.train.nesterov and (params.optimizer != "sgd" or params.train.momentum == 0):
        raise ConfigError(
            f"{source}: train.nesterov needs optimizer sgd with train.momentum > 0, "
            f"got optimizer {params.optimizer} with momentum {params.train.momentum}"
        )
    if params.data.source == "imagefolder" and not params.data.root:
        raise ConfigError(
            f"{source}: data.source is imagefolder, so data.root must name the folder "
            "whose subfolders are the classes"
        )
    if params.net.freeze == "backbone" and not params.net.pretrained:
        raise ConfigError(
            f"{source}: net.freeze is backbone, but net.pretrained is null: a frozen "
            "random backbone learns nothing; name the weights to start from"
        )
    device = params.train.device
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"{source}: train.device is '{device}'; allowed: auto, cpu, cuda, cuda:N")


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


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
