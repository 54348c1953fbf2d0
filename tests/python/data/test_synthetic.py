"""The synthetic market: seeded, consistent, fast, and with the stylised facts of real returns."""

from __future__ import annotations

import time

import numpy as np
import pytest

from himari.data.frame import CANONICAL_COLUMNS, read_bars_metadata
from himari.data.ingest import read_bars
from himari.data.synthetic import SynthConfig, synthesize, write_synthetic


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[lag:] * x[:-lag]).sum() / (x * x).sum())


@pytest.fixture(scope="module")
def market():
    return synthesize(SynthConfig(bars=200_000, seed=0), return_regimes=True)


def test_fast_and_seeded():
    t = time.perf_counter()
    a = synthesize(SynthConfig(bars=200_000, seed=42))
    assert time.perf_counter() - t < 3.0
    b = synthesize(SynthConfig(bars=200_000, seed=42))
    c = synthesize(SynthConfig(bars=200_000, seed=43))
    assert a.equals(b) and not a["close"].equals(c["close"])


def test_canonical_and_consistent_ohlc(market):
    df, regimes = market
    assert list(df.columns) == list(CANONICAL_COLUMNS)
    o, h, l, c, v = (df[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert (h >= np.maximum(o, c)).all() and (l <= np.minimum(o, c)).all() and (l > 0).all()
    assert (v > 0).all()
    assert (np.diff(df["timestamp"].array.asi8) == 300 * 10**9).all()
    assert set(np.unique(regimes)) == {0, 1, 2}  # range, trend and high-volatility all occur


def test_stylised_facts(market):
    df, regimes = market
    r = np.diff(np.log(df["close"].to_numpy()))
    excess_kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3
    assert excess_kurtosis > 3.0, "fat tails"
    assert all(abs(_acf(r, k)) < 0.03 for k in (1, 2, 5, 10)), "near-zero return autocorrelation"
    assert all(_acf(np.abs(r), k) > 0.1 for k in (1, 5, 20, 50)), "volatility clustering"
    vol_by_regime = [np.abs(r[regimes[1:] == k]).mean() for k in range(3)]
    assert vol_by_regime[2] > 1.5 * vol_by_regime[0], "high-volatility regime"
    hours = (df["timestamp"].array.asi8[1:] // 3_600_000_000_000) % 24
    v = df["volume"].to_numpy()[1:]
    assert v[hours == 14].mean() > 1.5 * v[hours == 2].mean(), "intraday volume seasonality"


def test_write_and_read_back(tmp_path):
    out = tmp_path / "synth.parquet"
    frame = write_synthetic(out, SynthConfig(bars=3000, seed=1))
    meta = read_bars_metadata(out)
    assert meta["interval"] == "5m" and meta["symbols"] == ["SYNTH"] and meta["synthetic"]["seed"] == 1
    back = read_bars(out)
    assert back.frame.equals(frame) and back.interval_seconds == 300
    assert (tmp_path / "synth.report.json").exists()


def test_the_interval_spaces_the_timestamps_only():
    """The docs promise 5-minute dynamics on any interval; the seasonality followed the real
    timestamps, so daily bars (all at one time of day) had other prices."""
    five = synthesize(SynthConfig(bars=3000, seed=4))
    for seconds in (60, 86400):
        other = synthesize(SynthConfig(bars=3000, seed=4, interval_seconds=seconds))
        for column in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(other[column].to_numpy(), five[column].to_numpy(), err_msg=column)
        steps = other["timestamp"].diff().dt.total_seconds().iloc[1:]
        assert set(steps.tolist()) == {seconds}
