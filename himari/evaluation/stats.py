"""Statistics that tell an out-of-sample edge from luck, on per-bar returns.

Every function takes simple per-bar returns as a 1-D float64 NumPy array (the ``return`` column
of ``himari.evaluation.series.per_bar``: after costs, one value per bar) and, where a number is
annualised, ``bars_per_year`` (105,120 for 5-minute bars of a 24/7 market). Nothing here imports
SciPy: the normal distribution comes from the standard library (``statistics.NormalDist`` for
the quantile, ``math.erfc`` for the CDF).

Which Sharpe ratio where
------------------------
``sharpe`` is annualised exactly as the backtester's metric (docs/semantics.md):
``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)``, 0 when the std is 0. The probabilistic and
deflated Sharpe ratios are defined on the **per-bar** (not annualised) Sharpe ratio, the
skewness and the (non-excess) kurtosis of the same per-bar returns; every Sharpe ratio they take
or return (benchmark, the trials' Sharpe ratios, their variance) is per bar too. Convert an
annualised value with ``deannualise_sharpe`` (divide by ``sqrt(bars_per_year)``; a variance of
annualised Sharpe ratios divides by ``bars_per_year``).

References
----------
- Bailey, D. H., Lopez de Prado, M. (2012). The Sharpe ratio efficient frontier. Journal of
  Risk 15(2), 3-44: the probabilistic Sharpe ratio (PSR), eq. (11) there.
- Bailey, D. H., Lopez de Prado, M. (2014). The deflated Sharpe ratio: correcting for selection
  bias, backtest overfitting and non-normality. Journal of Portfolio Management 40(5), 94-107:
  the expected maximum Sharpe ratio of N trials and the deflated Sharpe ratio (DSR).
- Bailey, D. H., Borwein, J., Lopez de Prado, M., Zhu, Q. J. (2017; SSRN 2015). The probability
  of backtest overfitting. Journal of Computational Finance 20(4), 39-69: combinatorially
  symmetric cross-validation (CSCV) and the PBO.
- Politis, D. N., Romano, J. P. (1994). The stationary bootstrap. Journal of the American
  Statistical Association 89(428), 1303-1313.
- Davison, A. C., Hinkley, D. V. (1997). Bootstrap Methods and Their Application, eq. (4.11):
  the ``(1 + count) / (R + 1)`` Monte Carlo p-value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from himari.errors import InvalidArgumentError

EULER_MASCHERONI = 0.5772156649015329
"""The Euler-Mascheroni constant gamma of the expected-maximum formula."""

DEFAULT_RESAMPLES = 10_000
"""Resamples (or sign patterns) of the p-value tests unless told otherwise."""

MAX_PBO_COMBINATIONS = 1_000_000
"""CSCV evaluates C(S, S/2) splits; S = 16 gives 12,870, S = 22 already 705,432."""

_STANDARD_NORMAL = NormalDist()

Seed = int | np.random.Generator


# --------------------------------------------------------------------------- input checks


def _returns(values: Any, name: str, min_len: int = 2) -> np.ndarray:
    """``values`` as a 1-D finite float64 array of at least ``min_len`` values, or a clear error."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name}: expected numbers, got {type(values).__name__} ({e})") from None
    if x.ndim != 1:
        raise InvalidArgumentError(f"{name}: expected a 1-D array of per-bar values, got shape {x.shape}")
    if len(x) < min_len:
        raise InvalidArgumentError(f"{name}: expected at least {min_len} values, got {len(x)}")
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise InvalidArgumentError(f"{name}: value {bad} is {x[bad]} (NaN or infinite)")
    return x


def _excess(returns: Any, benchmark: Any | None) -> np.ndarray:
    """Per-bar excess returns ``returns - benchmark`` (the returns themselves without a benchmark)."""
    r = _returns(returns, "returns")
    if benchmark is None:
        return r
    b = _returns(benchmark, "benchmark")
    if len(b) != len(r):
        raise InvalidArgumentError(f"benchmark: expected one return per bar of returns ({len(r)}), got {len(b)}")
    return r - b


