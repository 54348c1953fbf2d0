"""What a report shows of one target (a run or an evaluation), whatever it was loaded from.

A run directory is scored on one split by ``himari.training.report_runs``; an evaluation
directory is read by ``evaluation_dir``. Both end as a ``ReportTarget``, so the figures and
tables never ask where the numbers came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BUY_AND_HOLD = "buy-and-hold"


@dataclass
class FoldRow:
    """One row of a target's fold table: a strategy's metrics on one out-of-sample block."""

    fold: str
    """fold number (an evaluation) or range of the split (a run)"""
    start: str
    end: str
    strategy: str
    metrics: dict[str, Any]
    buy_and_hold: dict[str, Any] | None = None
    """buy-and-hold's metrics on the same bars, for comparison"""


@dataclass
class ReportTarget:
    """A run or an evaluation, ready to draw: its per-bar series and its tables."""

    label: str
    """the path the user gave: unique among the targets, and what they recognise"""
    kind: str
    """``run`` or ``evaluation``"""
    model: str
    data: str
    scope: str
    """what the metrics cover, in words (``test split``, ``walk-forward, 4 folds x 2 seeds``)"""
    models: dict[str, Any]
    """model strategy name (``model``, ``model-seed-0``) -> per-bar table (``himari.evaluation.series``)"""
    baselines: dict[str, Any]
    """reference strategy name (``buy-and-hold``, ...) -> per-bar table on the same bars"""
    summary: dict[str, Any]
    """the leaderboard's metrics after costs (a walk-forward evaluation: the mean over seeds)"""
    summary_std: dict[str, float] = field(default_factory=dict)
    """the spread of ``summary`` over seeds (empty for a single run)"""
    folds: list[FoldRow] = field(default_factory=list)
    fold_actions: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    """(fold label, share of SELL/HOLD/BUY among the decisions), the model's mix per fold"""
    gates: list[dict[str, Any]] = field(default_factory=list)
    statistics: dict[str, Any] | None = None
    cpcv: dict[str, Any] | None = None
    costs: dict[str, Any] | None = None


def strategy_label(name: str) -> str:
    """``model-seed-3`` -> ``seed 3``; other names unchanged."""
    prefix = "model-seed-"
    return f"seed {name[len(prefix):]}" if name.startswith(prefix) else name


def timestamps_ms(table: Any) -> np.ndarray:
    """The bar times of a per-bar table as float milliseconds since the epoch (UTC): what a
    plotly date axis reads, and compact in the page (binary-encoded numbers, not date strings)."""
    import pandas as pd

    ts = pd.DatetimeIndex(pd.to_datetime(table["timestamp"], utc=True)).tz_localize(None)
    return ts.to_numpy().astype("datetime64[ms]").astype(np.int64).astype(np.float64)


def bar_seconds(table: Any) -> float:
    """The bar interval of a per-bar table: the median spacing of consecutive bars of a range
    (a gap between folds or symbols is not an interval)."""
    ms = timestamps_ms(table)
    same = np.asarray(table["range"])[1:] == np.asarray(table["range"])[:-1]
    steps = np.diff(ms)[same]
    steps = steps[steps > 0]
    return float(np.median(steps)) / 1000.0 if len(steps) else 300.0
