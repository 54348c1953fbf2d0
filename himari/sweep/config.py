"""A sweep's settings (``sweep.yaml`` in its directory), built from the command line and an
optional sweep file, and checked in full before Ray starts.

A sweep file (``--config sweep.yaml``; options on the command line win)::

    model: baseline-mlp
    data: prepared/btc            # a prepared directory or bars file; omit for the synthetic market
    run:                          # settings every trial shares, as in a run config (docs/training.md)
      train: {epochs: 5, batch_size: 256}
    grid:                         # every combination is tried
      lr: [1.0e-4, 3.0e-4]
      baseline-mlp.dropout: [0.0, 0.2]
    random:                       # sampled once per sample
      weight-decay: {loguniform: [1.0e-5, 1.0e-2]}
    samples: 4                    # random draws; each runs every grid combination
    seeds: 3                      # train.seed = 0, 1, 2 for every configuration
    walk_forward: 4               # 0: the data's own splits
    fold_mode: expanding
    validation_fraction: 0.2
    embargo: null                 # rows between blocks; null: the prepared data's
    asha: {grace_period: 1, reduction_factor: 2}   # or true; stop weak trials early
    cpus_per_trial: 1
    gpus_per_trial: 0.25          # fractions share a GPU
    max_concurrent: 0             # 0: as many as the resources allow
    top: 3                        # best trials drawn in report.html
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from himari.errors import ConfigError
from himari.plugin.config import unknown_key_error
from himari.sweep.space import (
    Dimension,
    check_distinct,
    check_distribution,
    number_from_text,
    parse_grid_option,
    parse_random_entry,
    parse_random_option,
    resolve_key,
)

SWEEP_SETS = {"model": "the sweep's MODEL", "data": "--data (or the sweep file's data:)", "splits": "--walk-forward",
              "train.seed": "--seeds"}
"""Run settings a sweep gives every trial itself, and the options that set them."""
FILE_KEYS = ("model", "data", "run", "grid", "random", "samples", "seeds", "walk_forward", "fold_mode",
             "validation_fraction", "embargo", "asha", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "top",
             "resamples", "search_seed")
FOLD_MODES = ("expanding", "rolling")
MAX_CHECKED_COMBINATIONS = 512
"""Grids up to this many combinations are checked combination by combination before the sweep
starts (settings that constrain each other); larger ones value by value."""


@dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs to run, resume and be scored (``sweep.yaml``)."""

    model: str
    data: str | None
    """The prepared directory (absolute), or None: the synthetic market."""
    sets: tuple[str, ...] = ()
    """Run-config assignments every trial gets (``--set``, ``--epochs``, the file's ``run:``)."""
    dimensions: tuple[Dimension, ...] = ()
    samples: int = 1
    seeds: tuple[int, ...] = (0,)
    walk_forward: int = 0
    fold_mode: str = "expanding"
    validation_fraction: float = 0.2
    embargo: int | None = None
    asha: bool = False
    grace_period: int = 1
    """ASHA: epochs every trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: 1/factor of the trials go on at each rung."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    top: int = 3
    resamples: int = 10_000
    """Bootstrap resamples of the leaderboard's p-values."""
    search_seed: int = 0
    """Seed of the random search's draws (the same seed draws the same values)."""
    folds: dict[str, dict[str, list[list[int]]]] = field(default_factory=dict)
    """Walk-forward fold name -> its ``splits:`` (filled when the sweep is planned)."""

    @property
    def grid(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.kind == "grid"]

    @property
    def random(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.kind != "grid"]

    @property
    def n_trials(self) -> int:
        return (self.samples * math.prod(len(d.values) for d in self.grid) * len(self.seeds)
                * max(1, len(self.folds)))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "sets": list(self.sets),
                "dimensions": [d.to_dict() for d in self.dimensions], "samples": self.samples,
                "seeds": list(self.seeds), "walk_forward": self.walk_forward, "fold_mode": self.fold_mode,
                "validation_fraction": self.validation_fraction, "embargo": self.embargo, "asha": self.asha,
                "grace_period": self.grace_period, "reduction_factor": self.reduction_factor,
                "cpus_per_trial": self.cpus_per_trial, "gpus_per_trial": self.gpus_per_trial,
                "max_concurrent": self.max_concurrent, "top": self.top, "resamples": self.resamples,
                "search_seed": self.search_seed, "folds": self.folds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        d = dict(d)
        d["sets"], d["seeds"] = tuple(d["sets"]), tuple(d["seeds"])
        d["dimensions"] = tuple(Dimension.from_dict(x) for x in d["dimensions"])
        return cls(**d)

    def trial_sets(self, params: dict[str, Any], seed: int) -> list[str]:
        """The ``--set`` assignments of one trial: the shared ones, its dimension values, its seed."""
        by_key = {d.key: d for d in self.dimensions}
        return [*self.sets, *(by_key[k].assignment(v) for k, v in params.items()), f"train.seed={seed}",
                "train.progress=false"]

    def run_config(self, plugins: Any, params: dict[str, Any], seed: int, fold: str | None) -> Any:
        """The validated ``RunConfig`` of one trial."""
        from himari.training.config import merge_run_config

        overrides: dict[str, Any] = {"model": self.model, "data": self.data}
        if fold is not None:
            overrides["splits"] = self.folds[fold]
        return merge_run_config(plugins=plugins, overrides=overrides, sets=self.trial_sets(params, seed))


