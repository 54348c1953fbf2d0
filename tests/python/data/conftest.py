"""Fixtures for the data pipeline tests: tiny files written into tmp_path, small synthetic data."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data next to the repository root; tests using it skip when it is absent."""
    if not (SHARED_DATA / "btcusdt_5m.csv.gz").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def make_bars(n: int = 50, start: str = "2023-01-01", freq: str = "5min", seed: int = 0, price: float = 100.0) -> pd.DataFrame:
    """Small consistent OHLCV bars with a ``timestamp`` column (UTC)."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.001, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.001, n))
    vol = rng.uniform(1, 10, n)
    ts = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": vol})


@pytest.fixture
def bars() -> Callable[..., pd.DataFrame]:
    return make_bars


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write text (optionally gzip-compressed) into tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        data = text.encode()
        if name.endswith(".gz"):
            data = gzip.compress(data)
        p.write_bytes(data)
        return p

    return _write


def bars_csv(df: pd.DataFrame, ts_format: str = "iso") -> str:
    """CSV text of bars with a header; timestamps as ISO-8601 or unix s/ms/us."""
    out = df.copy()
    ns = out["timestamp"].astype("datetime64[ns, UTC]").array.asi8
    if ts_format == "iso":
        out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        out["timestamp"] = ns // {"s": 10**9, "ms": 10**6, "us": 10**3}[ts_format]
    return out.to_csv(index=False)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared directory from 6,000 synthetic bars with 3 walk-forward folds (shared, read-only)."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = tmp_path_factory.mktemp("prepared") / "synth"
    prepare(load_synthetic(SynthConfig(bars=6000, seed=3)), out, PrepareConfig(folds=3))
    return out


@pytest.fixture
def to_csv() -> Callable[..., str]:
    return bars_csv
