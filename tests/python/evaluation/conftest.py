"""Shared by the stats tests: CSCV (probability of backtest overfitting) written plainly from
Bailey, Borwein, Lopez de Prado and Zhu (2017), as an independent reference."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable

import numpy as np
import pytest

CSCVReference = Callable[[np.ndarray, int], tuple[list[int], list[float], list[float], list[float]]]


def _reference_cscv_sharpe(m: np.ndarray, s: int) -> tuple[list[int], list[float], list[float], list[float]]:
    """CSCV as in the paper with the per-bar Sharpe ``fmean / stdev`` (ddof = 1; ``statistics``
    computes the variance exactly, so a constant column has std 0 and Sharpe 0). Returns, per split
    in ``itertools.combinations`` order: the selected configuration (first on a tie), its in-sample
    and out-of-sample Sharpe ratio, and the logit of its out-of-sample rank (ties: average rank)."""
    t, n = m.shape
    sizes = [t // s + (1 if i < t % s else 0) for i in range(s)]
    starts = [sum(sizes[:i]) for i in range(s)]
    part_rows = [list(range(starts[i], starts[i] + sizes[i])) for i in range(s)]

    def score(rows: list[int], j: int) -> float:
        col = [float(m[r, j]) for r in rows]
        sd = statistics.stdev(col)
        return statistics.fmean(col) / sd if sd > 0 else 0.0

    selected, ins, outs, logits = [], [], [], []
    for combo in itertools.combinations(range(s), s // 2):
        in_rows = [r for p in combo for r in part_rows[p]]
        out_rows = [r for p in range(s) if p not in combo for r in part_rows[p]]
        is_scores = [score(in_rows, j) for j in range(n)]
        best = max(range(n), key=lambda j: (is_scores[j], -j))
        oos = [score(out_rows, j) for j in range(n)]
        below = sum(1 for j in range(n) if oos[j] < oos[best])
        tied = sum(1 for j in range(n) if oos[j] == oos[best])
        w = (below + (tied + 1) / 2) / (n + 1)
        selected.append(best)
        ins.append(is_scores[best])
        outs.append(oos[best])
        logits.append(math.log(w / (1 - w)))
    return selected, ins, outs, logits


@pytest.fixture
def reference_cscv_sharpe() -> CSCVReference:
    """``(m, n_partitions) -> (selected, in_sample, out_of_sample, logits)`` per split."""
    return _reference_cscv_sharpe
