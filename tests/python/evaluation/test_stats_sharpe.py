"""Sharpe ratio, moments, PSR and DSR pinned against arithmetic written out here.

Every expected value is computed in the test from its textbook definition (fractions, plain
sums, ``math.erf``/``statistics.NormalDist``), never by calling the module under test. The DSR
is also checked against the numerical example of Bailey & Lopez de Prado (2014).
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest

from himari.errors import InvalidArgumentError
from himari.evaluation.stats import (
    deannualise_sharpe,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe_ratio,
    psr_from_moments,
    sharpe,
)

BPY = 105_120
GAMMA = 0.5772156649015329


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def hand_moments(xs: list[float]) -> tuple[float, float, float]:
    """(per-bar Sharpe with the ddof=1 std, skewness m3/m2^1.5, raw kurtosis m4/m2^2) in plain Python."""
    n = len(xs)
    mu = sum(xs) / n
    m2 = sum((x - mu) ** 2 for x in xs) / n
    m3 = sum((x - mu) ** 3 for x in xs) / n
    m4 = sum((x - mu) ** 4 for x in xs) / n
    return mu / math.sqrt(m2 * n / (n - 1)), m3 / m2**1.5, m4 / m2**2


def hand_psr(sr: float, n: int, g3: float, g4: float, sr_star: float) -> float:
    return phi((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))


def test_moments_of_a_hand_sample() -> None:
    """x = 1, 2, 3, 4, 10 (in %): mean 4, deviations -3, -2, -1, 0, 6, so the central moments are
    m2 = 50/5 = 10, m3 = 180/5 = 36, m4 = 1394/5 = 278.8 (in powers of %): skewness 36 / 10^1.5 =
    1.1384, kurtosis 278.8 / 10^2 = 2.788 (raw; the excess kurtosis would be -0.212)."""
    xs = [Fraction(v, 100) for v in (1, 2, 3, 4, 10)]
    n = len(xs)
    mu = sum(xs) / n
    dev = [x - mu for x in xs]
    m2, m3, m4 = (sum(d**k for d in dev) / n for k in (2, 3, 4))
    assert mu == Fraction(4, 100) and m2 == Fraction(10, 100**2)
    assert m3 == Fraction(36, 100**3) and m4 == Fraction(2788, 10 * 100**4)
    m = moments(np.array([float(x) for x in xs]))
    assert m.n == 5
    assert m.mean == pytest.approx(0.04, rel=1e-14)
    assert m.std == pytest.approx(math.sqrt(float(m2) * 5 / 4), rel=1e-12)  # sample std, ddof = 1
    assert m.sharpe == pytest.approx(0.04 / math.sqrt(float(m2) * 5 / 4), rel=1e-12)
    assert m.skewness == pytest.approx(36 / 10**1.5, rel=1e-12)
    assert m.kurtosis == pytest.approx(2.788, rel=1e-12)


def test_kurtosis_is_raw_not_excess_and_a_constant_series_has_normal_moments() -> None:
    r = np.random.default_rng(0).normal(0.0, 1.0, 200_000)
    m = moments(r)
    assert m.kurtosis == pytest.approx(3.0, abs=0.05)
    assert m.skewness == pytest.approx(0.0, abs=0.02)
    flat = moments(np.zeros(10))
    assert (flat.std, flat.sharpe, flat.skewness, flat.kurtosis) == (0.0, 0.0, 0.0, 3.0)


def test_sharpe_is_the_backtesters_metric() -> None:
    """The annualised Sharpe of the per-bar table's returns (without each range's first bar, on which
    no step is taken) is the one evaluate_actions reports for the same actions."""
    from himari.evaluation.policy import evaluate_actions
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    rng = np.random.default_rng(11)
    n = 3000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    acts = rng.integers(0, 3, n)
    env = EnvConfig(fee=1e-4, slippage=0.0)
    table = per_bar(open_, close, np.arange(n, dtype=np.int64), [(0, n)], acts, env)
    r = table["return"].to_numpy()[1:]
    expected = evaluate_actions(open_, close, [(0, n)], acts, env, bars_per_year=BPY)["sharpe"]
    assert sharpe(r, BPY) == pytest.approx(expected, rel=1e-9)
    assert sharpe(r, BPY) == pytest.approx(statistics.fmean(r) / statistics.stdev(r) * math.sqrt(BPY), rel=1e-12)


def test_psr_from_given_moments_by_hand() -> None:
    """SR = 0.1, n = 1000, skew -0.5, kurtosis 5, SR* = 0.05:
    z = 0.05 * sqrt(999) / sqrt(1 + 0.05 + 1 * 0.01) = 1.580348 / 1.029563 = 1.534970, Phi(z) = 0.937604."""
    z = 0.05 * math.sqrt(999) / math.sqrt(1.0 + 0.5 * 0.1 + (5 - 1) / 4 * 0.01)
    assert z == pytest.approx(1.534970, abs=1e-6)
    assert psr_from_moments(0.1, 1000, -0.5, 5.0, 0.05) == pytest.approx(phi(z), rel=1e-12)
    assert phi(z) == pytest.approx(0.937604, abs=1e-6)
    # a true Sharpe equal to the benchmark: exactly a coin flip
    assert psr_from_moments(0.07, 500, 1.0, 9.0, 0.07) == 0.5


def test_psr_of_returns_uses_per_bar_sharpe_and_raw_kurtosis() -> None:
    """Skewed, fat-tailed returns with a visible edge; the PSR is the hand formula on the per-bar
    moments computed above in plain Python (against 0 and against an annualised benchmark)."""
    rng = np.random.default_rng(5)
    noise = 0.01 * (rng.standard_t(5, 400) - 0.8 * rng.exponential(1.0, 400))
    r = noise - noise.mean() + 0.0009  # per-bar Sharpe about 0.06
    sr, g3, g4 = hand_moments(r.tolist())
    assert g4 > 4 and g3 < -0.3 and 0.8 < hand_psr(sr, 400, g3, g4, 0.0) < 0.99  # shape terms matter
    assert probabilistic_sharpe_ratio(r) == pytest.approx(hand_psr(sr, 400, g3, g4, 0.0), rel=1e-12)
    bench = 3.0 / math.sqrt(BPY)  # "is the annualised Sharpe above 3?"
    assert deannualise_sharpe(3.0, BPY) == pytest.approx(bench, rel=1e-15)
    assert probabilistic_sharpe_ratio(r, deannualise_sharpe(3.0, BPY)) == pytest.approx(
        hand_psr(sr, 400, g3, g4, bench), rel=1e-12)


def test_expected_max_sharpe_by_hand_and_against_the_exact_expectation() -> None:
    nd = NormalDist()
    # N = 10, V = 0.04: sqrt(V) ((1 - g) Phi^-1(0.9) + g Phi^-1(1 - 1/(10 e)))
    by_hand = 0.2 * ((1 - GAMMA) * nd.inv_cdf(0.9) + GAMMA * nd.inv_cdf(1 - 1 / (10 * math.e)))
    assert expected_max_sharpe(10, 0.04) == pytest.approx(by_hand, rel=1e-12)
    assert expected_max_sharpe(1, 0.04) == 0.0
    # the formula approximates E[max of N standard normals] = int x N phi(x) Phi(x)^(N-1) dx
    for n_trials in (100, 1000):
        xs = np.linspace(-4.0, 8.0, 120_001)
        dens = n_trials * np.exp(-xs**2 / 2) / math.sqrt(2 * math.pi) * (
            0.5 * (1 + np.array([math.erf(x / math.sqrt(2)) for x in xs]))) ** (n_trials - 1)
        exact = float(np.sum(xs * dens) * (xs[1] - xs[0]))
        assert expected_max_sharpe(n_trials, 1.0) == pytest.approx(exact, rel=0.012)


def test_dsr_reproduces_bailey_lopez_de_prado_2014_example() -> None:
    """The paper's example: best of N = 100 trials, annualised SR 2.5, T = 1250 daily returns
    (250 a year), skewness -3, kurtosis 10, variance of the trials' annualised Sharpe ratios 1/2.
    Per day: SR = 2.5 / sqrt(250) = 0.1581, V = 0.5 / 250; SR0 = sqrt(V) * 2.5310 = 0.1132 and
    DSR = Phi((0.1581 - 0.1132) * sqrt(1249) / sqrt(1 + 3 * 0.1581 + 9/4 * 0.1581^2)) = 0.9004."""
    sr = 2.5 / math.sqrt(250)
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = psr_from_moments(sr, 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)
    # the same numbers through the per-day helpers
    assert deannualise_sharpe(2.5, 250) == pytest.approx(sr, rel=1e-15)


def test_dsr_of_returns_with_trial_sharpes_or_count_and_variance() -> None:
    rng = np.random.default_rng(9)
    r = rng.normal(0.002, 0.01, 2000)
    trials = [0.2, 0.05, -0.03, 0.11, 0.0, 0.07]  # per-bar Sharpe ratios of all trials, the chosen one included
    sr, g3, g4 = hand_moments(r.tolist())
    v = statistics.variance(trials)  # ddof = 1
    nd = NormalDist()
    sr0 = math.sqrt(v) * ((1 - GAMMA) * nd.inv_cdf(1 - 1 / 6) + GAMMA * nd.inv_cdf(1 - 1 / (6 * math.e)))
    expected = hand_psr(sr, 2000, g3, g4, sr0)
    assert deflated_sharpe_ratio(r, trials) == pytest.approx(expected, rel=1e-12)
    assert deflated_sharpe_ratio(r, n_trials=6, trial_variance=v) == pytest.approx(expected, rel=1e-12)
    # one trial: no selection, the DSR is PSR(0)
    assert deflated_sharpe_ratio(r, [0.3]) == pytest.approx(hand_psr(sr, 2000, g3, g4, 0.0), rel=1e-12)
    assert deflated_sharpe_ratio(r, n_trials=1, trial_variance=0.7) == pytest.approx(
        hand_psr(sr, 2000, g3, g4, 0.0), rel=1e-12)
    # more trials at the same dispersion make the same record less convincing
    assert deflated_sharpe_ratio(r, n_trials=1000, trial_variance=v) < expected


def test_bad_inputs_are_refused_with_the_argument_named() -> None:
    with pytest.raises(InvalidArgumentError, match="returns: value 2 is nan"):
        probabilistic_sharpe_ratio(np.array([0.1, 0.2, np.nan]))
    with pytest.raises(InvalidArgumentError, match="returns: expected at least 2"):
        moments(np.array([0.1]))
    with pytest.raises(InvalidArgumentError, match="returns: expected a 1-D"):
        moments(np.zeros((3, 2)))
    with pytest.raises(InvalidArgumentError, match="is kurtosis excess"):
        psr_from_moments(0.5, 100, 2.0, 1.0)  # an excess kurtosis of a skewed series: impossible as raw kurtosis
    with pytest.raises(InvalidArgumentError, match="not both"):
        deflated_sharpe_ratio(np.ones(5) * 0.01 + np.arange(5) * 1e-3, [0.1, 0.2], n_trials=2)
    with pytest.raises(InvalidArgumentError, match="trial_sharpes"):
        deflated_sharpe_ratio(np.arange(5) * 1e-3, n_trials=4)
    with pytest.raises(InvalidArgumentError, match="bars_per_year"):
        sharpe(np.arange(5) * 1e-3, 0)
