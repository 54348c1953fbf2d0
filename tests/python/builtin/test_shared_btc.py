"""baseline-mlp on the shared BTC/USDT 2023 bars (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "btcusdt_5m.csv.gz"


@pytest.mark.shared_data
def test_baseline_mlp_on_btc_reports_test_metrics_next_to_baselines(tmp_path, monkeypatch) -> None:
    if not SHARED.exists():
        pytest.skip(f"shared data not found at {SHARED}")
    monkeypatch.setenv("HIMARI_CACHE_DIR", str(tmp_path / "cache"))
    s = tiny_run("baseline-mlp", SHARED, tmp_path / "run", sets=["train.max_steps_per_epoch=30",
                                                                  "train.batch_size=256"])
    assert "BTCUSDT" in s["data"] or "btcusdt" in s["data"]
    test = s["test"]
    assert set(test) == {"model", "buy-and-hold", "never-trade"}
    assert test["never-trade"]["total_return"] == 0.0
    assert test["buy-and-hold"]["n_trades"] == 1
    assert test["model"]["decisions"] > 10_000  # 15% of a year of 5-minute bars
    assert np.isfinite(test["model"]["sharpe"])
    assert abs(sum(test["model"]["actions"].values()) - 1) < 1e-9
