"""Reference strategies an evaluation scores on the same folds as the model.

Besides buy-and-hold and never-trade (``himari.evaluation.baselines``):

- ``random_like``: a random policy that changes position as often as the model did on the fold
  (its trade frequency), so a model that wins only by trading less or more than chance is seen;
- ``ma_cross``: the classic moving-average cross (long, or short in ``long_short``, while the
  fast simple moving average of the close is above the slow one), its two windows chosen on each
  fold's training and validation rows (both before its test block) by Sharpe after costs
  (``fit_ma_cross``), then traded on the test block.
  The averages at bar t use closes up to t only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.evaluation.policy import evaluate_actions
from himari.trading import EnvConfig

SELL, HOLD, BUY = 0, 1, 2
MA_GRID = ((6, 48), (12, 48), (12, 96), (24, 96), (24, 288), (48, 288), (96, 576), (288, 1440))
"""(fast, slow) windows in bars tried on each training block (5-minute bars: 30 min to 5 days)."""

Ranges = Sequence[tuple[int, int]]


def random_like(trade_rate: float, ranges: Ranges, mode: str, seed: int) -> np.ndarray:
    """Actions over ``ranges`` (each from flat) that change position with probability
    ``trade_rate`` per decision: BUY from flat (long_flat) or a flip (long_short), else HOLD."""
    rng = np.random.default_rng([int(seed), 0x72616E64])
    parts = []
    for a, b in ranges:
        n = b - a
        acts = np.full(n, HOLD, dtype=np.int8)
        change = rng.random(n) < min(max(trade_rate, 0.0), 1.0)
        position = 0
        for t in np.flatnonzero(change[:-1]) if n > 1 else []:
            if mode == "long_flat":
                acts[t], position = (BUY, 1) if position == 0 else (SELL, 0)
            else:
                acts[t], position = (BUY, 1) if position <= 0 else (SELL, -1)
        parts.append(acts)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def _sma(close: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average ending at each bar (NaN before ``window`` bars exist)."""
    c = np.cumsum(np.r_[0.0, np.asarray(close, dtype=np.float64)])
    out = np.full(len(close), np.nan)
    out[window - 1:] = (c[window:] - c[:-window]) / window
    return out


def ma_cross(close: np.ndarray, ranges: Ranges, fast: int, slow: int) -> np.ndarray:
    """BUY while SMA(fast) > SMA(slow) at a bar's close, SELL while below, HOLD before both
    exist; over the rows of ``ranges`` (averages over every earlier bar of the series)."""
    f, s = _sma(close, fast), _sma(close, slow)
    sig = np.where(f > s, BUY, np.where(f < s, SELL, HOLD)).astype(np.int8)
    sig[np.isnan(f) | np.isnan(s)] = HOLD
    return np.concatenate([sig[a:b] for a, b in ranges]) if ranges else np.zeros(0, dtype=np.int8)


def fit_ma_cross(open_: np.ndarray, close: np.ndarray, train: Ranges, env: EnvConfig,
                 bars_per_year: float, grid: Sequence[tuple[int, int]] = MA_GRID) -> tuple[int, int]:
    """The (fast, slow) windows of ``grid`` with the best Sharpe after costs on the ``train``
    ranges (the first on ties)."""
    best, best_sharpe = grid[0], -np.inf
    for fast, slow in grid:
        m = evaluate_actions(open_, close, train, ma_cross(close, train, fast, slow), env, bars_per_year)
        if m["sharpe"] > best_sharpe:
            best, best_sharpe = (fast, slow), m["sharpe"]
    return best


def trade_rate(metrics: dict[str, Any]) -> float:
    """Position changes per decision of a scored strategy."""
    return float(metrics["n_trades"]) / max(int(metrics["decisions"]), 1)
