"""The 60 default features: one definition, warm-up, no look-ahead, scale-freeness, and 45 of them by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari.data.features import FEATURE_DIM, FEATURE_NAMES, FEATURES, WARMUP, compute_features
from himari.data.frame import ts_ns
from himari.data.synthetic import SynthConfig, synthesize

N = WARMUP + 700


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, ...]:
    df = synthesize(SynthConfig(bars=N, seed=11, jump_rate=0.005))
    return tuple(df[k].to_numpy() for k in ("open", "high", "low", "close", "volume")) + (ts_ns(df["timestamp"]),)


@pytest.fixture(scope="module")
def full(series) -> np.ndarray:
    return compute_features(*series)


def test_sixty_named_described_features():
    assert FEATURE_DIM == 60 == len(set(FEATURE_NAMES))
    for f in FEATURES:
        assert f.name.isidentifier() and f.description and "\n" not in f.description
        assert 0 <= f.lookback <= WARMUP
    assert WARMUP == max(f.lookback for f in FEATURES)


def test_warmup_nan_before_finite_after(full):
    assert full.shape == (N, 60)
    for j, f in enumerate(FEATURES):
        col = full[:, j]
        assert np.isnan(col[: f.lookback]).all(), f.name
        assert np.isfinite(col[f.lookback:]).all(), f.name
    assert np.isfinite(full[WARMUP:]).all()


@settings(max_examples=100, deadline=None, derandomize=True)
@given(t=st.integers(min_value=0, max_value=N - 2))
def test_no_look_ahead_for_every_feature(series, full, t):
    """Features at bar t computed from bars 0..t equal those computed from the whole series."""
    cut = compute_features(*(a[: t + 1] for a in series))
    np.testing.assert_array_equal(cut[t], full[t], err_msg=f"look-ahead at bar {t}")


@settings(max_examples=25, deadline=None, derandomize=True)
@given(t=st.integers(min_value=WARMUP, max_value=N - 2), seed=st.integers(0, 2**16))
def test_future_bars_do_not_move_the_past(series, full, t, seed):
    """Replacing every bar after t by different (valid) bars leaves rows 0..t unchanged."""
    other = synthesize(SynthConfig(bars=N, seed=seed + 1000, initial_price=50.0))
    arrays = [a.copy() for a in series]
    for k, name in enumerate(("open", "high", "low", "close", "volume")):
        arrays[k][t + 1:] = other[name].to_numpy()[t + 1:]
    changed = compute_features(*arrays)
    np.testing.assert_array_equal(changed[: t + 1], full[: t + 1])


def test_scale_free(series, full):
    """Prices x1000 and volume x7 give the same features (up to float rounding)."""
    o, h, l, c, v, ts = series
    scaled = compute_features(o * 1000, h * 1000, l * 1000, c * 1000, v * 7, ts)
    np.testing.assert_allclose(scaled[WARMUP:], full[WARMUP:], rtol=1e-6, atol=1e-9)


def test_flat_zero_volume_bars_stay_finite(series):
    """A trading halt (flat bars, zero volume) gives defined values, not NaN or inf."""
    arrays = [a.copy() for a in series]
    halt = slice(WARMUP + 100, WARMUP + 400)
    price = arrays[3][halt.start - 1]
    for k in range(4):
        arrays[k][halt] = price
    arrays[4][halt] = 0.0
    out = compute_features(*arrays)
    assert np.isfinite(out[WARMUP:]).all()


def test_length_mismatch_is_an_error(series):
    from himari.errors import DataError

    with pytest.raises(DataError):
        compute_features(series[0][:-1], *series[1:])


def _by_hand(o, h, l, c, v, ts, t: int) -> dict[str, float]:
    """Features of row t written out from their descriptions with plain numpy over explicit
    windows (no pandas rolling, no shared helpers): an independent check of the definitions."""
    lc = np.log(c)
    r = np.diff(lc)  # r[k - 1] is the return of bar k

    def rets(w: int) -> np.ndarray:  # the last w one-bar returns up to bar t
        return r[t - w:t]

    def pstd(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean((x - x.mean()) ** 2)))

    hl = np.log(h / l)
    out = {f"ret_{k}": lc[t] - lc[t - k] for k in (1, 3, 6, 12, 24, 48, 96, 288)}
    out.update({f"rv_{w}": pstd(rets(w)) for w in (12, 48, 288, 1440)})
    out["ret_1_z"] = r[t - 1] / pstd(rets(48))
    out["rv_ratio_12_288"] = pstd(rets(12)) / pstd(rets(288))
    out["parkinson_48"] = np.sqrt(np.mean(hl[t - 47:t + 1] ** 2) / (4 * np.log(2)))
    out["downside_vol_48"] = np.sqrt(np.mean(np.minimum(rets(48), 0) ** 2))
    out["hl_range"] = hl[t]
    out["body"] = np.log(c[t] / o[t])
    out["upper_wick"] = np.log(h[t] / max(o[t], c[t]))
    out["lower_wick"] = np.log(min(o[t], c[t]) / l[t])
    out["close_location"] = (2 * c[t] - h[t] - l[t]) / (h[t] - l[t])
    out["gap"] = np.log(o[t] / c[t - 1])
    out["range_z_48"] = (hl[t] - hl[t - 47:t + 1].mean()) / pstd(hl[t - 47:t + 1])
    for w in (12, 48, 288):
        win = v[t - w + 1:t + 1]
        out[f"vol_z_{w}"] = (v[t] - win.mean()) / pstd(win)
    out["vol_rel_1"] = np.log1p(v[t] / v[t - 287:t + 1].mean())
    out["vol_rel_12"] = np.log1p(v[t - 11:t + 1].mean() / v[t - 287:t + 1].mean())
    out["signed_vol_48"] = np.sum(np.sign(rets(48)) * v[t - 47:t + 1]) / np.sum(v[t - 47:t + 1])
    lo14, hi14 = l[t - 13:t + 1].min(), h[t - 13:t + 1].max()
    out["stoch_k_14"] = (2 * c[t] - lo14 - hi14) / (hi14 - lo14)
    out["efficiency_ratio_48"] = abs(lc[t] - lc[t - 48]) / np.sum(np.abs(rets(48)))
    for w in (20, 96):
        win = c[t - w + 1:t + 1]
        out[f"bb_pos_{w}"] = (c[t] - win.mean()) / (2 * pstd(win))
    out["bb_width_20"] = 4 * pstd(c[t - 19:t + 1]) / c[t - 19:t + 1].mean()
    for w in (20, 50, 200):
        out[f"sma_dist_{w}"] = lc[t] - np.log(c[t - w + 1:t + 1].mean())
    out["drawdown_288"] = lc[t] - np.log(h[t - 287:t + 1].max())
    out["drawdown_1440"] = lc[t] - np.log(h[t - 1439:t + 1].max())
    out["runup_288"] = lc[t] - np.log(l[t - 287:t + 1].min())
    out["up_fraction_48"] = np.mean(rets(48) > 0)
    secs = int(ts[t]) // 10**9
    day = (secs % 86400) / 86400
    week = ((secs // 86400 + 3) % 7 + day) / 7  # Monday 00:00 UTC = 0
    out.update(tod_sin=np.sin(2 * np.pi * day), tod_cos=np.cos(2 * np.pi * day),
               dow_sin=np.sin(2 * np.pi * week), dow_cos=np.cos(2 * np.pi * week))
    return out


def test_windowed_features_equal_their_definitions_by_hand(series, full):
    """45 of the 60 features recomputed by hand at three rows; not here: the recursive ones (RSI,
    MACD, the EMA slope and ATR, exponentially weighted), the EKF's five (the EKF has its own
    reference tests) and the rolling skewness and kurtosis."""
    for t in (WARMUP, WARMUP + 333, N - 1):
        want = _by_hand(*series, t)
        assert len(want) == 45
        for name, value in want.items():
            got = full[t, FEATURE_NAMES.index(name)]
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (name, t)
