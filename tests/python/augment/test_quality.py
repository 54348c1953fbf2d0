"""The quality metrics against hand-worked cases: kurtosis, autocorrelation, and the
discriminative score's two ends (identical sets ~0, trivially separable sets ~0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from himari.augment import quality


def test_excess_kurtosis_of_a_hand_worked_series() -> None:
    # x = [1, -1, 0 x 6]: mean 0, m2 = 2/8, m4 = 2/8, so m4 / m2^2 - 3 = 4 - 3 = 1
    assert quality.excess_kurtosis(np.array([1, -1, 0, 0, 0, 0, 0, 0.0])) == pytest.approx(1.0)
    # two equally likely values: m4 / m2^2 = 1, excess -2
    assert quality.excess_kurtosis(np.array([3.0, 5.0] * 10)) == pytest.approx(-2.0)


def test_kurtosis_agrees_with_scipy_on_heavy_tails() -> None:
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).standard_t(4, size=5000)
    assert quality.excess_kurtosis(x) == pytest.approx(stats.kurtosis(x, fisher=True, bias=True), rel=1e-9)


def test_autocorrelation_of_an_alternating_series() -> None:
    # 1, -1, 1, ... (10 values, mean 0, sum of squares 10): lag k sums (10 - k) products of (-1)^k
    acf = quality.autocorrelation(np.array([1.0, -1.0] * 5), max_lag=12)
    assert acf[0] == pytest.approx(-0.9)
    assert acf[1] == pytest.approx(0.8)
    assert acf[8] == pytest.approx(-0.1)
    assert np.isnan(acf[9:]).all()  # lags 10..12 do not fit in 10 values


def test_stylised_facts_of_absolute_returns_show_volatility_clustering() -> None:
    # calm and wild halves: returns are uncorrelated, their magnitudes strongly so
    rng = np.random.default_rng(1)
    r = np.concatenate([rng.normal(0, 0.001, 2000), rng.normal(0, 0.02, 2000)])
    f = quality.stylised_facts(r, max_lag=5)
    assert abs(f["acf_returns"][0]) < 0.05
    assert f["acf_abs_returns"][0] > 0.4
    assert f["quantiles"]["0.01"] == pytest.approx(np.quantile(r, 0.01))
    assert f["n"] == 4000


def test_discriminative_score_identical_sets_near_zero_separable_near_half() -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 1, (400, 6, 2)).astype(np.float32)
    same = quality.discriminative_score(real, real.copy(), steps=50, seed=0)
    assert same < 0.1
    apart = quality.discriminative_score(np.zeros_like(real), np.ones_like(real), steps=200, seed=0)
    assert apart == pytest.approx(0.5)


def test_predictive_score_is_the_mae_of_a_perfectly_learnable_target_near_zero() -> None:
    """The last channel is a constant 0.5: a predictor trained on either set learns it."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 1, (300, 6, 1)), np.full((300, 6, 1), 0.5)], axis=2).astype(np.float32)
    flipped = x.copy()
    flipped[:, :, 1] = 0.8  # trained on another constant: its error on x is about |0.8 - 0.5|
    good = quality.predictive_score(x, x, steps=300, seed=0)
    bad = quality.predictive_score(flipped, x, steps=300, seed=0)
    assert good < 0.05
    assert bad == pytest.approx(0.3, abs=0.04)


def test_autocorrelation_of_generated_windows_uses_pairs_inside_a_window() -> None:
    """Two windows 1, -1, 1, -1: every lag-1 pair inside a window is -1 * 1, so -1 (laid end to
    end the series would give -7/8); lags >= the window length have no pair."""
    w = np.array([[1.0, -1.0, 1.0, -1.0]] * 2)
    acf = quality.window_autocorrelation(w, max_lag=5)
    np.testing.assert_allclose(acf[:3], [-1.0, 1.0, -1.0])
    assert np.isnan(acf[3:]).all()
    facts = quality.stylised_facts(w, max_lag=5)
    assert facts["acf_returns"][:4] == [-1.0, 1.0, -1.0, None]
    assert facts["acf_abs_returns"][0] is None  # |w| is constant: no variance, no autocorrelation
    assert facts["kurtosis"] == pytest.approx(-2.0)


def test_window_autocorrelation_stays_a_correlation_for_trending_windows() -> None:
    """Windows 1 2 3 and 3 2 1 (mean 2): the lag-2 pairs are (-1, 1) and (1, -1), a correlation of
    exactly -1; dividing by the variance of all six values (2/3) instead would give -1.5, an
    'autocorrelation' outside [-1, 1]. The lag-1 pairs (-1, 0), (0, 1), (1, 0), (0, -1): 0."""
    acf = quality.window_autocorrelation(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), max_lag=3)
    np.testing.assert_allclose(acf[:2], [0.0, -1.0], atol=1e-15)
    ramps = np.linspace(-1, 1, 24)[None, :] * np.random.default_rng(0).uniform(0.5, 2, size=(50, 1))
    assert np.all(np.abs(quality.window_autocorrelation(ramps, max_lag=23)) <= 1 + 1e-12)
