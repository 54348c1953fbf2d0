"""Behaviours of ``himari.evaluation.stats`` that the other stats tests leave loose, pinned by hand.

Each test was written against a hand-applied mistake (a mutant) that the rest of the suite let
through; its docstring names the wrong implementation it catches. Expected values come from
hand-enumerated cases (exact fractions where rounding matters), ``statistics`` (whose variance
is computed exactly) or the definitions of the papers cited in the module, never from the
module itself.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from himari.evaluation.stats import (
    bootstrap_pvalue,
    moments,
    probability_of_backtest_overfitting,
    sharpe,
    sign_flip_pvalue,
    stationary_bootstrap_blocks,
)

# --------------------------------------------------------------------------- helpers


def exact_sign_flip_p(values: list[Fraction], block_length: int) -> Fraction:
    """The exhaustive sign-flip p-value in exact arithmetic: blocks of ``block_length`` (the last
    one shorter), ``#{patterns whose signed block sum >= the observed sum} / 2**B``."""
    sums = [sum(values[i:i + block_length], Fraction(0)) for i in range(0, len(values), block_length)]
    observed = sum(sums, Fraction(0))
    hits = sum(1 for signs in itertools.product((1, -1), repeat=len(sums))
               if sum((e * s for e, s in zip(signs, sums)), Fraction(0)) >= observed)
    return Fraction(hits, 2 ** len(sums))


# --------------------------------------------------------------------------- PBO


def test_pbo_selects_the_first_configuration_on_an_in_sample_tie() -> None:
    """Catches selecting the LAST (or any other) of the configurations tied best in sample; the
    docstring says the first. T = 2 rows, S = 2 (one row a partition), metric = mean, N = 3,
    rows r0 = (1, 1, 0), r1 = (0, 2, 1):

    in-sample | IS     | best           | OOS     | its OOS rank r       | w = r/4 | logit
    {0}       | 1,1,0  | c0 (tie c0/c1) | 0, 2, 1 | 1 (worst)            | 1/4     | -ln 3
    {1}       | 0,2,1  | c1             | 1, 1, 0 | (2 + 3)/2 = 2.5 (tie)| 5/8     | ln(5/3)

    PBO = 1/2. Picking c1 on the tie would give rank 3 in the first split and PBO = 0."""
    m = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    res = probability_of_backtest_overfitting(m, n_partitions=2, metric="mean")
    assert res.selected.tolist() == [0, 1]
    np.testing.assert_allclose(res.relative_rank, [0.25, 0.625], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.logits, [-math.log(3.0), math.log(5.0 / 3.0)], rtol=0, atol=1e-12)
    assert res.pbo == 0.5


def test_pbo_reports_in_and_out_of_sample_sharpe_with_the_sample_std(
        reference_cscv_sharpe: Callable[..., Any]) -> None:
    """Catches the per-half Sharpe ratio of the default metric divided by the population std
    (ddof = 0) instead of the sample std: every column of a half shares the factor, so the ranks,
    logits and PBO are unchanged and only the reported ``in_sample``/``out_of_sample`` values
    show it. Pinned against ``statistics.fmean / statistics.stdev`` on each half, with 26 rows in
    4 partitions (sizes 7, 7, 6, 6)."""
    rng = np.random.default_rng(17)
    m = rng.normal(0.0, 0.01, (26, 3)) + np.array([0.001, 0.003, -0.002])
    selected, ins, outs, logits = reference_cscv_sharpe(m, 4)
    res = probability_of_backtest_overfitting(m, n_partitions=4)
    assert res.selected.tolist() == selected
    np.testing.assert_allclose(res.in_sample, ins, rtol=1e-10, atol=0)
    np.testing.assert_allclose(res.out_of_sample, outs, rtol=1e-10, atol=0)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)


