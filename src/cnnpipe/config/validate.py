"""A raw params.yaml dict -> the schema's dataclasses, checking each key and value on the
way: an unknown key (with the nearest known one), a wrong type, a value out of its
interval or not among its choices each stop with one line naming the key."""

import contextlib
import dataclasses
import difflib
import math
import typing
from typing import Literal

from cnnpipe.errors import CnnpipeError


class ConfigError(CnnpipeError):
    pass


def build(cls, raw, prefix: str, source: str):
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
            values[name] = build(kind, raw[name], prefix=f"{key}.", source=source)
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


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
