"""Reference strategies: shapes, seeding and what they must yield in the backtester."""

from __future__ import annotations

import numpy as np
import pytest

from himari.engine import backtest_signals
from himari.errors import InvalidArgumentError
from himari.evaluation.baselines import buy_and_hold, never_trade, random_policy


def test_buy_and_hold_tracks_the_market_after_one_entry() -> None:
    close = np.array([100.0, 110.0, 121.0, 110.0])
    open_ = np.array([100.0, 100.0, 110.0, 121.0])
    res = backtest_signals(open_, close, buy_and_hold(4), fee=0.001, slippage=0.0)
    # Entry at open[1] = 100 with a 0.1% fee, exit never: equity = 110 / 100 / 1.001.
    assert res.total_return[0] == pytest.approx(110.0 / 100.0 / 1.001 - 1.0, rel=1e-12)
    assert res.n_trades[0] == 1


def test_never_trade_is_exactly_flat() -> None:
    close = np.linspace(100, 50, 20)
    res = backtest_signals(close, close, never_trade(20))
    assert res.total_return[0] == 0.0 and res.max_drawdown[0] == 0.0


def test_random_policy_is_seeded() -> None:
    a = random_policy(500, 3, seed=7)
    b = random_policy(500, 3, seed=7)
    c = random_policy(500, 3, seed=8)
    assert a.shape == (500, 3) and a.dtype == np.int8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.85 < np.mean(a == 1) < 0.95
    with pytest.raises(InvalidArgumentError, match="p_hold"):
        random_policy(10, 1, seed=0, p_hold=1.5)
