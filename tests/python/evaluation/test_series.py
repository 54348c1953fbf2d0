"""Per-bar series agree with the metrics and with a hand-worked account."""

from __future__ import annotations

import numpy as np
import pytest

from himari.evaluation.policy import evaluate_actions
from himari.evaluation.series import COLUMNS, per_bar
from himari.trading import EnvConfig


def test_hand_worked_long_flat_bars() -> None:
    """BUY at the close of bar 0 fills at open[1] = 10 * (1 + 1%) with a 1% fee; held over bars
    1 and 2 (closes 11, 12); SELL at the close of bar 2 fills at open[3] = 12 * (1 - 1%)."""
    o = np.array([10.0, 10.0, 11.0, 12.0, 12.0])
    c = np.array([10.0, 11.0, 12.0, 12.0, 12.0])
    ts = np.arange(5, dtype=np.int64) * 300 * 10**9
    acts = np.array([2, 1, 0, 1, 1])
    t = per_bar(o, c, ts, [(0, 5)], acts, EnvConfig(fee=0.01, slippage=0.01))
    assert list(t.columns) == list(COLUMNS)
    assert t["position"].tolist() == [0, 1, 1, 0, 0]
    units = (1 / 1.01) / 10.1  # all equity in, fee on the notional taken out of it
    eq1 = units * 11.0
    eq2 = units * 12.0
    eq3 = units * 12.0 * 0.99 * (1 - 0.01)  # sold at 11.88, fee 1%
    np.testing.assert_allclose(t["equity"], [1.0, eq1, eq2, eq3, eq3], rtol=1e-12)
    np.testing.assert_allclose(t["gross_return"], [0.0, 0.1, 12 / 11 - 1, 0.0, 0.0], rtol=1e-12)
    assert str(t["timestamp"].dt.tz) == "UTC" and t["range"].tolist() == [0] * 5


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_chained_equity_matches_the_metrics(mode: str) -> None:
    rng = np.random.default_rng(4)
    n = 120
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    ranges = [(0, 40), (50, 95), (100, 120)]
    acts = rng.integers(0, 3, sum(b - a for a, b in ranges))
    env = EnvConfig(fee=1e-3, slippage=5e-4, mode=mode)
    t = per_bar(open_, close, np.arange(n, dtype=np.int64), ranges, acts, env)
    m = evaluate_actions(open_, close, ranges, acts, env)
    assert t["equity"].iloc[-1] - 1 == pytest.approx(m["total_return"], rel=1e-12)
    assert t.groupby("range")["position"].first().tolist() == [0, 0, 0]  # each range starts flat
    held = t[t.groupby("range").cumcount() > 0]  # a range's first bar holds nothing: no step is taken on it
    assert (held["position"] != 0).mean() == pytest.approx(m["exposure"], rel=1e-12)
    with pytest.raises(ValueError, match="one per row"):
        per_bar(open_, close, np.arange(n), ranges, acts[:-1], env)


def test_the_last_bar_of_each_range_shows_hold_and_the_account_is_unchanged() -> None:
    """An evaluation's series showed the model's unexecuted BUY on each block's last bar, where
    no bar follows to fill it (backtest's export already showed HOLD)."""
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    ranges = [(0, 20), (30, 60)]
    acts = np.full(50, 2)  # BUY on every bar, the last of each range too
    t = per_bar(close, close, np.arange(60, dtype=np.int64), ranges, acts, EnvConfig())
    last = t.groupby("range").tail(1)
    assert last["action"].tolist() == [1, 1] and (t["action"].to_numpy() == 2).sum() == 48
    assert acts.tolist() == [2] * 50  # the caller's actions are left as they were
    m = evaluate_actions(close, close, ranges, acts, EnvConfig())
    assert t["equity"].iloc[-1] - 1 == pytest.approx(m["total_return"], rel=1e-12)
