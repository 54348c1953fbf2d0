"""The 60 default features: one definition, warm-up, no look-ahead, scale-freeness."""

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