def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise InvalidArgumentError(f"seed: expected an integer >= 0 or a numpy Generator, got {seed!r}")


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def normal_cdf(z: float) -> float:
    """Standard normal CDF, ``0.5 * erfc(-z / sqrt(2))`` (keeps relative precision in the left tail)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """Standard normal quantile (``statistics.NormalDist().inv_cdf``, Wichura's AS241, ~1e-16)."""
    return _STANDARD_NORMAL.inv_cdf(p)


# --------------------------------------------------------------------------- Sharpe and moments


@dataclass(frozen=True)
class ReturnMoments:
    """Sample moments of per-bar returns, as the PSR needs them.

    ``sharpe`` is per bar: ``mean / std`` with ``std`` the sample standard deviation (ddof=1, as
    the backtester's Sharpe). ``skewness`` and ``kurtosis`` are the moment estimators
    ``m3 / m2**1.5`` and ``m4 / m2**2`` with ``m_k = mean((r - mean)**k)`` (SciPy's
    ``skew`` and ``kurtosis(fisher=False)`` defaults): kurtosis is NOT excess, a normal has 3.
    A constant series has std 0, Sharpe 0 (the backtester's convention) and, having no shape,
    the moments of a normal: skewness 0, kurtosis 3.
    """

    n: int
    mean: float
    std: float
    sharpe: float
    skewness: float
    kurtosis: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def moments(returns: Any) -> ReturnMoments:
    """Per-bar Sharpe ratio, skewness and kurtosis (non-excess) of ``returns``; see ``ReturnMoments``."""
    r = _returns(returns, "returns")
    n = len(r)
    mean = float(r.mean())
    d = r - mean
    d2 = d * d
    m2 = float(np.mean(d2))
    # constant means every value equal, not m2 == 0: the float mean of equal values can miss them by
    # an ulp, and that residue (1e-20 for 3 bp) would read as a Sharpe of 1e15
    if m2 == 0.0 or r.min() == r.max():
        return ReturnMoments(n, mean, 0.0, 0.0, 0.0, 3.0)
    std = math.sqrt(m2 * n / (n - 1))
    m3 = float(np.dot(d2, d)) / n
    m4 = float(np.dot(d2, d2)) / n
    return ReturnMoments(n, mean, std, mean / std, m3 / m2**1.5, m4 / m2**2)


def sharpe(returns: Any, bars_per_year: float) -> float:
    """Annualised Sharpe ratio ``mean / std(ddof=1) * sqrt(bars_per_year)``, the backtester's
    ``sharpe`` (0 for a constant series)."""
    return moments(returns).sharpe * math.sqrt(_bars_per_year(bars_per_year))


def deannualise_sharpe(annual_sharpe: float, bars_per_year: float) -> float:
    """The per-bar Sharpe ratio of an annualised one: ``annual / sqrt(bars_per_year)``.

    Use it for a PSR benchmark quoted per year (``probabilistic_sharpe_ratio(r,
    deannualise_sharpe(1.0, 105_120))`` asks "is the annualised Sharpe above 1?"). A *variance* of
    annualised Sharpe ratios becomes per bar by dividing by ``bars_per_year`` (not its root)."""
    return float(annual_sharpe) / math.sqrt(_bars_per_year(bars_per_year))


def _bars_per_year(bars_per_year: float) -> float:
    if not (isinstance(bars_per_year, (int, float, np.integer, np.floating)) and math.isfinite(bars_per_year)
            and bars_per_year > 0):
        raise InvalidArgumentError(f"bars_per_year: expected a positive number, got {bars_per_year!r}")
    return float(bars_per_year)


# --------------------------------------------------------------------------- PSR and DSR


def psr_from_moments(sharpe: float, n: int, skewness: float, kurtosis: float, benchmark: float = 0.0) -> float:
    """Probabilistic Sharpe ratio from the moments of ``n`` per-bar returns (Bailey & Lopez de
    Prado 2012, eq. 11):

        PSR(SR*) = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

    ``sharpe`` and ``benchmark`` (SR*) are per bar, ``skewness`` g3, ``kurtosis`` g4 non-excess
    (3 for a normal). The probability that the true Sharpe ratio exceeds SR*, allowing for the
    estimation error of SR from ``n`` non-normal returns (their serial dependence is ignored).
    """
    n = _positive_int(n, "n", 2)
    values = {"sharpe": sharpe, "skewness": skewness, "kurtosis": kurtosis, "benchmark": benchmark}
    for name, v in values.items():
        if not math.isfinite(v):
            raise InvalidArgumentError(f"{name}: expected a finite number, got {v!r}")
    var = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if var <= 0.0:
        # never for moments of real data: Pearson's inequality kurtosis >= skewness^2 + 1 keeps it > 0
        raise InvalidArgumentError(f"skewness {skewness} and kurtosis {kurtosis}: no distribution has these moments "
                                   "(kurtosis must be at least skewness^2 + 1; is kurtosis excess instead of raw?)")
    return normal_cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(var))