def _count(value: Any, option: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{option}: expected an integer >= {minimum}, got {value!r}")
    return value


def _resources(value: Any, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{option}: expected a number >= 0, got {value!r}")
    if value > 1 and not float(value).is_integer():
        raise ConfigError(f"{option}: a fraction shares one device, so it must be at most 1, or a whole number; "
                          f"got {value}")
    return float(value)


def flatten_run(section: Any, where: str = "run") -> list[str]:
    """A sweep file's ``run:`` mapping as ``--set`` assignments (``train.epochs=5``)."""
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping of run settings, got {section!r}")
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if prefix == "" and key in ("model", "data", "splits"):
                raise ConfigError(f"{where}.{key}: set by the sweep itself (MODEL, --data, --walk-forward)")
            if isinstance(value, dict) and value:
                walk(value, dotted + ".")
            else:
                out.append(f"{dotted}={json.dumps(value)}")

    walk(section, "")
    return out


def load_sweep_file(path: Path) -> dict[str, Any]:
    from himari.training.config import load_yaml

    raw = load_yaml(path)
    for key in raw:
        if key not in FILE_KEYS:
            raise unknown_key_error(str(key), list(FILE_KEYS), f"the sweep file {path}")
    return raw


def _dimensions(raw: dict[str, Any], grid: list[str], random: list[str]) -> list[tuple[str, str, list[Any], str]]:
    """(key, kind, values, where) of every dimension: the file's, then the command line's (which
    replace a file entry of the same key)."""
    dims: dict[str, tuple[str, str, list[Any], str]] = {}
    section = raw.get("grid") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"grid: expected a mapping of setting to a list of values, got {section!r}")
    for key, values in section.items():
        if not isinstance(values, list) or len(values) < 2:
            raise ConfigError(f"grid.{key}: expected a list of at least two values, got {values!r}")
        dims[str(key)] = (str(key), "grid", check_distinct([number_from_text(v) for v in values], f"grid.{key}"),
                          f"grid.{key}")
    section = raw.get("random") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"random: expected a mapping of setting to {{DIST: [A, B]}}, got {section!r}")
    for key, spec in section.items():
        if str(key) in dims:
            raise ConfigError(f"random.{key}: also in grid; a setting is either gridded or sampled")
        kind, values = parse_random_entry(str(key), spec, "random")
        dims[str(key)] = (str(key), kind, values, f"random.{key}")
    given: set[str] = set()
    for item in grid:
        key, values = parse_grid_option(item)
        if key in given:
            raise ConfigError(f"--grid {key}: given twice")
        given.add(key)
        dims[key] = (key, "grid", values, f"--grid {key}")
    for item in random:
        key, kind, values = parse_random_option(item)
        if key in given:
            raise ConfigError(f"--random {key}: given twice (or also as --grid)")
        given.add(key)
        dims[key] = (key, kind, values, f"--random {key}")
    return list(dims.values())