def test_pbo_gives_a_column_constant_within_a_half_sharpe_zero(
        reference_cscv_sharpe: Callable[..., Any]) -> None:
    """Catches a column that is constant within a half scored by anything but Sharpe 0 in the
    default metric: by its mean when its std is 0, or by ``mean / tiny`` when the float variance
    of the half is a rounding residue rather than exactly 0 (a zero-only flatness test). Columns:
    two losing noisy ones, a cash account earning 3 bp a period, and one whose rate moves from
    10 bp by 1e-9 half-way (constant in rows 0-11 and in rows 12-23: the module's centred sums of
    squares leave a residue of ~4e-35 in rows 0-11; in mixed halves its tiny std is genuine and its
    Sharpe huge, ~2e6). Pinned against the exact ``statistics.stdev`` reference: split {0, 1} has
    both flat columns at Sharpe 0 in sample, selects the cash column (first on the tie), and out of
    sample the cash and step columns tie at Sharpe 0 (average rank 3.5 of 4: w = 0.7)."""
    rng = np.random.default_rng(5)
    t = 24
    step = np.r_[np.full(t // 2, 0.001), np.full(t // 2, 0.001000001)]
    m = np.column_stack([rng.normal(-0.004, 0.01, t), np.full(t, 0.0003), rng.normal(-0.005, 0.01, t), step])
    selected, ins, outs, logits = reference_cscv_sharpe(m, 4)
    assert (selected[0], ins[0], outs[0]) == (1, 0.0, 0.0)
    assert logits[0] == pytest.approx(math.log(0.7 / 0.3), abs=1e-12)
    res = probability_of_backtest_overfitting(m, n_partitions=4)
    assert res.selected.tolist() == selected
    np.testing.assert_allclose(res.in_sample, ins, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.out_of_sample, outs, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)


def test_pbo_with_a_metric_function_scores_the_right_halves() -> None:
    """Catches a custom ``metric`` fed the out-of-sample rows as the in-sample half and vice versa
    (the PBO of the module's hand case happens to be 2/6 either way). The same hand-enumerated
    table as the module's ``mean`` case (T = 4, S = 4, N = 3; a metric of the half's column sums,
    so the values are twice the means):

    in-sample | IS sums  | best | OOS sums | logit
    {0, 1}    | 2, 5, 4  | c1   | 5, 8, 7  | ln 3
    {0, 2}    | 4, 7, 3  | c1   | 3, 6, 8  | 0
    {0, 3}    | 5, 7, 6  | c1   | 2, 6, 5  | ln 3
    {1, 2}    | 2, 6, 5  | c1   | 5, 7, 6  | ln 3
    {1, 3}    | 3, 6, 8  | c2   | 4, 7, 3  | -ln 3
    {2, 3}    | 5, 8, 7  | c1   | 2, 5, 4  | ln 3"""
    m = np.array([[2, 3, 1], [0, 2, 3], [2, 4, 2], [3, 4, 5]], dtype=float)
    res = probability_of_backtest_overfitting(m, n_partitions=4, metric=lambda h: h.sum(axis=0))
    ln3 = math.log(3.0)
    assert res.selected.tolist() == [1, 1, 1, 1, 2, 1]
    np.testing.assert_allclose(res.in_sample, [5, 7, 7, 6, 8, 8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.out_of_sample, [8, 6, 6, 7, 3, 5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.logits, [ln3, 0.0, ln3, ln3, -ln3, ln3], rtol=0, atol=1e-12)
    assert res.pbo == pytest.approx(2 / 6, abs=1e-15)


# --------------------------------------------------------------------------- stationary bootstrap


def test_stationary_bootstrap_starts_are_uniform_over_every_index() -> None:
    """Catches block starts drawn from 0..n-2 (``integers(0, n - 1)``): Politis & Romano draw each
    start uniformly from all n positions. With n = 4, 20,000 draws per index value: each of 0..3
    has frequency 1/4 (sd of a frequency ~0.0015), the last index included."""
    n = 4
    starts = np.vstack([s for s, _ in stationary_bootstrap_blocks(n, 2.0, 20_000, seed=7)])
    freq = np.bincount(starts.ravel(), minlength=n) / starts.size
    assert len(freq) == n
    np.testing.assert_allclose(freq, 0.25, atol=0.01)


def test_stationary_bootstrap_with_mean_block_length_one_is_the_iid_bootstrap() -> None:
    """Catches block lengths that are not all 1 when the mean block length is 1 (p = 1 in Politis &
    Romano: every block is a single value, the i.i.d. bootstrap), e.g. ``1 + floor(E)`` with E
    exponential when p = 1 is special-cased wrongly."""
    n = 50
    for starts, lengths in stationary_bootstrap_blocks(n, 1.0, 300, seed=2):
        assert np.all(lengths[:, :n] == 1) and np.all(lengths[:, n:] == 0)
        assert starts.shape == lengths.shape


# --------------------------------------------------------------------------- p-values


def test_a_strategy_equal_to_its_benchmark_has_p_value_one() -> None:
    """Catches counting resamples / sign patterns with ``>`` instead of ``>=`` (ties are counted,
    Davison & Hinkley eq. 4.11). A strategy whose returns are its benchmark's has excess exactly 0
    on every bar: every resample mean and every sign pattern equals the observed 0, so every one
    counts and p = (1 + R) / (R + 1) = 1 (sampled) or 2**B / 2**B = 1 (enumerated). With ``>``
    they would report p = 1 / (R + 1) or 0: a strongly 'significant' edge from nothing."""
    r = np.random.default_rng(3).normal(0.0, 0.01, 200)
    boot = bootstrap_pvalue(r, r, n_resamples=99, seed=1)
    assert boot.p_value == 1.0 and boot.statistic == 0.0
    sampled = sign_flip_pvalue(r, r.copy(), block_length=5, n_resamples=999, seed=1)  # 40 blocks: sampled
    assert not sampled.exhaustive and sampled.p_value == 1.0
    exact = sign_flip_pvalue(r, r.copy(), block_length=20, n_resamples=4096)  # 10 blocks: enumerated
    assert exact.exhaustive and exact.n_resamples == 1024 and exact.p_value == 1.0


def test_sampled_sign_flip_p_value_is_one_plus_count_over_r_plus_one() -> None:
    """Catches the sampled sign-flip p-value without the +1 smoothing (``count / R``): 30 blocks
    (too many to enumerate) of ten +1% returns each, so every block sum is positive and only the
    all-plus pattern (probability 2**-30 a draw) reaches the observed sum. With no pattern
    reaching it, p = (1 + 0) / (R + 1), never 0. The bootstrap gives the same floor when no
    centred resample can reach the observed mean (all centred values are 0 < 1%)."""
    x = np.full(300, 0.01)
    res = sign_flip_pvalue(x, block_length=10, n_resamples=999, seed=0)
    assert not res.exhaustive and res.n_resamples == 999
    assert res.p_value == 1 / 1000
    assert bootstrap_pvalue(x + np.tile([1e-4, -1e-4], 150), n_resamples=999).p_value == 1 / 1000


def test_sign_flip_keeps_the_short_last_block_as_its_own_block() -> None:
    """Catches folding the short last block into the one before it. Five exact (dyadic) returns
    in blocks of 2: sums S = (0.25, 0.125, -0.125), observed 0.25. The 8 patterns:
    +++ 0.25, ++- 0.5, +-+ 0, +-- 0.25, -++ -0.25, -+- 0, --+ -0.5, --- -0.25: three are >= 0.25,
    p = 3/8. Folded, S = (0.25, 0) gives 4 patterns and p = 2/4."""
    x = np.array([0.25, 0.0, 0.125, 0.0, -0.125])
    res = sign_flip_pvalue(x, block_length=2)
    assert res.exhaustive and res.n_resamples == 8
    assert res.p_value == 3 / 8 == exact_sign_flip_p([Fraction(v) for v in x.tolist()], 2)


def test_sign_flip_counts_patterns_tied_in_exact_arithmetic() -> None:
    """Catches comparing the flipped sums with the observed one without the tie tolerance: with
    decimal returns the float sums of patterns that tie exactly miss the observed sum by a rounding
    error. x = (-0.1, 0, 0.2, 0.4, -0.5, 0.5, 0, -0.2), blocks of 2: S = (-0.1, 0.6, 0, -0.2),
    observed 0.3. With e2 = + the patterns 0.6 +- 0.1 +- 0.2 give 0.3 (a tie), 0.5, 0.7, 0.9,
    each twice (the sign of the zero block); with e2 = - all are < 0: p = 8/16 exactly, which
    exact fractions confirm. Without the tolerance two tied patterns are lost (p = 6/16)."""
    tenths = [-1, 0, 2, 4, -5, 5, 0, -2]
    assert exact_sign_flip_p([Fraction(v, 10) for v in tenths], 2) == Fraction(1, 2)
    res = sign_flip_pvalue(np.array([v / 10 for v in tenths]), block_length=2)
    assert res.exhaustive and res.n_resamples == 16
    assert res.p_value == 0.5


def test_sign_flip_default_block_length_is_the_cube_root_rounded_up() -> None:
    """Catches the sign-flip test ignoring ``default_block_length`` when no block length is given
    (e.g. blocks of one bar, which treats serially dependent returns as independent). n = 8: blocks
    of ceil(8^(1/3)) = 2, so 4 blocks and 16 patterns, enumerated; the p-value is the exact
    enumeration with blocks of 2 (dyadic returns, no rounding): sums S = (0.25, 0.375, -0.125,
    0.25), observed 0.75; flipping any positive block costs at least 0.5, so only the observed
    pattern and the one flipping -0.125 (1.0) reach it: p = 2/16. Blocks of one bar would give 256
    patterns and p = 66/256."""
    x = [0.5, -0.25, 0.125, 0.25, -0.5, 0.375, 0.25, 0.0]
    res = sign_flip_pvalue(np.array(x))
    assert res.block_length == 2.0 and res.exhaustive and res.n_resamples == 16
    assert exact_sign_flip_p([Fraction(v) for v in x], 2) == Fraction(2, 16)
    assert exact_sign_flip_p([Fraction(v) for v in x], 1) == Fraction(66, 256)
    assert res.p_value == 2 / 16


# --------------------------------------------------------------------------- known bug, not fixed here


def test_a_constant_series_whose_mean_is_inexact_has_sharpe_zero() -> None:
    """The documented convention (ReturnMoments, docs/semantics.md): a constant series has std 0,
    Sharpe 0 and the moments of a normal. ``statistics.stdev`` (exact) gives std 0 for 100 bars of
    +3 bp. Catches: a flatness test of ``m2 == 0`` alone, which reads the float residue of
    ``r - mean`` (~1e-20 here) as spread and reports a Sharpe of ~5e15."""
    r = np.full(100, 0.0003)
    assert statistics.stdev(r.tolist()) == 0.0
    m = moments(r)
    assert (m.std, m.sharpe, m.skewness, m.kurtosis) == (0.0, 0.0, 0.0, 3.0)
    assert sharpe(r, 105_120) == 0.0


def test_pbo_a_configuration_idle_for_half_the_periods_has_sharpe_zero_there(
        reference_cscv_sharpe: Callable[..., Any]) -> None:
    """A configuration that never trades in the first 12 of 24 periods (returns exactly 0 there)
    has, by the metric's definition (0 for a constant column), Sharpe 0 in any half made of those
    periods. The exact ``statistics`` reference selects among finite Sharpe ratios. Catches: a
    flatness test against the half's "mean of x^2", which rounds below 0 here, so that 0/0 gave
    NaN in split {0, 1} in sample (np.argmax then selects the idle column) and in split {2, 3}
    out of sample (a NaN ranks below every configuration: logit ln(1/7))."""
    rng = np.random.default_rng(1)
    t = 24
    idle = np.r_[np.zeros(t // 2), rng.normal(0.001, 0.01, t // 2)]
    m = np.column_stack([rng.normal(0.0, 0.01, t), idle, rng.normal(0.0005, 0.01, t)])
    selected, ins, outs, logits = reference_cscv_sharpe(m, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = probability_of_backtest_overfitting(m, n_partitions=4)
    assert np.all(np.isfinite(res.in_sample)) and np.all(np.isfinite(res.out_of_sample))
    assert res.selected.tolist() == selected
    np.testing.assert_allclose(res.in_sample, ins, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(res.out_of_sample, outs, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)


def test_pbo_reads_a_nearly_constant_half_from_its_rows(
        reference_cscv_sharpe: Callable[..., Any]) -> None:
    """A configuration earning 1% a period with a spread of 1e-12 over the first 12 of 24
    periods, then noise: in a half made of those periods its Sharpe is about 1e10 (the exact
    ``statistics`` reference), so it is selected there. Its spread is far below the rounding of
    the per-partition sums the metric uses, so that half must be read again from its rows.
    Catches: taking that rounding residue as the variance (a Sharpe off by orders of magnitude),
    or calling a nearly constant half constant (Sharpe 0: the configuration not selected)."""
    rng = np.random.default_rng(3)
    t = 24
    calm = np.r_[0.01 + 1e-12 * np.tile([1.0, -1.0], t // 4), rng.normal(0.0, 0.01, t // 2)]
    m = np.column_stack([rng.normal(0.0, 0.01, t), calm, rng.normal(0.0005, 0.01, t)])
    selected, ins, outs, logits = reference_cscv_sharpe(m, 4)
    assert selected[0] == 1 and ins[0] > 1e9  # split {0, 1}: the calm half in sample
    res = probability_of_backtest_overfitting(m, n_partitions=4)
    assert res.selected.tolist() == selected
    np.testing.assert_allclose(res.in_sample, ins, rtol=1e-6)
    np.testing.assert_allclose(res.out_of_sample, outs, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.logits, logits, rtol=0, atol=1e-12)
