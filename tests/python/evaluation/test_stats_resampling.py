"""p-values of a mean excess return: the stationary bootstrap against a slow resampler written
plainly here, its calibration under the null, and the sign-flip test enumerated by hand."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from himari.errors import InvalidArgumentError
from himari.evaluation.stats import (
    block_resample_means,
    bootstrap_pvalue,
    default_block_length,
    sign_flip_pvalue,
    stationary_bootstrap_blocks,
)


def slow_resample(x: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One stationary-bootstrap resample built value by value: block k copies x[s], x[s+1], ...
    (wrapping around the end) for lengths[k] values."""
    n = len(x)
    out = [x[(s + j) % n] for s, length in zip(starts.tolist(), lengths.tolist()) for j in range(length)]
    return np.array(out)


def test_blocks_are_uniform_starts_with_geometric_lengths_covering_n() -> None:
    n, mean_len = 500, 6.0
    chunks = list(stationary_bootstrap_blocks(n, mean_len, 4000, seed=1))
    starts = np.vstack([s for s, _ in chunks])
    lengths = np.vstack([length for _, length in chunks])
    assert starts.shape[0] == 4000
    assert np.all(lengths.sum(axis=1) == n)  # every resample has exactly n values
    assert starts.min() >= 0 and starts.max() < n
    # the blocks that end before n were not cut: their lengths are geometric with mean 6
    full = lengths[:, :-1][(np.cumsum(lengths, axis=1)[:, :-1] < n) & (lengths[:, :-1] > 0)]
    assert full.mean() == pytest.approx(mean_len, rel=0.03)
    assert np.mean(full == 1) == pytest.approx(1 / mean_len, rel=0.05)  # P(len = 1) = p
    assert np.mean(full == 3) == pytest.approx((1 / mean_len) * (1 - 1 / mean_len) ** 2, rel=0.06)
    used = starts[lengths > 0]
    assert abs(np.mean(used) - (n - 1) / 2) < 3  # uniform over 0..n-1: mean 249.5, sd of the mean ~1


def test_vectorised_means_and_p_value_equal_a_slow_resampler_on_the_same_draws() -> None:
    rng = np.random.default_rng(21)
    n = 300
    d = rng.normal(0.0004, 0.01, n)
    mean_len, resamples, seed = 7.3, 2000, 99
    centred = d - statistics.fmean(d)
    slow_means = []
    for starts, lengths in stationary_bootstrap_blocks(n, mean_len, resamples, seed=seed):
        assert len(starts) < resamples  # several chunks: the p-value below must walk them the same way
        fast = block_resample_means(centred, starts, lengths)
        slow = np.array([statistics.fmean(slow_resample(centred, s, length)) for s, length in zip(starts, lengths)])
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-15)
        slow_means.extend(slow.tolist())
    observed = statistics.fmean(d)
    expected_p = (1 + sum(m >= observed for m in slow_means)) / (resamples + 1)
    res = bootstrap_pvalue(d, n_resamples=resamples, mean_block_length=mean_len, seed=seed)
    assert res.p_value == expected_p
    assert 0.05 < res.p_value < 0.95  # a weak edge: neither extreme, so a miscount would show
    assert (res.n_resamples, res.block_length, res.method) == (resamples, mean_len, "stationary-bootstrap")
    assert res.statistic == pytest.approx(observed, rel=1e-12)
    # the same seed as a Generator draws the same resamples
    assert bootstrap_pvalue(d, n_resamples=resamples, mean_block_length=mean_len,
                            seed=np.random.default_rng(seed)).p_value == expected_p


def test_zero_mean_excess_gives_uniform_p_values() -> None:
    """200 seeded zero-mean series (n = 80, a little autocorrelated): p-values average 1/2 and about
    a tenth fall at or below 0.1. An uncentred bootstrap would put every p-value near 1/2."""
    ps = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        e = rng.normal(0.0, 0.01, 81)
        ps.append(bootstrap_pvalue(e[1:] + 0.3 * e[:-1], n_resamples=199, seed=seed).p_value)
    assert statistics.fmean(ps) == pytest.approx(0.5, abs=0.06)
    assert 0.04 <= np.mean(np.array(ps) <= 0.1) <= 0.2
    assert 0.8 <= np.mean(np.array(ps) <= 0.9) <= 0.96


