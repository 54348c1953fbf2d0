"""Backtests of trained runs and reference strategies on the same bars of one data set, side by side.

What ``himari backtest`` computes: each target is a run directory (its best checkpoint and
saved preprocessing, scored on the data it was trained on unless another is given) or a
baseline name (``buy-and-hold``, ``never-trade``, ``random``). Every target is scored by the
same ``evaluate_actions`` with the same costs, and again without costs (gross), on the same
selected bars (a split, every usable bar, or a date range of them), so the rows compare.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError
from himari.evaluation.policy import BASELINES, METRICS, baseline_actions, evaluate_actions, judged_on_decisions
from himari.trading import EnvConfig


@dataclass
class Entry:
    name: str
    kind: str
    """run or baseline"""
    metrics: dict[str, Any]
    """``evaluate_actions`` after the costs"""
    checkpoint: str | None = None
    gross: dict[str, Any] = field(default_factory=dict)
    """The same actions without fees and slippage (``METRICS``): direction skill alone, so the
    gap to ``metrics`` is what the costs took."""
    actions: np.ndarray | None = field(default=None, repr=False)
    """One action per scored bar (the concatenated ranges)."""


def _run_data(policies: list[Any]) -> str | None:
    datas = {p.run.data for p in policies}
    if len(datas) > 1:
        raise ConfigError("these runs were trained on different data; pass --data to score them on one set")
    return datas.pop() if datas else None


def scored_bars(prepared: Any, ranges: list[tuple[int, int]]) -> dict[str, Any]:
    """What was scored: bar count, first and last bar open time (ISO 8601, UTC), the symbols
    and the row ranges (each traded from flat)."""
    import pandas as pd

    ts = prepared.timestamps
    first = min(int(ts[a]) for a, _ in ranges)
    last = max(int(ts[b - 1]) for _, b in ranges)
    symbols = [s.symbol for s in prepared.segments if any(s.start <= a < s.stop for a, _ in ranges)]
    return {"bars": int(sum(b - a for a, b in ranges)),
            "first": pd.Timestamp(first, tz="UTC").isoformat(), "last": pd.Timestamp(last, tz="UTC").isoformat(),
            "symbols": list(dict.fromkeys(symbols)), "ranges": [[int(a), int(b)] for a, b in ranges]}


def _own_ranges(policies: list[Any], prepared: Any, split: str, start: Any, end: Any) -> list[tuple[int, int]] | None:
    """A split of runs that trained on row ranges of their own (``himari evaluate``'s fold runs):
    on their own data, ``--split test`` means their test block. Runs with different blocks
    cannot share one table of the same bars."""
    if split == "all" or start is not None or end is not None:
        return None
    own = {tuple(p.splits_of(prepared)[split]) for p in policies if p.run.splits is not None and
           Path(p.run.data or "").resolve() == Path(prepared.path).resolve()}
    if not own:
        return None
    if len(own) > 1 or len(own) != len({tuple(p.splits_of(prepared)[split]) for p in policies}):
        raise ConfigError(f"these runs trained on different rows of {prepared.path}, so their {split} splits differ; "
                          "score them on the same bars with --split all or --from/--to")
    return [tuple(r) for r in own.pop()]  # type: ignore[misc]


def backtest(targets: list[str], *, data: str | None = None, split: str | None = None, start: Any = None,
             end: Any = None, seed: int = 0, env: EnvConfig | None = None, fee: float | None = None,
             slippage: float | None = None, export: str | Path | None = None,
             export_format: str = "parquet", adapt_bars: int | None = None) -> tuple[list[Entry], dict[str, Any]]:
    """Score every target; returns the entries (sorted by Sharpe, best first) and context (data
    path, selection, bars scored, costs). Costs default to the runs' own (they must agree) or
    ``env``; ``fee`` and ``slippage`` override them for every target.

    The bars: ``split`` (``train``, ``validation``, ``test`` or ``all``; default ``test``, or
    ``all`` when ``start`` or ``end`` is given) narrowed to bars opening in ``[start, end)``
    (``PreparedData.select``). ``export``: a directory for every strategy's per-bar series
    (``himari.evaluation.export``), checked before anything is scored. ``adapt_bars``: every run
    also scores as a copy adapted on the first ``adapt_bars`` bars of each range by its training
    methods' ``adapt`` hooks (``himari.training.adaptation``), and every target, the unadapted
    runs included, is scored only on the bars after them."""
    from himari.data import PreparedData, resolve_prepared
    from himari.data.splits import SELECTIONS, time_window
    from himari.evaluation.export import FORMATS, check_export_dir, write_export
    from himari.training.assemble import load_trained
    from himari.training.device import scoring_device

    if not targets:
        raise ConfigError("give at least one RUN_DIR or baseline (buy-and-hold, never-trade, random)")
    for name, value in (("--fee", fee), ("--slippage", slippage)):
        if value is not None and not (math.isfinite(value) and 0 <= value < 1):
            raise ConfigError(f"{name}: expected a fraction in [0, 1), got {value}")
    if split is None:
        split = "test" if start is None and end is None else "all"
    if split not in SELECTIONS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SELECTIONS)}")
    time_window(start, end)  # bad dates fail before any model is loaded
    if export is not None and export_format not in FORMATS:
        raise ConfigError(f"--export-format {export_format!r}: choose one of {', '.join(FORMATS)}")
    names = [str(Path(t)) if t not in BASELINES else t for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{', '.join(repeated)}: given more than once")
    policies = []
    for t in targets:
        if t in BASELINES:
            continue
        if not Path(t).is_dir():
            raise ConfigError(f"{t!r}: neither a run directory nor a baseline ({', '.join(BASELINES)})")
        # scored where it trained, as an evaluation scores it; adapting (``adapt`` hooks) runs on the CPU
        policies.append(load_trained(t, device="cpu" if adapt_bars is not None else scoring_device(t)))
    prepared = PreparedData(resolve_prepared(data if data is not None else _run_data(policies)))
    if data is None:  # "the runs' data": the very set they trained on, not whatever now has its path
        from himari.training.data_identity import check_same_data

        for p in policies:
            check_same_data(p.run_dir, prepared, f"to score the run on it all the same, pass --data {prepared.path}")
    if export is not None:
        check_export_dir(export, [prepared.path, *(p.run_dir for p in policies)])
    ranges = _own_ranges(policies, prepared, split, start, end) or prepared.select(split, start, end)
    selected = ranges
    if adapt_bars is not None:
        from himari.training.adaptation import adapting_methods, check_adapt_bars, scored_ranges

        # an online-RL run adapts on rollouts over the bars and reads no label: no lookahead rule for it
        reads_labels = any(not callable(getattr(p.model, "rollout", None)) for p in policies)
        check_adapt_bars(adapt_bars, ranges, int(prepared.lookahead) if reads_labels else 0)
        for p in policies:
            adapting_methods(p)  # a run that cannot adapt is refused before anything is scored
        ranges = scored_ranges(adapt_bars, ranges)
    if env is None:
        overrides = {k: v for k, v in (("fee", fee), ("slippage", slippage)) if v is not None}
        costs = {(o.fee, o.slippage, o.mode) for o in (dataclasses.replace(p.run.env, **overrides) for p in policies)}
        if len(costs) > 1:
            raise ConfigError("these runs were trained with different costs; they cannot share one table "
                              "(pass --fee and --slippage to score them all with the same costs)")
        env = EnvConfig(**dict(zip(("fee", "slippage", "mode"), costs.pop()))) if costs else EnvConfig(**overrides)
    free = dataclasses.replace(env, fee=0.0, slippage=0.0)
    bpy = float(prepared.metadata.get("bars_per_year", 105_120))
    entries = []
    by_path = {str(p.run_dir): p for p in policies}
    for t, name in zip(targets, names):
        if t in BASELINES:
            kind, checkpoint = "baseline", None
            actions = baseline_actions(t, ranges, seed=seed)
        else:
            p = by_path[str(Path(t))]
            kind, checkpoint = "run", p.checkpoint
            counts = np.zeros(3, dtype=np.int64)  # the model's own decisions: collapse is judged on them
            actions = p.actions(prepared, ranges, decision_counts=counts)
        scored = [(name, actions)]
        if adapt_bars is not None and kind == "run":
            from himari.training.adaptation import adapted_actions

            scored.append((f"{name} adapted", adapted_actions(by_path[str(Path(t))], prepared, selected, adapt_bars)))
        for label, acts in scored:
            metrics = evaluate_actions(prepared.open, prepared.close, ranges, acts, env, bpy)
            if kind == "run" and label == name:
                metrics = judged_on_decisions(metrics, counts)
            gross = evaluate_actions(prepared.open, prepared.close, ranges, acts, free, bpy)
            entries.append(Entry(label, kind, metrics, checkpoint, {k: gross[k] for k in METRICS}, acts))
    entries.sort(key=lambda e: -e.metrics["sharpe"])
    context = {"data": str(prepared.path), "split": split, "from": _text(start), "to": _text(end),
               "costs": env.costs(), **scored_bars(prepared, ranges)}
    if adapt_bars is not None:
        context["adapt_bars"] = int(adapt_bars)
        context["adapted_on"] = [[int(a), int(a + adapt_bars)] for a, _ in selected]
        if reads_labels:
            context["adapt_label_rows"] = [[int(a), int(a + adapt_bars - prepared.lookahead)] for a, _ in selected]
    if export is not None:
        from functools import partial

        from himari.evaluation.series import per_bar

        strategies = []
        for e in entries:
            assert e.actions is not None  # set above for every entry
            strategies.append({"name": e.name, "kind": e.kind, "checkpoint": e.checkpoint, "costs": env.costs(),
                               "metrics": e.metrics, "gross": e.gross,
                               "table": partial(per_bar, prepared.open, prepared.close, prepared.timestamps, ranges,
                                                e.actions, env)})
        write_export(export, strategies, context, export_format)
    return entries, context


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