def build_sweep(*, plugins: Any, model: str | None, data: str | None, config_file: Path | None = None,
                grid: list[str] | None = None, random: list[str] | None = None, sets: list[str] | None = None,
                options: dict[str, Any] | None = None) -> SweepConfig:
    """The sweep the command line (``options``: sweep-file keys given as options, None skipped)
    and the sweep file describe, with every trial's settings checked (``check``). Loads nothing
    heavier than the data set; starts nothing."""
    from himari.training.config import merge_run_config, refuse_fixed_sets, require_run_extras

    raw = load_sweep_file(config_file) if config_file is not None else {}
    for key, value in (options or {}).items():
        if value is not None:
            raw[key] = value
    model = model or raw.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError("give a MODEL (himari plugins list --kind model), or model: in the sweep file")
    data = data if data is not None else raw.get("data")
    if data is not None and not isinstance(data, str):
        raise ConfigError(f"data: expected a path, got {data!r}")
    base_sets = [*flatten_run(raw.get("run")), *(sets or [])]
    refuse_fixed_sets(base_sets, SWEEP_SETS, "a sweep")
    base = merge_run_config(plugins=plugins, overrides={"model": model, "data": data},
                            sets=[*base_sets, "train.progress=false"])
    require_run_extras(base, plugins)
    if base.data is not None:  # a bars file is prepared once, here, not by every trial at once
        from himari.data import resolve_prepared

        base.data = str(resolve_prepared(base.data).resolve())

    dims, targets = [], {}
    for key, kind, values, where in _dimensions(raw, grid or [], random or []):
        target = resolve_key(key, base, plugins)
        if target in targets:
            raise ConfigError(f"{where}: sets {target}, as {targets[target]} does")
        targets[target] = where
        if kind != "grid":
            values = list(check_distribution(kind, values, where))
        dims.append(Dimension(key, target, kind, tuple(values)))

    asha = raw.get("asha", False)
    grace, factor = 1, 2
    if isinstance(asha, dict):
        unknown = set(asha) - {"grace_period", "reduction_factor"}
        if unknown:
            raise unknown_key_error(f"asha.{sorted(unknown)[0]}", ["grace_period", "reduction_factor"], "asha")
        grace = _count(asha.get("grace_period", 1), "asha.grace_period", 1)
        factor = _count(asha.get("reduction_factor", 2), "asha.reduction_factor", 2)
        asha = True
    elif not isinstance(asha, bool):
        raise ConfigError(f"asha: expected true, false or {{grace_period: N, reduction_factor: K}}, got {asha!r}")
    samples = _count(raw.get("samples", 1), "--samples", 1)
    if samples > 1 and not any(d.kind != "grid" for d in dims):
        raise ConfigError(f"--samples {samples}: without --random every sample would repeat the same trials; "
                          f"add --random KEY=DIST:A,B or use --seeds")
    fold_mode = raw.get("fold_mode", "expanding")
    if fold_mode not in FOLD_MODES:
        raise ConfigError(f"--fold-mode {fold_mode!r}: choose expanding or rolling")
    embargo = raw.get("embargo")
    if embargo is not None:
        embargo = _count(embargo, "--embargo", 0)
    fraction = raw.get("validation_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"--validation-fraction: expected a number in (0, 1), got {fraction!r}")
    max_concurrent = _count(raw.get("max_concurrent", 0), "--max-concurrent", 0)
    sweep = SweepConfig(
        model=model, data=base.data if data is not None else None, sets=tuple(base_sets), dimensions=tuple(dims),
        samples=samples, seeds=tuple(range(_count(raw.get("seeds", 1), "--seeds", 1))),
        walk_forward=_count(raw.get("walk_forward", 0), "--walk-forward", 0), fold_mode=fold_mode,
        validation_fraction=float(fraction), embargo=embargo, asha=asha, grace_period=grace,
        reduction_factor=factor, cpus_per_trial=_resources(raw.get("cpus_per_trial", 1), "--cpus-per-trial"),
        gpus_per_trial=_resources(raw.get("gpus_per_trial", 0), "--gpus-per-trial"), max_concurrent=max_concurrent,
        top=_count(raw.get("top", 3), "--top", 0), resamples=_count(raw.get("resamples", 10_000), "--resamples", 100),
        search_seed=_count(raw.get("search_seed", 0), "search_seed", 0))
    if sweep.cpus_per_trial == 0 and sweep.gpus_per_trial == 0:
        raise ConfigError("--cpus-per-trial 0 --gpus-per-trial 0: a trial needs some resources")
    sweep = plan_folds(sweep)
    epochs = check(sweep, plugins)
    if sweep.asha and epochs <= sweep.grace_period:
        raise ConfigError(f"--asha: trials run at most {epochs} epoch(s), so none can be stopped after the grace "
                          f"period of {sweep.grace_period}; give more --epochs")
    return sweep


def plan_folds(sweep: SweepConfig) -> SweepConfig:
    """The sweep with its walk-forward folds' row ranges (``himari.evaluate.folds``), computed on
    its data; unchanged without ``walk_forward``."""
    if not sweep.walk_forward:
        return sweep
    from himari.data import PreparedData, resolve_prepared
    from himari.evaluate.folds import walk_forward

    data = PreparedData(resolve_prepared(sweep.data))
    embargo = int(data.metadata["embargo"]) if sweep.embargo is None else sweep.embargo
    if embargo < int(data.lookahead):
        raise ConfigError(f"--embargo {embargo}: less than the labels' lookahead of {data.lookahead} bars")
    folds = walk_forward(data, sweep.walk_forward, mode=sweep.fold_mode, embargo=embargo,
                         validation_fraction=sweep.validation_fraction)
    return replace(sweep, folds={f.name: f.splits() for f in folds})


def covering_params(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Parameter sets that together check every value: each grid combination (or, past
    ``MAX_CHECKED_COMBINATIONS``, each value alone) with the random dimensions at one end, and
    each end of each random dimension."""
    grid, random = sweep.grid, sweep.random
    low = {d.key: d.extremes()[0] for d in random}
    if math.prod(len(d.values) for d in grid) <= MAX_CHECKED_COMBINATIONS:
        combos = [dict(zip([d.key for d in grid], values), **low)
                  for values in itertools.product(*(d.values for d in grid))]
    else:
        first = {d.key: d.values[0] for d in grid}
        combos = [{**first, **low, d.key: v} for d in grid for v in d.values]
    base = combos[0]
    combos += [{**base, d.key: v} for d in random for v in d.extremes()[1:]]
    return combos


def check(sweep: SweepConfig, plugins: Any) -> int:
    """Build the run config of trials covering every value (``covering_params``), so a bad value
    fails now, naming the dimension, not in a trial after Ray started. Returns the most epochs a
    trial runs (the ASHA scheduler's horizon)."""
    fold = next(iter(sweep.folds), None)
    epochs = 0
    for params in covering_params(sweep):
        try:
            run = sweep.run_config(plugins, params, sweep.seeds[-1], fold)
        except ConfigError as e:
            varied = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "the shared settings"
            raise type(e)(f"{e} (in the trial with {varied})") from None
        if run.train.device.startswith("cuda") and sweep.gpus_per_trial == 0:
            raise ConfigError(f"train.device {run.train.device}: Ray gives a trial only the GPUs it asks for; add "
                              f"--gpus-per-trial (a fraction such as 0.25 shares a GPU)")
        epochs = max(epochs, run.train.epochs)
    return epochs
