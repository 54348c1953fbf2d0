"""The dimensions of a sweep: which run setting each ``--grid`` or ``--random`` key names, and
the values or distribution it takes.

A key is a run-config key as ``himari train --set`` takes it (``train.lr``, ``env.fee``,
``baseline-mlp.dropout``, ``plugins.zscore.clip``), or a bare field name that is found, in this
order, among the Trainer's settings (``lr``, ``batch-size``) and then the fields of the model,
the env, the execution rules and the run's preprocessors and training methods (``n-envs``,
``fee``); a bare name found in two of those is refused as ambiguous. An unknown key is a
``ConfigError`` naming the closest field (difflib), so a typo fails before Ray starts.

Distributions (``--random KEY=DIST:A,B``; a sweep file's ``random:`` section takes
``{DIST: [A, B]}``):

| DIST | values |
| --- | --- |
| ``uniform:A,B`` | a float in [A, B) |
| ``loguniform:A,B`` | a float in [A, B) evenly in log space (A > 0) |
| ``int:A,B`` | an integer in [A, B], both ends included |
| ``logint:A,B`` | an integer in [A, B], evenly in log space (A >= 1) |
| ``choice:V1,V2,...`` | one of the values |
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from himari.errors import ConfigError
from himari.plugin.config import unknown_key_error

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
"""Exponent notation without a dot (``1e-4``), which YAML 1.1 reads as a string."""
DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
FIXED = {"model": "the sweep's MODEL", "data": "--data", "splits": "--walk-forward", "trackers": "--set trackers=...",
         "train.seed": "--seeds", "seed": "--seeds"}
"""Run-config keys a dimension may not vary, and what sets them instead."""


@dataclass(frozen=True)
class Dimension:
    """One varied setting: grid values, or a distribution random search samples."""

    key: str
    """As the user wrote it (``lr``, ``n-envs``, ``train.lr``): the name in tables and trial configs."""
    target: str
    """The run-config key it sets (``train.lr``, ``ppo-lstm.n_envs``), as ``--set`` takes it."""
    kind: str
    """``grid`` or one of ``DISTRIBUTIONS``."""
    values: tuple[Any, ...]
    """The grid or choice values, or a distribution's two bounds."""

    def assignment(self, value: Any) -> str:
        """The ``--set`` assignment giving this dimension ``value``."""
        return f"{self.target}={json.dumps(plain(value))}"

    def extremes(self) -> list[Any]:
        """Values that check the whole range: every grid or choice value, a range's two ends
        (an ``int`` range's upper end is included)."""
        return list(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "target": self.target, "kind": self.kind, "values": list(self.values)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dimension:
        return cls(str(d["key"]), str(d["target"]), str(d["kind"]), tuple(d["values"]))


def plain(value: Any) -> Any:
    """A sampled value as plain Python (Tune's integer distributions give NumPy integers)."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value


def _parse_value(text: str) -> Any:
    """A value from the command line, read as YAML; a number YAML 1.1 leaves a string (``1e-4``,
    no dot) is read as the number."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return number_from_text(value)


def _number(value: Any, option: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{option}: expected a finite number, got {value!r}")
    return value


def number_from_text(value: Any) -> Any:
    """``value``, or the number it spells when YAML 1.1 left a number a string (``1e-4``)."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    return value


def check_distinct(values: list[Any], option: str) -> list[Any]:
    """``values`` when no two are equal (``1e-3`` and ``0.001`` are); a repeat would run the same
    configuration twice, counted as two trials by the deflated Sharpe and tying itself in PBO."""
    seen: dict[str, Any] = {}
    for value in values:
        text = json.dumps(value, sort_keys=True, default=str)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = repr(float(value))
        if text in seen:
            raise ConfigError(f"{option}: {value!r} is given twice (the same configuration would run twice and "
                              "count as two trials)")
        seen[text] = value
    return values


def check_distribution(kind: str, values: list[Any], option: str) -> tuple[Any, ...]:
    """The checked values of a distribution ``kind`` (bounds in order, positive for log scales,
    integers for integer ones; at least two choices)."""
    if kind not in DISTRIBUTIONS:
        close = [d for d in DISTRIBUTIONS if d.startswith(kind[:3])] if kind else []
        raise ConfigError(f"{option}: unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}"
                          + (f" (did you mean {close[0]}?)" if close else ""))
    if kind == "choice":
        if len(values) < 2:
            raise ConfigError(f"{option}: choice needs at least two values")
        return tuple(check_distinct(values, option))
    if len(values) != 2:
        raise ConfigError(f"{option}: {kind} takes two bounds, LOW,HIGH; got {len(values)} value(s)")
    low, high = (_number(v, option) for v in values)
    if kind in ("int", "logint"):
        if not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{option}: {kind} bounds must be integers, got {low}, {high}")
        low, high = int(low), int(high)
    if not low < high:
        raise ConfigError(f"{option}: the lower bound must be below the upper, got {low}, {high}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{option}: loguniform needs a lower bound > 0, got {low}")
    if kind == "logint" and low < 1:
        raise ConfigError(f"{option}: logint needs a lower bound >= 1, got {low}")
    return (low, high)


def parse_grid_option(item: str) -> tuple[str, list[Any]]:
    """``--grid KEY=V1,V2,...`` as (key, values); each value is read as YAML (``1e-4`` is a number)."""
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or not key or not text.strip():
        raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2")
    values = [_parse_value(v.strip()) for v in text.split(",")]
    if len(values) < 2:
        raise ConfigError(f"--grid {item!r}: give at least two values to compare")
    return key, check_distinct(values, f"--grid {key}")


def parse_random_option(item: str) -> tuple[str, str, list[Any]]:
    """``--random KEY=DIST:A,B`` as (key, distribution, values)."""
    key, eq, text = item.partition("=")
    kind, colon, args = text.partition(":")
    key, kind = key.strip(), kind.strip()
    if not eq or not key or not colon or not args.strip():
        raise ConfigError(f"--random {item!r}: expected KEY=DIST:A,B with DIST one of {', '.join(DISTRIBUTIONS)} "
                          f"(lr=loguniform:1e-5,1e-2)")
    return key, kind, [_parse_value(v.strip()) for v in args.split(",")]


def parse_random_entry(key: str, spec: Any, where: str) -> tuple[str, list[Any]]:
    """A sweep file's ``random:`` entry, ``{DIST: [A, B]}``, as (distribution, values)."""
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise ConfigError(f"{where}.{key}: expected {{DIST: [A, B]}} with DIST one of {', '.join(DISTRIBUTIONS)}, "
                          f"got {spec!r}")
    (kind, values), = spec.items()
    if not isinstance(values, list):
        raise ConfigError(f"{where}.{key}: expected a list of values after {kind}, got {values!r}")
    return str(kind), values


# ------------------------------------------------------------------------------- key resolution


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def resolve_key(key: str, run: Any, plugins: Any) -> str:
    """The run-config key (for ``--set``) that the sweep key ``key`` names, given the sweep's base
    run (a validated ``RunConfig``); see the module docstring for the search order."""
    from himari.plugin.api import EnvConfig
    from himari.training.config import TOP_LEVEL, ExecutionConfig, TrainConfig

    name = key.strip()
    if name in FIXED or name.replace("-", "_") in FIXED:
        raise ConfigError(f"{key}: a sweep does not vary this setting; use {FIXED.get(name, FIXED.get(name.replace('-', '_')))}")
    if "." in name:
        head = name.split(".", 1)[0]
        if head not in TOP_LEVEL and head not in {n for k in ("model", "preprocessor", "training-method", "tracker")
                                                  for n in plugins.registry(k).names()}:
            raise unknown_key_error(name, [*TOP_LEVEL, *run.plugin_configs], "the run config")
        return name
    field = name.replace("-", "_")
    if field in ("preprocess", "methods"):
        return field
    if field in _fields(TrainConfig):
        return f"train.{field}"
    sections: list[tuple[str, list[str]]] = [
        (run.model, _fields(type(run.plugin_configs[run.model]))),
        ("env", _fields(EnvConfig)), ("execution", _fields(ExecutionConfig)),
        *((n, _fields(type(run.plugin_configs[n]))) for n in [*run.preprocess, *run.methods]),
    ]
    found = [f"{section}.{field}" for section, names in sections if field in names]
    if len(found) > 1:
        raise ConfigError(f"{key}: ambiguous, a setting of {' and of '.join(f.rsplit('.', 1)[0] for f in found)}; "
                          f"give one of {', '.join(found)}")
    if found:
        return found[0]
    known = sorted({*_fields(TrainConfig), *(n for _, names in sections for n in names)})
    close = difflib.get_close_matches(field, known, n=3)
    hint = f"did you mean {', '.join(c.replace('_', '-') for c in close)}?" if close else \
        f"himari plugins show {run.model} lists the model's settings"
    raise ConfigError(f"{key}: not a setting of the trainer, {run.model}, the env, the execution rules or the run's "
                      f"plugins; {hint}")
