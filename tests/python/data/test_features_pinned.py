"""Pinned values for the features test_features.py does not recompute by hand (the recursive
RSI, MACD, EMA slope and ATR, the rolling skewness and kurtosis, the EKF-derived columns), the
first valid bar of the windowed features, flat-bar edge cases, per-symbol independence in a
prepared directory, and the train-only standardisation (large inputs, clip, eps, precision).

Every expected value is computed here independently of the implementation (plain Python loops
and numpy over explicit windows), never read back from ``compute_features`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari.data.features import FEATURE_NAMES, WARMUP, compute_features
from himari.data.frame import ts_ns
from himari.data.synthetic import SynthConfig, synthesize

N = WARMUP + 300
ROWS = (WARMUP, WARMUP + 137, N - 1)
Series = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def series() -> Series:
    df = synthesize(SynthConfig(bars=N, seed=23, jump_rate=0.005))
    o, h, l, c, v = (df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))
    return o, h, l, c, v, ts_ns(df["timestamp"])


@pytest.fixture(scope="module")
def full(series: Series) -> np.ndarray:
    return compute_features(*series)


def _col(feats: np.ndarray, name: str) -> np.ndarray:
    return feats[:, FEATURE_NAMES.index(name)]


def _ema_loop(x: np.ndarray, alpha: float) -> np.ndarray:
    """y[0] = x[0], y[t] = y[t-1] + alpha (x[t] - y[t-1]): the plain recursive EMA."""
    y = np.empty(len(x))
    y[0] = x[0]
    for t in range(1, len(x)):
        y[t] = y[t - 1] + alpha * (x[t] - y[t - 1])
    return y


def _log_returns(c: np.ndarray) -> np.ndarray:
    """r[t] = log(c[t] / c[t-1]), r[0] = 0 (no return before the first bar)."""
    r = np.zeros(len(c))
    for t in range(1, len(c)):
        r[t] = math.log(c[t] / c[t - 1])
    return r


def test_rsi_is_wilder_smoothing_rescaled_to_plus_minus_one(series: Series, full: np.ndarray) -> None:
    """Catches an RSI smoothed with span=w (alpha 2/(w+1)) instead of Wilder's alpha 1/w, an RSI
    left on [0, 1] (g / (g + l)) instead of (g - l) / (g + l), and a first return that is not 0
    (still visible at the first valid bars, 70 and 240)."""
    r = _log_returns(series[3])
    gain, loss = np.maximum(r, 0.0), np.maximum(-r, 0.0)
    for w, first in ((14, 70), (48, 240)):
        g, lo = _ema_loop(gain, 1.0 / w), _ema_loop(loss, 1.0 / w)
        for t in (first, *ROWS):
            want = (g[t] - lo[t]) / (g[t] + lo[t])
            assert _col(full, f"rsi_{w}")[t] == pytest.approx(want, rel=1e-9, abs=1e-12), (w, t)
    rsi = _col(full, "rsi_14")[WARMUP:]
    assert rsi.min() < 0 < rsi.max() and np.abs(rsi).max() <= 1.0


def test_macd_signal_hist_and_ema_slope_by_hand(series: Series, full: np.ndarray) -> None:
    """Catches wrong EMA spans (12/26 for MACD, 9 for the signal, 48 for the slope), a MACD over
    log prices instead of prices, and an EMA slope over 11 or 13 bars instead of 12."""
    c = series[3]
    fast, slow = _ema_loop(c, 2 / 13), _ema_loop(c, 2 / 27)
    macd = fast / slow - 1.0
    signal = _ema_loop(macd, 2 / 10)
    ema48 = np.log(_ema_loop(c, 2 / 49))
    for t in (175, *ROWS):  # the first valid bar of the signal, then later ones
        assert _col(full, "macd")[t] == pytest.approx(macd[t], rel=1e-9, abs=1e-15), t
        assert _col(full, "macd_signal")[t] == pytest.approx(signal[t], rel=1e-9, abs=1e-15), t
        assert _col(full, "macd_hist")[t] == pytest.approx(macd[t] - signal[t], rel=1e-9, abs=1e-15), t
    for t in (252, *ROWS):
        assert _col(full, "ema_slope_48")[t] == pytest.approx(ema48[t] - ema48[t - 12], rel=1e-9, abs=1e-15), t


def test_atr_uses_true_range_with_the_previous_close(series: Series, full: np.ndarray) -> None:
    """Catches an ATR over the high-low range only (ignoring gaps from the previous close), one
    whose true range reads the next bar's close, and a Wilder alpha other than 1/14 and 1/48."""
    _, h, l, c, _, _ = series
    tr = np.empty(len(c))
    tr[0] = math.log(h[0] / l[0])
    for t in range(1, len(c)):
        tr[t] = math.log(max(h[t], c[t - 1]) / min(l[t], c[t - 1]))
    assert (tr > np.log(h / l) + 1e-12).any()  # the data has gaps, so the previous close matters
    for w, first in ((14, 70), (48, 240)):
        atr = _ema_loop(tr, 1.0 / w)
        for t in (first, *ROWS):
            assert _col(full, f"atr_{w}")[t] == pytest.approx(atr[t], rel=1e-9), (w, t)


