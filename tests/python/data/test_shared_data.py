"""The real BTC/USDT and ETH/USDT 2023 5-minute bars in ../shared/data (skipped when absent)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from himari.data.frame import ImportOptions
from himari.data.ingest import import_bars, load_bars

pytestmark = pytest.mark.shared_data


def test_import_btc_and_eth_report_facts(shared_data, tmp_path):
    out = tmp_path / "bars.parquet"
    loaded = import_bars([shared_data / "btcusdt_5m.csv.gz", shared_data / "ethusdt_5m.csv.gz"], out)
    reports = {r.symbol: r for r in loaded.report.symbols}
    assert set(reports) == {"BTCUSDT", "ETHUSDT"}
    for r in reports.values():
        assert r.rows == 104_816 and r.expected_rows == 104_832 and r.interval == "5m"
        assert r.gaps == 1 and r.missing_bars == 16 and r.longest_gap_bars == 16
        assert r.longest_gap_after == "2023-03-24T12:35:00Z"
        assert r.zero_volume_bars == 14 and r.duplicates_dropped == 0 and r.ohlc_inconsistent == 0
        assert r.start == "2023-01-01T00:00:00Z" and r.end == "2023-12-30T23:55:00Z"
    assert reports["BTCUSDT"].largest_move_at == "2023-08-17T21:40:00Z"
    assert abs(reports["BTCUSDT"].largest_move + 0.0907) < 1e-3
    assert loaded.sources[0]["sha256"] == "fc048c79c93334609c45f588b7256698bbc7b79e16c447b26e64830db86528a5"
    filled = load_bars([shared_data / "btcusdt_5m.csv.gz"], options=ImportOptions(fill_gaps="forward"))
    assert len(filled.frame) == 104_832 and int(filled.frame["filled"].sum()) == 16


def test_prepare_btc_year(shared_data, tmp_path):
    from himari.data.pipeline import prepare
    from himari.data.prepared import PreparedData

    t = time.perf_counter()
    meta = prepare(shared_data / "btcusdt_5m.csv.gz", tmp_path / "btc")
    assert time.perf_counter() - t < 15
    d = PreparedData(tmp_path / "btc")
    assert d.features.shape == (104_816, 60) and np.isfinite(d.features).all()
    dist = meta["label_distribution"]
    total = sum(dist.values())
    assert total == meta["num_labeled"] > 100_000
    assert 0.6 < dist["HOLD"] / total < 0.85 and 0.08 < dist["BUY"] / total < 0.2 and 0.08 < dist["SELL"] / total < 0.2