def test_clear_edges_give_extreme_p_values_and_the_benchmark_is_subtracted() -> None:
    rng = np.random.default_rng(4)
    noise = rng.normal(0.0, 0.01, 5000)
    assert bootstrap_pvalue(noise - noise.mean() + 0.001, n_resamples=2000).p_value < 0.01
    assert bootstrap_pvalue(noise - noise.mean() - 0.001, n_resamples=2000).p_value > 0.99
    # a strategy losing 5 bp a bar while its benchmark loses 15 bp: its excess is clearly positive
    b = rng.normal(0.0, 0.01, 5000)
    bench = b - b.mean() - 0.0015
    e = rng.normal(0.0, 0.002, 5000)
    strat = bench + 0.001 + e - e.mean()
    assert bootstrap_pvalue(strat, n_resamples=2000).p_value > 0.99
    res = bootstrap_pvalue(strat, bench, n_resamples=2000)
    assert res.p_value < 0.01
    assert res.statistic == pytest.approx(float(np.mean(strat - bench)), rel=1e-12)
    assert res.block_length == default_block_length(5000) == 18  # 5000^(1/3) = 17.1


def test_default_block_length_is_the_cube_root_rounded_up() -> None:
    assert [default_block_length(n) for n in (1, 8, 9, 1000, 1001, 105_120)] == [1, 2, 3, 10, 11, 48]


def test_sign_flip_with_three_blocks_enumerated_by_hand() -> None:
    """Blocks of 2: sums S = (0.4, -0.1, 0.4), observed 0.7. The 8 patterns e1 S1 + e2 S2 + e3 S3:
    +++ 0.7, ++- -0.1, +-+ 0.9, +-- 0.1, -++ -0.1, -+- -0.9, --+ 0.1, --- -0.7.
    Two (0.7 itself and 0.9) are >= 0.7: p = 2/8."""
    x = np.array([0.3, 0.1, -0.1, 0.0, 0.2, 0.2])
    res = sign_flip_pvalue(x, block_length=2)
    assert res.exhaustive and res.n_resamples == 8 and res.block_length == 2
    assert res.p_value == 0.25
    assert res.statistic == pytest.approx(0.7 / 6)
    # the mirror image: observed -0.7, the patterns are the negatives above; all but -0.9 are >= -0.7
    assert sign_flip_pvalue(-x, block_length=2).p_value == 7 / 8
    # against a benchmark the blocks are of the excess: x - 0.1 per bar gives S = (0.2, -0.3, 0.2),
    # observed 0.1; patterns: 0.1, -0.3, 0.7, 0.3, -0.3, -0.7, 0.3, -0.1 -> 4 of 8 are >= 0.1
    assert sign_flip_pvalue(x, np.full(6, 0.1), block_length=2).p_value == 0.5


def test_sign_flip_sampled_patterns_agree_with_enumeration() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0.002, 0.01, 120)
    exact = sign_flip_pvalue(x, block_length=10, n_resamples=4096)  # 12 blocks: 4096 patterns
    assert exact.exhaustive and exact.n_resamples == 4096
    # asking for more resamples than there are patterns enumerates them
    assert sign_flip_pvalue(x, block_length=10, n_resamples=20_000, seed=3) == exact
    sampled = sign_flip_pvalue(x, block_length=10, n_resamples=4000, seed=3)
    assert not sampled.exhaustive and sampled.n_resamples == 4000
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.02)
    assert 0.005 < exact.p_value < 0.5


def test_sign_flip_on_a_year_of_bars_detects_an_edge() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 0.001, 105_120)
    assert sign_flip_pvalue(noise - noise.mean() + 2e-5).p_value < 0.01  # t ~ 6
    assert sign_flip_pvalue(noise - noise.mean() - 2e-5).p_value > 0.99


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="benchmark: expected one return per bar"):
        bootstrap_pvalue(np.zeros(10), np.zeros(9))
    with pytest.raises(InvalidArgumentError, match="mean_block_length"):
        bootstrap_pvalue(np.arange(10.0), mean_block_length=0.5)
    with pytest.raises(InvalidArgumentError, match="n_resamples"):
        bootstrap_pvalue(np.arange(10.0), n_resamples=0)
    with pytest.raises(InvalidArgumentError, match="seed"):
        bootstrap_pvalue(np.arange(10.0), seed=-1)
    with pytest.raises(InvalidArgumentError, match="block_length"):
        sign_flip_pvalue(np.arange(10.0), block_length=0)
    with pytest.raises(InvalidArgumentError, match="returns: value 1 is inf"):
        sign_flip_pvalue(np.array([0.0, np.inf, 1.0]))
