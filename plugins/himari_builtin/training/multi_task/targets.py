"""The auxiliary targets of ``multi-task`` (NumPy only): the next-horizon log return and realised
volatility of every prepared row, computed from the closes of the bars after it.

Row t's targets read closes t .. t+h (close[t] is known when the decision at t is taken; the
new information is in bars t+1 .. t+h), so they are defined only where bar t+h lies in the same
run of consecutive bars and the same split range as t: a horizon that would cross a split's
end, a missing bar or another symbol leaves the row undefined (NaN), as the labels leave their
last rows undefined.

- return: ``log(close[t+h] / close[t])``, the sum of the h one-bar log returns after t;
- volatility: ``sqrt(sum_{j=1..h} r_{t+j}^2)`` with ``r_k = log(close[k] / close[k-1])``, the
  horizon's realised volatility (not annualised, not demeaned, as realised volatility is
  usually defined).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TASKS = ("return", "volatility")


def intersect(ranges: Sequence[tuple[int, int]], runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``[a, b)`` pieces of ``ranges`` that lie inside one of ``runs`` (sorted, disjoint)."""
    out = []
    for a, b in ranges:
        for s, e in runs:
            lo, hi = max(a, s), min(b, e)
            if hi > lo:
                out.append((lo, hi))
    return sorted(out)


def horizon_targets(close: np.ndarray, ranges: Sequence[tuple[int, int]], horizon: int) -> np.ndarray:
    """float64 ``[n, 2]``: the (return, volatility) targets of every row of ``close``, NaN except
    at rows t of ``ranges`` with t + ``horizon`` inside the same range (module docstring)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    close = np.asarray(close, dtype=np.float64)
    out = np.full((len(close), 2), np.nan)
    for a, b in ranges:
        if b - a <= horizon:
            continue
        log_close = np.log(close[a:b])
        r = np.diff(log_close)  # r[j]: the log return of bar a + j + 1
        squared = np.concatenate([[0.0], np.cumsum(r * r)])  # squared[k]: sum of r[0 .. k-1]
        n = b - a - horizon  # rows a .. a + n - 1 have their whole horizon in the range
        out[a:a + n, 0] = log_close[horizon:] - log_close[:n]
        out[a:a + n, 1] = np.sqrt(np.maximum(squared[horizon:horizon + n] - squared[:n], 0.0))
    return out


def standardise(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column over its defined (finite) values; a column
    without two defined values, or constant, gets mean 0 and std 1."""
    k = targets.shape[1]
    mean, std = np.zeros(k), np.ones(k)
    for i in range(k):
        col = targets[:, i]
        col = col[np.isfinite(col)]
        if len(col) >= 2 and float(np.std(col)) > 1e-12:
            mean[i], std[i] = float(np.mean(col)), float(np.std(col))
    return mean, std
