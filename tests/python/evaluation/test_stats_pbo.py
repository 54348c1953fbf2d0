"""Probability of backtest overfitting (CSCV): a case enumerated by hand, a plain reference loop
for the default Sharpe metric, and the two limits (pure noise, one configuration always best)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from himari.errors import InvalidArgumentError
from himari.evaluation.stats import probability_of_backtest_overfitting


def test_hand_enumerated_four_rows_four_partitions_three_configurations() -> None:
    """T = 4 rows, S = 4 (one row a partition), N = 3, metric = mean (a half has 2 rows, so the
    mean orders like the sum). Rows: r0 = (2, 3, 1), r1 = (0, 2, 3), r2 = (2, 4, 2), r3 = (3, 4, 5).

    in-sample | IS sums  | best | OOS rows | OOS sums | its OOS rank r | w = r/4 | logit
    {0, 1}    | 2, 5, 4  | c1   | {2, 3}   | 5, 8, 7  | 3 (best)       | 3/4     | ln 3
    {0, 2}    | 4, 7, 3  | c1   | {1, 3}   | 3, 6, 8  | 2 (median)     | 1/2     | 0
    {0, 3}    | 5, 7, 6  | c1   | {1, 2}   | 2, 6, 5  | 3              | 3/4     | ln 3
    {1, 2}    | 2, 6, 5  | c1   | {0, 3}   | 5, 7, 6  | 3              | 3/4     | ln 3
    {1, 3}    | 3, 6, 8  | c2   | {0, 2}   | 4, 7, 3  | 1 (worst)      | 1/4     | -ln 3
    {2, 3}    | 5, 8, 7  | c1   | {0, 1}   | 2, 5, 4  | 3              | 3/4     | ln 3

    Two logits are <= 0 (the median counts as overfit): PBO = 2/6."""
    m = np.array([[2, 3, 1], [0, 2, 3], [2, 4, 2], [3, 4, 5]], dtype=float)
    res = probability_of_backtest_overfitting(m, n_partitions=4, metric="mean")
    ln3 = math.log(3.0)
    np.testing.assert_allclose(res.logits, [ln3, 0.0, ln3, ln3, -ln3, ln3], atol=1e-12)
    np.testing.assert_allclose(res.relative_rank, [0.75, 0.5, 0.75, 0.75, 0.25, 0.75])
    assert res.selected.tolist() == [1, 1, 1, 1, 2, 1]
    np.testing.assert_allclose(res.in_sample, [5 / 2, 7 / 2, 7 / 2, 6 / 2, 8 / 2, 8 / 2])
    np.testing.assert_allclose(res.out_of_sample, [8 / 2, 6 / 2, 6 / 2, 7 / 2, 3 / 2, 5 / 2])
    assert res.pbo == pytest.approx(2 / 6, abs=1e-15)
    assert (res.n_combinations, res.n_partitions, res.n_configurations) == (6, 4, 3)
    # a function as the metric gives the same splits
    assert probability_of_backtest_overfitting(m, 4, metric=lambda h: h.sum(axis=0)).pbo == pytest.approx(2 / 6)


@pytest.mark.parametrize(("t", "s"), [(40, 4), (42, 4), (50, 8)])
def test_default_sharpe_metric_matches_a_plain_reference(t: int, s: int,
                                                          reference_cscv_sharpe: Callable[..., Any]) -> None:
    rng = np.random.default_rng(t + s)
    m = rng.normal(0.0, 0.01, (t, 5)) + np.array([0.0, 0.002, -0.001, 0.001, 0.003])
    _, _, _, logits = reference_cscv_sharpe(m, s)
    pbo = sum(1 for x in logits if x <= 0) / len(logits)
    res = probability_of_backtest_overfitting(m, n_partitions=s)
    np.testing.assert_allclose(res.logits, logits, atol=1e-12)
    assert res.pbo == pbo


def test_pure_noise_gives_a_pbo_near_one_half() -> None:
    """Noise has no skill to carry over: the in-sample winner's out-of-sample rank is uniform, so
    with N even P(logit <= 0) = 1/2. Mean over 40 seeded noise matrices (sd of the mean ~0.03)."""
    pbos = [probability_of_backtest_overfitting(np.random.default_rng(seed).normal(0, 0.01, (400, 10)),
                                                n_partitions=8).pbo for seed in range(40)]
    assert statistics.fmean(pbos) == pytest.approx(0.5, abs=0.08)


def test_one_configuration_better_in_every_period_gives_pbo_zero() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 0.01, (600, 8))
    m[:, 5] += 0.05  # best in every row, so best in every half
    res = probability_of_backtest_overfitting(m, n_partitions=16)
    assert res.n_combinations == math.comb(16, 8) == 12_870
    assert res.pbo == 0.0
    assert np.all(res.selected == 5)
    np.testing.assert_allclose(res.logits, math.log(8.0))  # rank N: w = 8/9, logit ln 8


def test_identical_configurations_share_the_median_rank() -> None:
    """Ties share their average rank: N identical columns all rank (N + 1)/2, w = 1/2, logit 0,
    so the selection is never shown to beat the median: PBO = 1."""
    col = np.random.default_rng(1).normal(0, 0.01, 40)
    res = probability_of_backtest_overfitting(np.column_stack([col] * 4), n_partitions=4)
    np.testing.assert_allclose(res.relative_rank, 0.5)
    assert res.pbo == 1.0


def test_bad_shapes_and_partitions_are_refused() -> None:
    m = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(InvalidArgumentError, match="n_partitions: must be even"):
        probability_of_backtest_overfitting(m, n_partitions=5)
    with pytest.raises(InvalidArgumentError, match="n_partitions: 24 partitions need at least 24 periods"):
        probability_of_backtest_overfitting(m, n_partitions=24)
    with pytest.raises(InvalidArgumentError, match="at least 2 configurations"):
        probability_of_backtest_overfitting(m[:, :1], n_partitions=4)
    with pytest.raises(InvalidArgumentError, match="matrix"):
        probability_of_backtest_overfitting(m[:, 0], n_partitions=4)
    holed = m.copy()
    holed[3, 1] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN"):
        probability_of_backtest_overfitting(holed, n_partitions=4)
    with pytest.raises(InvalidArgumentError, match="each half needs at least 2 periods"):
        probability_of_backtest_overfitting(m[:2], n_partitions=2)
    with pytest.raises(InvalidArgumentError, match="metric"):
        probability_of_backtest_overfitting(m, n_partitions=4, metric="sortino")
