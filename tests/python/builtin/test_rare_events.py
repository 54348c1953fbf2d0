"""rare-events (K8): injected events have the configured depth and shape on hand-made paths, the
calibration is the documented quantile of the train split's k-bar returns, training changes train
rows only (validation and test bars, features and labels bit-identical), and the stress report
scores the model on a validation stress set."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.errors import ConfigError  # noqa: E402
from himari.plugin.api import bar_offsets, bars_from_offsets  # noqa: E402
from himari.plugin.manager import get_plugins  # noqa: E402
from himari.training.config import merge_run_config  # noqa: E402
from himari.training.loop import epoch_dataset  # noqa: E402
from himari.training.trainer import Trainer  # noqa: E402
from himari_builtin.training.rare_events import RareEventsConfig, calibrate, draw_events, inject  # noqa: E402

P = get_plugins()


def _hand_made(n=200, seed=0):
    """A gently trending path with noise, bars built from offsets."""
    rng = np.random.default_rng(seed)
    off = np.zeros((n, 4))
    off[:, 3] = 0.0002 + rng.normal(0, 0.001, n)
    off[:, 0] = rng.normal(0, 0.0002, n)
    off[:, 1] = np.maximum(off[:, 0], off[:, 3]) + 0.0005
    off[:, 2] = np.minimum(off[:, 0], off[:, 3]) - 0.0005
    return off, np.full(n, 10.0)


def _apply(events, cfg, sizes, n=200):
    off, vol = _hand_made(n)
    new, new_vol = inject(off, vol, events, sizes, cfg)
    before, after = bars_from_offsets(off, 100.0), bars_from_offsets(new, 100.0)
    return before, after, vol, new_vol


def test_flash_crash_has_the_configured_depth_and_recovers_within_the_configured_bars() -> None:
    cfg = RareEventsConfig(depth=0.05, flash_bars=2, recover_bars=6, volume_factor=4.0)
    sizes = {"flash-crash": 0.05}
    before, after, vol, new_vol = _apply([("flash-crash", 50)], cfg, sizes)
    gap = np.log(after["close"] / before["close"])  # the event's own move, on top of the real path
    np.testing.assert_allclose(gap[:50], 0.0, atol=1e-12)  # untouched before
    np.testing.assert_allclose(gap[50:52], [-0.025, -0.05], atol=1e-12)  # 5% down over 2 bars
    assert gap.min() == pytest.approx(-0.05, abs=1e-12)
    np.testing.assert_allclose(gap[52:58], -0.05 + 0.05 * np.arange(1, 7) / 6, atol=1e-12)
    np.testing.assert_allclose(gap[57:], 0.0, atol=1e-12)  # recovered after 2 + 6 bars, for good
    assert (after["low"][50:52] <= after["close"][50:52]).all() and (after["high"] >= after["close"]).all()
    np.testing.assert_array_equal(new_vol[50:58], 40.0)
    np.testing.assert_array_equal(np.r_[new_vol[:50], new_vol[58:]], 10.0)


def test_crash_squeeze_and_burst_shapes() -> None:
    cfg = RareEventsConfig(crash_bars=10, squeeze_bars=4, recover_bars=8, burst_bars=20)
    sizes = {"crash": 0.1, "squeeze": 0.08, "vol-burst": 3.0}
    before, after, _, _ = _apply([("crash", 10), ("squeeze", 60), ("vol-burst", 120)], cfg, sizes)
    gap = np.log(after["close"] / before["close"])
    np.testing.assert_allclose(gap[19], -0.1, atol=1e-12)  # a crash does not recover
    np.testing.assert_allclose(gap[20:59], -0.1, atol=1e-12)
    np.testing.assert_allclose(gap[63] + 0.1, 0.08, atol=1e-12)  # squeeze top
    np.testing.assert_allclose(gap[71] + 0.1, 0.04, atol=1e-12)  # half given back
    off, _ = _hand_made()
    r_b = np.diff(np.log(np.r_[100.0, before["close"]]))
    r_a = np.diff(np.log(np.r_[100.0, after["close"]]))
    np.testing.assert_allclose(r_a[120:140], 3.0 * r_b[120:140], atol=1e-12)  # returns 3x wider
    range_b = np.log(before["high"] / before["low"])
    range_a = np.log(after["high"] / after["low"])
    np.testing.assert_allclose(range_a[120:140], 3.0 * range_b[120:140], rtol=1e-9)  # ranges 3x wider too
    np.testing.assert_allclose(range_a[140:], range_b[140:], rtol=1e-9)
    np.testing.assert_allclose(r_a[140:], r_b[140:], atol=1e-12)


def test_calibration_is_the_quantile_of_the_worst_k_bar_returns() -> None:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 20000)))
    cfg = RareEventsConfig(quantile=0.01, severity=2.0, crash_bars=12, flash_bars=1, squeeze_bars=6, burst_bars=48)
    sizes = calibrate([close], cfg)
    r12 = np.log(close[12:] / close[:-12])
    r1 = np.diff(np.log(close))
    r6 = np.log(close[6:] / close[:-6])
    assert sizes["crash"] == pytest.approx(-2.0 * np.quantile(r12, 0.01))
    assert sizes["flash-crash"] == pytest.approx(-2.0 * np.quantile(r1, 0.01))
    assert sizes["squeeze"] == pytest.approx(2.0 * np.quantile(r6, 0.99))
    assert sizes["crash"] > 0.01  # about 2 * 2.33 * 0.002 * sqrt(12)
    assert calibrate([close], RareEventsConfig(depth=0.07))["crash"] == 0.07


def test_events_arrive_at_the_configured_rate_and_stay_in_their_slot() -> None:
    cfg = RareEventsConfig(rate=0.3, slot_bars=100)
    events = draw_events(100_000, cfg, 0.3, np.random.default_rng(0))
    assert len(events) == pytest.approx(300, rel=0.15)
    for kind, s in events:
        assert s // 100 == (s + cfg.length(kind) - 1) // 100
    assert draw_events(100_000, cfg, 0.0, np.random.default_rng(0)) == []
    assert len(draw_events(10_000, cfg, 1.0, np.random.default_rng(0))) == 100


def _trainer(data, tmp_path, sets=()):
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(data), "methods": "rare-events"},
                           sets=["train.epochs=1", "train.batch_size=64", "train.progress=false",
                                 "train.max_steps_per_epoch=2", *sets])
    return Trainer(run, plugins=P, run_dir=tmp_path / "run", console=Console(file=io.StringIO()))


def test_training_changes_train_rows_only_and_the_report_scores_a_stress_set(small_prepared, tmp_path) -> None:
    t = _trainer(small_prepared, tmp_path, ["rare-events.rate=1.0", "rare-events.slot_bars=300"])
    summary = t.fit()
    m = t.methods[0][1]
    cf = m.epoch_context(t.ctx)
    (a, b), = t.splits["train"]
    assert m.events == (b - a - (1 if a == 0 else 0)) // 300  # one per slot at rate 1
    assert not np.array_equal(cf.data.close[a:b], t.data.close[a:b])
    for split in ("validation", "test"):
        for s, e in t.splits[split]:
            for k in ("open", "high", "low", "close", "volume", "features", "labels"):
                np.testing.assert_array_equal(getattr(cf.data, k)[s:e], getattr(t.data, k)[s:e])
            np.testing.assert_array_equal(cf.features[s:e], t.features[s:e])
    np.testing.assert_array_equal(cf.features[b:], t.features[b:])
    x, *_ = epoch_dataset(t).tensors  # the model trains on the modified rows
    rows = np.arange(a, b)
    rows = rows[cf.labels[rows] >= 0]
    np.testing.assert_array_equal(x.numpy(), cf.features[rows])
    assert not np.array_equal(cf.features[rows], t.features[rows])
    rep = summary["methods"]["rare-events"]
    assert rep["stress_events"] > 0 and rep["calibration"]["crash"] > 0
    assert set(rep["stress"]) == {"sharpe", "total_return", "max_drawdown", "n_trades"}
    stress, ranges, count = m.stress_set(t.ctx)
    assert count == rep["stress_events"]
    (s, e), = ranges
    assert not np.array_equal(stress.data.close[s:e], t.data.close[s:e])


@pytest.mark.parametrize("field, value", [("rate", "1.5"), ("rate", "-0.2"), ("stress_rate", "2"),
                                          ("kinds", "meteor"), ("quantile", "0.7"), ("severity", "0"),
                                          ("slot_bars", "10")])
def test_bad_config_is_refused_naming_method_field_and_value(small_prepared, field, value) -> None:
    with pytest.raises(ConfigError, match=rf"rare-events.*{field}.*{value}"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "rare-events"}, sets=[f"rare-events.{field}={value}"])
