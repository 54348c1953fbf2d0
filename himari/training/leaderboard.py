"""Backtests of trained runs and reference strategies on one split of one data set, side by side.

What ``himari backtest`` computes: each target is a run directory (its best checkpoint and
saved preprocessing, scored on the data it was trained on unless another is given) or a
baseline name (``buy-and-hold``, ``never-trade``, ``random``). Every target is scored by the
same ``evaluate_actions`` with the same costs, so the rows compare.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.errors import ConfigError, DataError
from himari.evaluation.policy import BASELINES, baseline_actions, evaluate_actions
from himari.trading import EnvConfig


@dataclass
class Entry:
    name: str
    kind: str
    """run or baseline"""
    metrics: dict[str, Any]
    checkpoint: str | None = None


def _run_data(policies: list[Any]) -> str | None:
    datas = {p.run.data for p in policies}
    if len(datas) > 1:
        raise ConfigError("these runs were trained on different data; pass --data to score them on one set")
    return datas.pop() if datas else None


def backtest(targets: list[str], *, data: str | None = None, split: str = "test", seed: int = 0,
             env: EnvConfig | None = None, fee: float | None = None,
             slippage: float | None = None) -> tuple[list[Entry], dict[str, Any]]:
    """Score every target; returns the entries (sorted by Sharpe, best first) and context (data
    path, split, costs). Costs default to the runs' own (they must agree) or ``env``; ``fee`` and
    ``slippage`` override them for every target."""
    from himari.data import PreparedData, resolve_prepared
    from himari.training.assemble import load_trained

    if not targets:
        raise ConfigError("give at least one RUN_DIR or baseline (buy-and-hold, never-trade, random)")
    for name, value in (("--fee", fee), ("--slippage", slippage)):
        if value is not None and not (math.isfinite(value) and 0 <= value < 1):
            raise ConfigError(f"{name}: expected a fraction in [0, 1), got {value}")
    policies = []
    for t in targets:
        if t in BASELINES:
            continue
        if not Path(t).is_dir():
            raise ConfigError(f"{t!r}: neither a run directory nor a baseline ({', '.join(BASELINES)})")
        policies.append(load_trained(t))
    prepared = PreparedData(resolve_prepared(data if data is not None else _run_data(policies)))
    ranges = prepared.split(split)
    if not ranges:
        raise DataError(f"split {split!r} of {prepared.path} is empty")
    if env is None:
        overrides = {k: v for k, v in (("fee", fee), ("slippage", slippage)) if v is not None}
        costs = {(o.fee, o.slippage, o.mode) for o in (dataclasses.replace(p.run.env, **overrides) for p in policies)}
        if len(costs) > 1:
            raise ConfigError("these runs were trained with different costs; they cannot share one table "
                              "(pass --fee and --slippage to score them all with the same costs)")
        env = EnvConfig(**dict(zip(("fee", "slippage", "mode"), costs.pop()))) if costs else EnvConfig(**overrides)
    bpy = float(prepared.metadata.get("bars_per_year", 105_120))
    entries = []
    by_path = {str(p.run_dir): p for p in policies}
    for t in targets:
        if t in BASELINES:
            actions = baseline_actions(t, ranges, seed=seed)
            entries.append(Entry(t, "baseline", evaluate_actions(prepared.open, prepared.close, ranges, actions, env,
                                                                 bpy)))
            continue
        p = by_path[str(Path(t))]
        actions = p.actions(prepared, ranges)
        entries.append(Entry(str(t), "run", evaluate_actions(prepared.open, prepared.close, ranges, actions, env, bpy),
                             checkpoint=p.checkpoint))
    entries.sort(key=lambda e: -e.metrics["sharpe"])
    context = {"data": str(prepared.path), "split": split, "costs": env.costs(),
               "bars": int(sum(b - a for a, b in ranges))}
    return entries, context