def probabilistic_sharpe_ratio(returns: Any, benchmark: float = 0.0) -> float:
    """PSR of ``returns`` against the per-bar Sharpe ratio ``benchmark`` (see ``psr_from_moments``).

    ``benchmark`` is per bar: pass ``deannualise_sharpe(annual, bars_per_year)`` for a benchmark
    quoted per year. ``PSR(0)`` is the probability that the strategy's true Sharpe is positive."""
    m = moments(returns)
    return psr_from_moments(m.sharpe, m.n, m.skewness, m.kurtosis, benchmark)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """Expected maximum of ``n_trials`` independent Sharpe ratio estimates with true Sharpe 0 and
    variance ``variance`` across the trials (Bailey & Lopez de Prado 2014, eq. 6; the "false
    strategy theorem"):

        sqrt(V) * ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))

    with gamma the Euler-Mascheroni constant. Per bar when ``variance`` is the variance of per-bar
    Sharpe ratios. One trial selects nothing: 0."""
    n_trials = _positive_int(n_trials, "n_trials")
    if not (math.isfinite(variance) and variance >= 0.0):
        raise InvalidArgumentError(f"trial_variance: expected a finite number >= 0, got {variance!r}")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1.0 - g) * normal_quantile(1.0 - 1.0 / n_trials) + g * normal_quantile(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * z


def deflated_sharpe_ratio(returns: Any, trial_sharpes: Sequence[float] | np.ndarray | None = None, *,
                          n_trials: int | None = None, trial_variance: float | None = None) -> float:
    """Deflated Sharpe ratio of the chosen strategy's ``returns`` (Bailey & Lopez de Prado 2014):
    its PSR against the Sharpe ratio the best of N skill-less trials reaches by luck,

        DSR = PSR( expected_max_sharpe(N, V) )

    Give either ``trial_sharpes``, the per-bar Sharpe ratios of ALL trials tried (the chosen one
    included; N is their count, V their sample variance, ddof=1), or ``n_trials`` and
    ``trial_variance`` (the variance of the per-bar Sharpe ratios across the trials). With one
    trial there is no selection and the DSR is ``PSR(0)``."""
    if trial_sharpes is not None:
        if n_trials is not None or trial_variance is not None:
            raise InvalidArgumentError("trial_sharpes: give either trial_sharpes or n_trials with trial_variance, "
                                       "not both")
        s = _returns(trial_sharpes, "trial_sharpes", min_len=1)
        n_trials = len(s)
        trial_variance = float(np.var(s, ddof=1)) if len(s) > 1 else 0.0
    elif n_trials is None or trial_variance is None:
        raise InvalidArgumentError("trial_sharpes: give the trials' per-bar Sharpe ratios, or both n_trials and "
                                   "trial_variance")
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials, float(trial_variance)))


