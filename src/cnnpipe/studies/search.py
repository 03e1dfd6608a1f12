"""A search file for `cnnpipe tune`: the params to search and their ranges, the sampler
and the pruner, each range checked by params.yaml's own validation before anything runs.

    search:
      lr: {low: 0.001, high: 0.3, log: true}     # a float range (log: sampled in log space)
      batch_size: [32, 64, 128]                  # a choice
      epochs: {low: 4, high: 12, step: 4}        # an int range (the param is an int)
    set: {optimizer: sgd}                        # fixed for every trial
    sampler: tpe                                 # tpe | random | grid
    pruner: {kind: median, warmup_epochs: 2}     # median | halving | none
    trials: 8                                    # default for --trials

A study file with a `grid:` instead runs through the same path: its lists are choices,
and `sampler: grid` tries each combination once.
"""

from dataclasses import dataclass, fields
from pathlib import Path

from cnnpipe.config import flatten, parse_params
from cnnpipe.errors import CnnpipeError
from cnnpipe.pruning import PrunerSpec
from cnnpipe.studies.spec import apply_setting, read_study_file

SAMPLERS = ("tpe", "random", "grid")
KEYS = {"question", "search", "grid", "set", "sampler", "pruner", "trials", "seed"}


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False

    def bounds(self) -> list:
        return [self.low, self.high]


@dataclass(frozen=True)
class Choice:
    values: tuple

    def bounds(self) -> list:
        return list(self.values)


@dataclass
class Search:
    name: str
    question: str
    space: dict[str, Range | Choice]
    fixed: dict[str, object]
    sampler: str
    pruner: PrunerSpec
    trials: int
    seed: int

    def distributions(self) -> dict:
        """The space as Optuna distributions, by param name."""
        import optuna  # only a search needs it

        out = {}
        for key, dim in self.space.items():
            if isinstance(dim, Choice):
                out[key] = optuna.distributions.CategoricalDistribution(list(dim.values))
            elif dim.integer:
                step = int(dim.step or 1)
                out[key] = optuna.distributions.IntDistribution(
                    int(dim.low), int(dim.high), log=dim.log, step=step
                )
            else:
                out[key] = optuna.distributions.FloatDistribution(
                    float(dim.low), float(dim.high), log=dim.log, step=dim.step
                )
        return out

    def grid_size(self) -> int | None:
        if not all(isinstance(d, Choice) for d in self.space.values()):
            return None
        size = 1
        for dim in self.space.values():
            size *= len(dim.values)
        return size


def load_search(name: str, root: Path, base: dict) -> Search:
    """Read studies/NAME.yaml as a search; every key must be a param and every bound (or
    choice) a valid value of it on top of `base` (params.yaml's dict)."""
    path, raw = read_study_file(name, root)
    where = str(path)
    unknown = set(raw) - KEYS
    if unknown:
        raise CnnpipeError(
            f"{where}: unknown keys {', '.join(sorted(unknown))}; allowed: "
            f"{', '.join(sorted(KEYS))}"
        )
    if ("search" in raw) == ("grid" in raw):
        raise CnnpipeError(f"{where}: needs either a `search` (ranges) or a `grid` (lists)")
    section = raw.get("search", raw.get("grid"))
    if not isinstance(section, dict) or not section:
        raise CnnpipeError(f"{where}: `search` must map params to ranges or lists of values")
    fixed = dict(raw.get("set") or {})
    current = flatten(parse_params(apply_setting(base, fixed), source=where))
    space = {key: _dimension(key, spec, current, where) for key, spec in section.items()}
    for key, dim in space.items():
        for value in dim.bounds():  # names a misspelt key or an out-of-range bound
            parse_params(apply_setting(base, {**fixed, key: value}), source=f"{where}: {key}")

    sampler = raw.get("sampler", "grid" if "grid" in raw else "tpe")
    if sampler not in SAMPLERS:
        raise CnnpipeError(
            f"{where}: sampler '{sampler}' is unknown; allowed: {', '.join(SAMPLERS)}"
        )
    search = Search(
        name=name,
        question=str(raw.get("question", "")),
        space=space,
        fixed=fixed,
        sampler=sampler,
        pruner=_pruner(raw.get("pruner", "median"), where),
        trials=raw.get("trials", 10),
        seed=raw.get("seed", 0),
    )
    if sampler == "grid" and search.grid_size() is None:
        raise CnnpipeError(f"{where}: sampler 'grid' needs lists of values, not ranges")
    for key in ("trials", "seed"):
        value = getattr(search, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (key == "trials"):
            raise CnnpipeError(
                f"{where}: {key} must be a whole number"
                f"{' above 0' if key == 'trials' else ''}, not {value!r}"
            )
    return search


def _dimension(key: str, spec, current: dict, where: str) -> Range | Choice:
    if isinstance(spec, list):
        if not spec:
            raise CnnpipeError(f"{where}: {key}: an empty list of choices")
        return Choice(tuple(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        raise CnnpipeError(
            f"{where}: {key}: expected {{low, high}} (with log or step) or a list of choices, "
            f"got {spec!r}"
        )
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra:
        raise CnnpipeError(
            f"{where}: {key}: unknown {', '.join(sorted(extra))}; a range has low, high, log, step"
        )
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log")), spec.get("step")
    numbers = (low, high) + ((step,) if step is not None else ())
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise CnnpipeError(f"{where}: {key}: low, high and step must be numbers")
    if not low < high:
        raise CnnpipeError(f"{where}: {key}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise CnnpipeError(f"{where}: {key}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise CnnpipeError(f"{where}: {key}: a range takes log or step, not both")
    if step is not None and step <= 0:
        raise CnnpipeError(f"{where}: {key}: step must be above 0, got {step}")
    # The param's own type decides: batch_size draws whole numbers, momentum floats.
    now = current.get(key)
    integer = isinstance(now, int) and not isinstance(now, bool)
    if now is None:
        integer = all(isinstance(v, int) for v in numbers)
    if integer and not all(float(v).is_integer() for v in numbers):
        raise CnnpipeError(f"{where}: {key} is a whole number; its low, high and step too")
    return Range(low, high, log, step, integer)


def _pruner(spec, where: str) -> PrunerSpec:
    if isinstance(spec, str):
        spec = {"kind": spec}
    kinds = ("median", "halving", "none")
    names = {f.name for f in fields(PrunerSpec)}
    if not isinstance(spec, dict) or spec.get("kind", "median") not in kinds:
        raise CnnpipeError(
            f"{where}: pruner must be one of {', '.join(kinds)} (or {{kind: ..., its settings}})"
        )
    if set(spec) - names:
        raise CnnpipeError(
            f"{where}: pruner: unknown {', '.join(sorted(set(spec) - names))}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    return PrunerSpec(**spec)
