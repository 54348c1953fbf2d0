"""maml's tasks: regimes of the train split, each window split into a support set and a later query set.

Clustering (documented in docs/training-methods.md, K2): each train range is cut into consecutive,
non-overlapping windows of ``window`` bars (a remainder shorter than a window is dropped). A
window's first ``support`` bars are its support set; its query set starts ``embargo`` bars after
the support set ends and runs to the window's end. Because a label at row t reads prices up to
``t + lookahead``, an embargo of at least the labels' lookahead means no support label reads a bar
of the query set: the inner loop adapts on the past of the window and is scored on its future.

Each window is labelled with a regime from its **support bars' closes only**: the tercile of its
realised volatility (standard deviation of log close-to-close returns) and the tercile of its
trend (log of last over first close), terciles taken over all windows of the train split, giving
``3 * vol_tercile + trend_tercile`` in 0..8. A meta-step samples regimes uniformly among those
that have windows (so a rare regime is trained on as often as a common one), then one window
of each regime uniformly, from a generator seeded by ``(seed, step)``: no state to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    """One window: support rows ``[support_start, support_end)``, query rows ``[query_start,
    query_end)`` (prepared rows), and its regime (0..8)."""

    support_start: int
    support_end: int
    query_start: int
    query_end: int
    regime: int


def windows(ranges: list[tuple[int, int]], window: int, support: int, embargo: int) -> list[tuple[int, int, int, int]]:
    """``(support_start, support_end, query_start, query_end)`` of every whole window of every range."""
    if support + embargo >= window:
        raise ValueError(f"window {window} leaves no query bars after support {support} + embargo {embargo}")
    out = []
    for a, b in ranges:
        for start in range(int(a), int(b) - window + 1, window):
            out.append((start, start + support, start + support + embargo, start + window))
    return out


def terciles(values: np.ndarray) -> np.ndarray:
    """0, 1 or 2: at or below the first tercile boundary, above it up to the second, above the
    second (a value at a boundary stays below it)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return (values > lo).astype(np.int64) + (values > hi).astype(np.int64)


def regime_tasks(close: np.ndarray, ranges: list[tuple[int, int]], window: int, support: int,
                 embargo: int) -> list[Task]:
    """The train split's windows as tasks labelled by volatility and trend terciles of their
    support bars (module docstring)."""
    spans = windows(ranges, window, support, embargo)
    close = np.asarray(close, dtype=np.float64)
    vol = np.empty(len(spans))
    trend = np.empty(len(spans))
    for i, (s0, s1, _, _) in enumerate(spans):
        logc = np.log(close[s0:s1])
        vol[i] = float(np.std(np.diff(logc))) if s1 - s0 > 1 else 0.0
        trend[i] = float(logc[-1] - logc[0])
    regimes = 3 * terciles(vol) + terciles(trend)
    return [Task(*span, regime=int(r)) for span, r in zip(spans, regimes)]


def sample_tasks(tasks: list[Task], n: int, seed: int, step: int) -> list[Task]:
    """``n`` tasks for meta-step ``step``: a regime uniformly among the non-empty ones, then one of
    its windows uniformly (with replacement), from a generator seeded by ``(seed, step)``."""
    rng = np.random.default_rng([int(seed), int(step), 0x4D414D4C])
    by_regime: dict[int, list[Task]] = {}
    for t in tasks:
        by_regime.setdefault(t.regime, []).append(t)
    regimes = sorted(by_regime)
    out = []
    for _ in range(n):
        pool = by_regime[regimes[int(rng.integers(len(regimes)))]]
        out.append(pool[int(rng.integers(len(pool)))])
    return out