# --------------------------------------------------------------------------- PBO by CSCV


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting and the per-split details.

    One entry per CSCV split, in ``itertools.combinations(range(n_partitions), n_partitions // 2)``
    order of the in-sample partitions: ``selected`` the configuration best in sample,
    ``relative_rank`` its out-of-sample rank ``r / (N + 1)`` (r = 1 worst .. N best),
    ``logits`` ``log(w / (1 - w))``, and its performance in and out of sample."""

    pbo: float
    logits: np.ndarray
    relative_rank: np.ndarray
    selected: np.ndarray
    in_sample: np.ndarray
    out_of_sample: np.ndarray
    n_partitions: int
    n_configurations: int

    @property
    def n_combinations(self) -> int:
        return len(self.logits)

    def to_dict(self) -> dict[str, Any]:
        return {"pbo": self.pbo, "n_partitions": self.n_partitions, "n_configurations": self.n_configurations,
                "n_combinations": self.n_combinations, "logits": self.logits.tolist(),
                "relative_rank": self.relative_rank.tolist(), "selected": self.selected.tolist(),
                "in_sample": self.in_sample.tolist(), "out_of_sample": self.out_of_sample.tolist()}


Metric = str | Callable[[np.ndarray], np.ndarray]


def probability_of_backtest_overfitting(performance: Any, n_partitions: int = 16,
                                        metric: Metric = "sharpe") -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado & Zhu).

    ``performance`` is a ``[T, N]`` matrix: per-period returns (or per-period performance) of N
    configurations over the same T periods. Its rows are cut into ``n_partitions`` (S, even)
    contiguous blocks of equal size (``np.array_split``: sizes differ by at most one row when S
    does not divide T). For each of the C(S, S/2) ways to pick S/2 blocks as the in-sample half
    (the rest is out of sample): the configuration with the best in-sample ``metric`` is
    selected (the first one on a tie), its out-of-sample rank r among the N (1 worst, N best;
    ties share their average rank) gives ``w = r / (N + 1)`` and the logit ``log(w / (1 - w))``.
    PBO is the share of splits whose logit is <= 0: how often the in-sample winner does no
    better than the out-of-sample median.

    ``metric``: ``"sharpe"`` (per-bar Sharpe ratio of each column of a half, ``mean / std(ddof=1)``,
    0 for a constant column; the default, as in the paper), ``"mean"``, or a function mapping
    a ``[rows, N]`` half to ``N`` scores (higher is better).
    """
    try:
        m = np.asarray(performance, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"performance: expected a numeric [periods, configurations] matrix ({e})") from None
    if m.ndim != 2:
        raise InvalidArgumentError(f"performance: expected a [periods, configurations] matrix, got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise InvalidArgumentError(f"performance: need at least 2 configurations (columns) to select from, got {n}")
    if not np.all(np.isfinite(m)):
        raise InvalidArgumentError("performance: contains NaN or infinite values")
    s = _positive_int(n_partitions, "n_partitions", 2)
    if s % 2:
        raise InvalidArgumentError(f"n_partitions: must be even (two halves of S/2 partitions), got {s}")
    if s > t:
        raise InvalidArgumentError(f"n_partitions: {s} partitions need at least {s} periods (rows), got {t}")
    n_comb = math.comb(s, s // 2)
    if n_comb > MAX_PBO_COMBINATIONS:
        raise InvalidArgumentError(f"n_partitions: {s} gives {n_comb:,} splits (at most {MAX_PBO_COMBINATIONS:,}); "
                                   "use at most 22")
    bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(t), s)])
    in_mask = np.zeros((n_comb, s), dtype=bool)
    for i, combo in enumerate(itertools.combinations(range(s), s // 2)):
        in_mask[i, list(combo)] = True

    if callable(metric):
        is_perf, oos_perf = _custom_metric(m, bounds, in_mask, metric)
    elif metric in ("sharpe", "mean"):
        is_perf, oos_perf = _additive_metric(m, bounds, in_mask, metric)
    else:
        raise InvalidArgumentError(f"metric: expected 'sharpe', 'mean' or a function, got {metric!r}")

    rows = np.arange(n_comb)
    selected = np.argmax(is_perf, axis=1)
    chosen_oos = oos_perf[rows, selected]
    below = np.count_nonzero(oos_perf < chosen_oos[:, None], axis=1)
    tied = np.count_nonzero(oos_perf == chosen_oos[:, None], axis=1)  # includes the selected one itself
    rank = below + (tied + 1) / 2.0
    w = rank / (n + 1)
    logits = np.log(w / (1.0 - w))
    return PBOResult(pbo=float(np.mean(logits <= 0.0)), logits=logits, relative_rank=w, selected=selected,
                     in_sample=is_perf[rows, selected], out_of_sample=chosen_oos, n_partitions=s,
                     n_configurations=n)


def _additive_metric(m: np.ndarray, bounds: np.ndarray, in_mask: np.ndarray,
                     metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Both halves' metric for every split from per-partition sums, O(splits x S x N) instead of
    re-reading the rows of every half. Sums of squares are taken about each column's overall mean
    so the variance of a half does not cancel catastrophically."""
    centre = m.mean(axis=0)
    d = m - centre
    counts = np.diff(bounds).astype(np.float64)
    sums = np.add.reduceat(d, bounds[:-1], axis=0)              # [S, N]
    halves = (in_mask.astype(np.float64), (~in_mask).astype(np.float64))
    out = []
    for h in halves:
        k = h @ counts                                            # rows in the half, [C]
        dsum = h @ sums                                           # [C, N]
        mean = dsum / k[:, None] + centre
        if metric == "mean":
            out.append(mean)
            continue
        if k.min() < 2:
            raise InvalidArgumentError("n_partitions: with metric='sharpe' each half needs at least 2 periods "
                                       f"(have {int(k.min())}); use fewer partitions or more periods")
        sq = h @ np.add.reduceat(d * d, bounds[:-1], axis=0)      # sum of (x - centre)^2 over the half
        spread = sq - dsum * dsum / k[:, None]                    # (k - 1) x the half's variance
        var = np.maximum(spread, 0.0) / (k[:, None] - 1.0)
        sd = np.sqrt(np.where(var > 0.0, var, 1.0))
        sharpe = np.where(var > 0.0, mean / sd, 0.0)
        # Where the spread is within rounding of the cancellation (a half constant, or nearly, away
        # from the column's overall mean: a configuration idle there), the difference above is
        # noise. A half whose partitions' minima and maxima are all one value is constant: Sharpe 0;
        # any other such half is read again from its rows.
        cs, js = np.nonzero(spread <= 1e-9 * sq)
        if len(cs):
            cols, col_of = np.unique(js, return_inverse=True)      # only the columns concerned
            part_min = np.minimum.reduceat(m[:, cols], bounds[:-1], axis=0)[:, col_of].T   # [F, S]
            part_max = np.maximum.reduceat(m[:, cols], bounds[:-1], axis=0)[:, col_of].T
            inside = h[cs] > 0                                     # [F, S] the half's partitions
            lo = np.where(inside, part_min, np.inf).min(axis=1)
            hi = np.where(inside, part_max, -np.inf).max(axis=1)
            sharpe[cs[lo == hi], js[lo == hi]] = 0.0
            for c, j in zip(cs[lo != hi], js[lo != hi]):
                rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in np.flatnonzero(h[c] > 0)])
                sharpe[c, j] = moments(m[rows, j]).sharpe
        out.append(sharpe)
    return out[0], out[1]


def _custom_metric(m: np.ndarray, bounds: np.ndarray, in_mask: np.ndarray,
                   metric: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    parts = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    n = m.shape[1]
    is_perf = np.empty((len(in_mask), n))
    oos_perf = np.empty((len(in_mask), n))
    for i, mask in enumerate(in_mask):
        for target, half in ((is_perf, mask), (oos_perf, ~mask)):
            rows = np.concatenate([parts[j] for j in np.flatnonzero(half)])
            score = np.asarray(metric(m[rows]), dtype=np.float64)
            if score.shape != (n,) or not np.all(np.isfinite(score)):
                raise InvalidArgumentError(f"metric: expected {n} finite scores (one per configuration), got "
                                           f"shape {score.shape}")
            target[i] = score
    return is_perf, oos_perf


# --------------------------------------------------------------------------- p-values of excess returns


@dataclass(frozen=True)
class ResamplingTest:
    """One-sided test of H1 "mean excess return per bar > 0".

    ``statistic`` is the observed mean excess return per bar; ``n_resamples`` the resamples (or
    sign patterns) the p-value rests on; ``block_length`` the mean block length (stationary
    bootstrap) or the fixed block length (sign flip); ``exhaustive`` true when every sign
    pattern was enumerated (the p-value is then exact for the test, not a Monte Carlo estimate)."""

    method: str
    p_value: float
    statistic: float
    n_resamples: int
    block_length: float
    exhaustive: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_block_length(n: int) -> int:
    """``ceil(n ** (1/3))``: the rate at which the optimal block length of a block bootstrap of the
    mean grows with n (Politis & White 2004 give the constant from the data's autocorrelation;
    we use 1). 48 bars for a year of 5-minute bars: 4 hours, longer than the serial dependence
    of 5-minute returns and of most holding periods' P&L; pass a longer block length when
    positions are held for days."""
    return max(1, math.ceil(round(n ** (1.0 / 3.0), 9)))


def stationary_bootstrap_blocks(n: int, mean_block_length: float, n_resamples: int, seed: Seed = 0,
                                chunk_blocks: int = 1 << 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The random blocks of the stationary bootstrap (Politis & Romano 1994) of a series of ``n``,
    yielded in chunks of resamples as ``(starts, lengths)``, two int64 arrays ``[r, K]``.

    A resample is the series read circularly in blocks: block k starts at ``starts[., k]``
    (uniform on 0..n-1) and has a geometric length with mean ``mean_block_length`` (P(len = j)
    = p (1 - p)^(j-1), p = 1 / mean_block_length), drawn as ``1 + floor(E / -log(1 - p))`` with
    E standard exponential. Blocks are laid end to end until n values are covered; the block that
    crosses n is cut short, later ones get length 0, so every row's lengths sum to n. K is
    enough blocks for all rows (more are drawn in the rare chunk where it is not).
    ``bootstrap_pvalue`` consumes exactly this iterator, so passing the same seed reproduces
    its resamples.
    """
    n = _positive_int(n, "n")
    n_resamples = _positive_int(n_resamples, "n_resamples")
    if not (math.isfinite(mean_block_length) and mean_block_length >= 1.0):
        raise InvalidArgumentError(f"mean_block_length: expected a number >= 1, got {mean_block_length!r}")
    rng = _rng(seed)
    p = 1.0 / float(mean_block_length)
    scale = -1.0 / math.log1p(-p) if p < 1.0 else 0.0
    blocks = n * p
    k = min(n, math.ceil(blocks + 6.0 * math.sqrt(blocks * (1.0 - p)) + 8.0))
    per_chunk = max(1, chunk_blocks // k)

    def draw(r: int) -> tuple[np.ndarray, np.ndarray]:
        e = rng.standard_exponential((r, k))
        e *= scale
        np.minimum(e, n, out=e)  # a length over n is cut to n anyway; keeps the cumulative sums small
        lengths = e.astype(np.int64)
        lengths += 1
        return rng.integers(0, n, size=(r, k)), lengths

    done = 0
    while done < n_resamples:
        r = min(per_chunk, n_resamples - done)
        starts, lengths = draw(r)
        ends = np.cumsum(lengths, axis=1)
        while ends[:, -1].min() < n:  # some row not yet covered: more blocks for the whole chunk
            more_starts, more_lengths = draw(r)
            starts = np.hstack((starts, more_starts))
            lengths = np.hstack((lengths, more_lengths))
            ends = np.cumsum(lengths, axis=1)
        left = np.subtract(n, ends, out=ends)   # n - end of each block ...
        left += lengths                          # ... + its length: what is left of n where it starts
        yield starts, np.clip(left, 0, lengths, out=left)
        done += r


def block_resample_means(x: Any, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Means of the circular block resamples of ``x`` given by ``starts`` and ``lengths`` (``[r, K]``,
    each row's lengths summing to ``len(x)``), without building them: a block's sum is a
    difference of two entries of the cumulative sum of ``x`` repeated twice, so a resample costs
    O(blocks), not O(n)."""
    x = _returns(x, "x", min_len=1)
    return _means_from_cumsum(_circular_cumsum(x), np.asarray(starts), np.asarray(lengths), len(x))


def _circular_cumsum(x: np.ndarray) -> np.ndarray:
    c = np.empty(2 * len(x) + 1)
    c[0] = 0.0
    np.cumsum(np.concatenate((x, x)), out=c[1:])
    return c


def _means_from_cumsum(c: np.ndarray, starts: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    # every block length is <= n (only the last block of a row can reach n), so start + length <= 2n
    block_sums = c[starts + lengths]
    block_sums -= c[starts]
    return block_sums.sum(axis=1) / n


def bootstrap_pvalue(returns: Any, benchmark: Any | None = None, *, n_resamples: int = DEFAULT_RESAMPLES,
                     mean_block_length: float | None = None, seed: Seed = 0) -> ResamplingTest:
    """p-value of H1 "the strategy's mean excess return per bar is > 0" by the stationary
    bootstrap (Politis & Romano 1994) of the per-bar excess returns ``returns - benchmark`` (the
    returns themselves when ``benchmark`` is None; both on the same bars).

    Under H0 the mean excess is 0, so the bootstrap resamples the *centred* excess returns
    ``d - mean(d)`` (their circular resamples have mean exactly 0 in expectation) and
    ``p = (1 + #{resample mean >= mean(d)}) / (n_resamples + 1)``. Blocks keep the serial
    dependence (volatility clustering, positions held over many bars) that an i.i.d. bootstrap
    would destroy; ``mean_block_length`` defaults to ``default_block_length(n)``. Seeded:
    the same inputs and seed give the same p-value.
    """
    d = _excess(returns, benchmark)
    n = len(d)
    block = float(default_block_length(n) if mean_block_length is None else mean_block_length)
    n_resamples = _positive_int(n_resamples, "n_resamples")
    observed = float(d.mean())
    c = _circular_cumsum(d - observed)
    count = 0
    for starts, lengths in stationary_bootstrap_blocks(n, block, n_resamples, _rng(seed)):
        count += int(np.count_nonzero(_means_from_cumsum(c, starts, lengths, n) >= observed))
    return ResamplingTest("stationary-bootstrap", (1 + count) / (n_resamples + 1), observed, n_resamples, block)


MAX_EXHAUSTIVE_BLOCKS = 20
"""At most 2**20 sign patterns are enumerated; more blocks are sampled."""


def sign_flip_pvalue(returns: Any, benchmark: Any | None = None, *, block_length: int | None = None,
                     n_resamples: int = DEFAULT_RESAMPLES, seed: Seed = 0) -> ResamplingTest:
    """p-value of H1 "mean excess return per bar > 0" by randomly flipping the signs of block sums.

    The excess returns are cut into contiguous blocks of ``block_length`` bars (default
    ``default_block_length(n)``; the last block may be shorter) with sums S_b. If the excess
    returns have mean 0 and blocks are independent and symmetric about 0, every sign pattern
    ``sum_b e_b S_b`` (e_b = +-1) is as likely as the observed ``sum_b S_b``. With B blocks:
    when ``2**B <= n_resamples`` all patterns are enumerated and ``p = #{pattern >= observed} /
    2**B`` (exact; ``n_resamples`` reports 2**B); otherwise ``n_resamples`` random patterns give
    ``p = (1 + count) / (n_resamples + 1)``. Sums within 1e-12 (relative) of the observed one count
    as ties (>=). A simpler test than the bootstrap, and it needs the symmetry assumption.
    """
    d = _excess(returns, benchmark)
    n = len(d)
    length = default_block_length(n) if block_length is None else _positive_int(block_length, "block_length")
    n_resamples = _positive_int(n_resamples, "n_resamples")
    sums = np.add.reduceat(d, np.arange(0, n, length))
    b = len(sums)
    total = float(sums.sum())
    tol = 1e-12 * float(np.abs(sums).sum())
    observed = float(d.mean())
    if b <= MAX_EXHAUSTIVE_BLOCKS and 2**b <= n_resamples:
        patterns = (np.arange(2**b)[:, None] >> np.arange(b)[None, :]) & 1   # bit j of pattern i: block j kept
        flipped = 2.0 * (patterns.astype(np.float64) @ sums) - total
        p = np.count_nonzero(flipped >= total - tol) / 2**b
        return ResamplingTest("sign-flip", float(p), observed, 2**b, float(length), exhaustive=True)
    rng = _rng(seed)
    per_chunk = max(1, (1 << 20) // b)
    count, done = 0, 0
    while done < n_resamples:
        r = min(per_chunk, n_resamples - done)
        keep = np.unpackbits(rng.integers(0, 256, size=(r, (b + 7) // 8), dtype=np.uint8), axis=1, count=b)
        flipped = 2.0 * (keep.astype(np.float64) @ sums) - total
        count += int(np.count_nonzero(flipped >= total - tol))
        done += r
    return ResamplingTest("sign-flip", (1 + count) / (n_resamples + 1), observed, n_resamples, float(length))


# --------------------------------------------------------------------------- drawdown durations


@dataclass(frozen=True)
class DrawdownDurations:
    """How long an equity curve spent under water.

    ``longest_underwater_bars``: the longest run of consecutive bars whose equity is below the
    highest equity before them (a run still open at the end counts). ``max_drawdown``: the
    deepest fall ``1 - equity / peak`` (as the backtester's metric), reached at ``trough_bar``;
    ``time_to_recovery_bars``: bars from that trough to the first bar whose equity is back at
    or above the peak before it, None when it never recovered (``recovered`` false). Bars index
    the equity curve as given (``equity_curve`` puts the starting equity at bar 0).
    """

    longest_underwater_bars: int
    max_drawdown: float
    trough_bar: int
    time_to_recovery_bars: int | None

    @property
    def recovered(self) -> bool:
        return self.time_to_recovery_bars is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recovered": self.recovered}


def equity_curve(returns: Any) -> np.ndarray:
    """Equity from per-bar simple returns, starting at 1 before the first bar: ``[1, cumprod(1 + r)]``."""
    r = _returns(returns, "returns", min_len=1)
    return np.concatenate(([1.0], np.cumprod(1.0 + r)))


def drawdown_durations(equity: Any) -> DrawdownDurations:
    """Under-water durations of an equity curve (positive values, one per bar); see ``DrawdownDurations``."""
    eq = _returns(equity, "equity", min_len=1)
    if np.any(eq <= 0.0):
        raise InvalidArgumentError(f"equity: expected positive values, value {int(np.argmax(eq <= 0))} is "
                                   f"{eq[np.argmax(eq <= 0)]}")
    peak = np.maximum.accumulate(eq)
    under = eq < peak
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int((run_ends - run_starts).max()) if len(run_starts) else 0
    dd = 1.0 - eq / peak
    trough = int(np.argmax(dd))
    if dd[trough] == 0.0:
        return DrawdownDurations(longest, 0.0, 0, 0)
    back = np.flatnonzero(eq[trough + 1:] >= peak[trough])
    recovery = int(back[0]) + 1 if len(back) else None
    return DrawdownDurations(longest, float(dd[trough]), trough, recovery)


def drawdown_durations_from_returns(returns: Any) -> DrawdownDurations:
    """``drawdown_durations(equity_curve(returns))``: bar 0 is the starting equity, bar i the equity
    after return i - 1, so a loss on the first return is already under water."""
    return drawdown_durations(equity_curve(returns))


# --------------------------------------------------------------------------- across seeds


@dataclass(frozen=True)
class SeedSummary:
    """A metric over training seeds: mean, sample std (ddof=1) and the normal-approximation
    interval ``mean +- z * std / sqrt(n)`` for the mean over seeds, z = Phi^-1((1 + confidence) / 2).
    ``std``, ``low`` and ``high`` are None with one seed (no spread to measure)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def across_seeds(values: Any, confidence: float = 0.95) -> SeedSummary:
    """Mean, std and a normal-approximation confidence interval of one metric over seeds.

    The interval is for the expected metric of the training recipe over seeds (how much of a
    result is the seed), not for a single future run. With few seeds the normal quantile makes it
    too narrow (Student's t with n - 1 degrees of freedom would be wider: 2.78 instead of 1.96
    for 5 seeds at 95%); read it as a rough spread, and run more seeds for a firm claim."""
    x = _returns(values, "values", min_len=1)
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise InvalidArgumentError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    mean = float(x.mean())
    if len(x) < 2:
        return SeedSummary(1, mean, None, None, None, float(confidence))
    std = float(np.std(x, ddof=1))
    half = normal_quantile(0.5 + confidence / 2.0) * std / math.sqrt(len(x))
    return SeedSummary(len(x), mean, std, mean - half, mean + half, float(confidence))


__all__ = [
    "DEFAULT_RESAMPLES",
    "EULER_MASCHERONI",
    "DrawdownDurations",
    "PBOResult",
    "ResamplingTest",
    "ReturnMoments",
    "SeedSummary",
    "across_seeds",
    "block_resample_means",
    "bootstrap_pvalue",
    "deannualise_sharpe",
    "default_block_length",
    "deflated_sharpe_ratio",
    "drawdown_durations",
    "drawdown_durations_from_returns",
    "equity_curve",
    "expected_max_sharpe",
    "moments",
    "normal_cdf",
    "normal_quantile",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "psr_from_moments",
    "sharpe",
    "sign_flip_pvalue",
    "stationary_bootstrap_blocks",
]