def _skew_kurt(x: np.ndarray) -> tuple[float, float]:
    """Bias-corrected sample skewness G1 and excess kurtosis G2 (the adjusted Fisher-Pearson
    estimators), from central moments written out by hand."""
    n = len(x)
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    g1, g2 = m3 / m2**1.5, m4 / m2**2 - 3.0
    return (math.sqrt(n * (n - 1)) / (n - 2) * g1,
            (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0))


def test_rolling_skew_and_excess_kurtosis_over_288_returns(series: Series, full: np.ndarray) -> None:
    """Catches a 287- or 289-return window and a raw (non-excess) kurtosis."""
    c = series[3]
    r = np.diff(np.log(c))  # r[k - 1] is the return of bar k
    for t in ROWS:
        skew, kurt = _skew_kurt(r[t - 288:t])
        assert _col(full, "skew_288")[t] == pytest.approx(skew, rel=1e-6, abs=1e-9), t
        assert _col(full, "kurt_288")[t] == pytest.approx(kurt, rel=1e-6, abs=1e-9), t


def test_ekf_columns_derive_from_the_native_states() -> None:
    """The five EKF columns from ``engine.ekf``'s (level, velocity, acceleration, log variance):
    catches a log volatility that is the log variance (no /2), a clip other than [-15, -1] (40
    bars alternately doubling and halving drive the filter's variance past the upper bound) and a
    trend SNR divided by the variance, or by the unclipped volatility."""
    from himari import engine

    df = synthesize(SynthConfig(bars=WARMUP + 200, seed=5))
    c, v = df["close"].to_numpy(np.float64).copy(), df["volume"].to_numpy(np.float64)
    for j in range(WARMUP + 50, WARMUP + 90):
        c[j:] *= 2.0 if j % 2 else 0.5
    o = np.r_[c[0], c[:-1]]
    h, l = np.maximum(o, c) * 1.001, np.minimum(o, c) * 0.999
    feats = compute_features(o, h, l, c, v, ts_ns(df["timestamp"]))
    states = np.asarray(engine.ekf(c), dtype=np.float64)
    rows = np.arange(WARMUP, len(c))
    half = states[rows, 3] / 2.0
    assert half.max() > -1.0 and half.min() < -2.0  # the clip's upper bound is exercised
    log_vol = np.array([min(max(x, -15.0), -1.0) for x in half])
    np.testing.assert_allclose(_col(feats, "ekf_log_vol")[rows], log_vol, rtol=1e-12)
    np.testing.assert_allclose(_col(feats, "ekf_level_gap")[rows], np.log(c[rows]) - states[rows, 0], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(_col(feats, "ekf_velocity")[rows], states[rows, 1], rtol=1e-12)
    np.testing.assert_allclose(_col(feats, "ekf_acceleration")[rows], states[rows, 2], rtol=1e-12)
    np.testing.assert_allclose(_col(feats, "ekf_trend_snr")[rows], states[rows, 1] / np.exp(log_vol), rtol=1e-9)


# first valid bar of each windowed feature, from its definition: a window of w one-bar returns
# is full at bar w (returns start at bar 1), a window of w bar values at bar w - 1
FIRST_VALID = {
    **{f"ret_{k}": k for k in (1, 3, 6, 12, 24, 48, 96, 288)},
    "ret_1_z": 48, "skew_288": 288, "kurt_288": 288,
    "rv_12": 12, "rv_48": 48, "rv_288": 288, "rv_1440": 1440, "rv_ratio_12_288": 288,
    "parkinson_48": 47, "downside_vol_48": 48,
    "hl_range": 0, "body": 0, "upper_wick": 0, "lower_wick": 0, "close_location": 0, "gap": 1,
    "range_z_48": 47, "vol_z_12": 11, "vol_z_48": 47, "vol_z_288": 287, "vol_rel_1": 287,
    "vol_rel_12": 287, "signed_vol_48": 48, "stoch_k_14": 13, "efficiency_ratio_48": 48,
    "bb_pos_20": 19, "bb_width_20": 19, "bb_pos_96": 95,
    "sma_dist_20": 19, "sma_dist_50": 49, "sma_dist_200": 199,
    "tod_sin": 0, "tod_cos": 0, "dow_sin": 0, "dow_cos": 0,
    "drawdown_288": 287, "drawdown_1440": 1439, "runup_288": 287, "up_fraction_48": 48,
}


def test_windowed_features_are_valid_from_their_first_full_window(series: Series, full: np.ndarray) -> None:
    """A windowed feature is NaN exactly until its window is full: catches a look-back one bar too
    late (e.g. parkinson_48 at 48, losing a valid row) or too early (a warm-up row given a value
    from a partial window)."""
    assert len(FIRST_VALID) == 47
    for name, first in FIRST_VALID.items():
        col = _col(full, name)
        assert np.isnan(col[:first]).all(), name
        assert np.isfinite(col[first]), name


def test_flat_bars_are_not_up_bars_and_flat_windows_have_zero_skew() -> None:
    """Hand-worked flat stretch: a bar whose close equals the previous close is not an up bar
    (catches r >= 0), and skew/kurtosis over a window of 288 zero returns are 0 from the first
    valid bar on (catches the NaN-to-0 repair starting one bar late)."""
    n = 400
    c = np.full(n, 100.0)
    c[340:] = 100.0 * np.exp(0.001 * np.arange(1, 61))  # 60 up bars at the end
    o = np.r_[c[0], c[:-1]]
    h, l = np.maximum(o, c) * 1.001, np.minimum(o, c) * 0.999
    v = np.ones(n)
    ts = np.arange(n, dtype=np.int64) * 300 * 10**9
    feats = compute_features(o, h, l, c, v, ts)
    up = _col(feats, "up_fraction_48")
    assert up[48] == 0.0 and up[339] == 0.0
    assert up[340] == pytest.approx(1 / 48) and up[360] == pytest.approx(21 / 48)
    assert up[399] == 1.0
    for name in ("skew_288", "kurt_288"):
        col = _col(feats, name)
        assert np.isnan(col[287]) and (col[288:340] == 0.0).all() and col[340] != 0.0, name


def test_second_symbol_features_equal_those_of_its_bars_alone(tmp_path) -> None:
    """Two symbols prepared together: every row of the second symbol equals the features of its
    own bars computed alone (warm-up rows 0). Catches features computed over the stacked series,
    where the first symbol's bars bleed into the second's windows and EMA/EKF states."""
    from himari.data.ingest import import_bars
    from himari.data.pipeline import prepare
    from himari.data.prepared import PreparedData
    from himari.data.synthetic import write_synthetic

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_synthetic(a, SynthConfig(bars=WARMUP + 60, seed=1, symbol="AAA"))
    write_synthetic(b, SynthConfig(bars=WARMUP + 60, seed=2, symbol="BBB", initial_price=3.0))
    import_bars([a, b], tmp_path / "both.parquet")
    meta = prepare(tmp_path / "both.parquet", tmp_path / "p")
    seg = meta["segments"][1]
    d = PreparedData(tmp_path / "p")
    bars = synthesize(SynthConfig(bars=WARMUP + 60, seed=2, symbol="BBB", initial_price=3.0))
    alone = compute_features(*(bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")),
                             ts_ns(bars["timestamp"]))
    want = np.where(np.arange(len(alone))[:, None] < WARMUP, 0.0, alone).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(d.features[seg["start"]:seg["stop"]]), want)


# ----------------------------------------------------------------------------------------------
# standardisation: train rows only


def test_fit_on_more_than_one_block_of_float32_rows() -> None:
    """Over 2.5 blocks (BLOCK = 65536) of float32 rows with a large offset: mean and population
    std equal a float64 computation. Catches float32 accumulation, a mean divided by the block
    length, and a sum of squares over the first block only."""
    from himari.data.normalize import BLOCK, fit_zscore

    rng = np.random.default_rng(0)
    n = 2 * BLOCK + BLOCK // 2 + 7
    x = np.empty((n, 2), dtype=np.float32)
    x[:, 0] = 1000.0 + rng.standard_normal(n).astype(np.float32)
    x[:, 1] = np.where(np.arange(n) < BLOCK, 0.0, 4.0)  # first block 0, the rest 4
    mean, std = fit_zscore(x)
    x64 = x.astype(np.float64)
    m0 = math.fsum(x64[:, 0]) / n
    m1 = 4.0 * (n - BLOCK) / n
    assert mean[0] == pytest.approx(m0, rel=1e-12) and mean[1] == pytest.approx(m1, rel=1e-12)
    assert std[0] == pytest.approx(math.sqrt(math.fsum((x64[:, 0] - m0) ** 2) / n), rel=1e-9)
    assert std[1] == pytest.approx(math.sqrt(BLOCK * m1**2 + (n - BLOCK) * (4.0 - m1) ** 2) / math.sqrt(n), rel=1e-12)


def test_fit_statistics_ignore_rows_outside_the_train_rows() -> None:
    """Invariance: the statistics fitted on the train rows are the same whatever the validation
    and test rows hold, and standardising row t uses that row alone (changing later rows does not
    move it). Catches a fit on all rows or on train + validation."""
    from himari.data.normalize import apply_zscore, fit_zscore

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 3)).astype(np.float32)
    train = np.arange(200)
    mean, std = fit_zscore(x[train])
    y = x.copy()
    y[200:] = 1e4 * rng.standard_normal((100, 3)).astype(np.float32)
    mean2, std2 = fit_zscore(y[train])
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(std, std2)
    z, z2 = apply_zscore(x, mean, std), apply_zscore(y, mean, std)
    np.testing.assert_array_equal(z[:200], z2[:200])
    want = (x[:200].astype(np.float64) - x[:200].astype(np.float64).mean(0)) / x[:200].astype(np.float64).std(0)
    np.testing.assert_allclose(z[:200], want, rtol=1e-5, atol=1e-6)


def test_clip_is_symmetric_and_zero_disables_it() -> None:
    """Catches a clip applied to one side only and a clip of 0 that clips everything."""
    from himari.data.normalize import apply_zscore

    mean, std = np.array([1.0]), np.array([2.0])
    x = np.array([[-99.0], [-5.0], [1.0], [7.0], [101.0]])
    np.testing.assert_array_equal(apply_zscore(x, mean, std, clip=3.0)[:, 0], np.float32([-3.0, -3.0, 0.0, 3.0, 3.0]))
    np.testing.assert_array_equal(apply_zscore(x, mean, std, clip=0.0)[:, 0], np.float32([-50.0, -3.0, 0.0, 3.0, 50.0]))


def test_eps_threshold_and_small_but_real_std() -> None:
    """A std at or below eps becomes 1 (the column is passed centred); one above is used as is,
    with no epsilon added in the transform. Catches an eps ignored (only an exact 0 -> 1), a std
    equal to eps kept (``>=`` for ``>``) and a transform dividing by std + 1e-8."""
    from himari.data.normalize import apply_zscore, fit_zscore

    x = np.array([[5.0, 1.0, 0.0], [5.0 + 2e-9, 1.0 + 2e-6, 0.0]])  # stds 1e-9, 1e-6, 0
    mean, std = fit_zscore(x)
    np.testing.assert_allclose(std, [1.0, 1e-6, 1.0], rtol=1e-6)
    z = apply_zscore(x, mean, std)
    np.testing.assert_allclose(z[:, 0], [-1e-9, 1e-9], atol=1e-12)
    np.testing.assert_allclose(z[:, 1], [-1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 2], [0.0, 0.0])
    assert fit_zscore(x, eps=2e-6)[1][1] == 1.0
    tiny = np.array([[0.0], [2.0**-26]])  # population std exactly 2^-27
    assert fit_zscore(tiny, eps=2.0**-27)[1][0] == 1.0  # at eps: becomes 1
    assert fit_zscore(tiny, eps=2.0**-28)[1][0] == 2.0**-27


def test_transform_is_computed_in_float64_before_the_float32_result() -> None:
    """Values near a large mean: (x - mean) / std in float64, then rounded to float32. Catches
    arithmetic in float32, where the mean 1e6 + 1/32 rounds to a neighbouring float32 and shifts
    every value by half a standard deviation."""
    from himari.data.normalize import apply_zscore

    mean, std = np.array([1_000_000.03125]), np.array([0.0625])
    x = np.array([[1_000_000.0], [1_000_000.0625], [1_000_000.125]])
    np.testing.assert_allclose(apply_zscore(x, mean, std)[:, 0], [-0.5, 0.5, 1.5], rtol=1e-6)
