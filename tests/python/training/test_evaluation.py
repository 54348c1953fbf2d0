"""Scoring actions: alignment with bars (decide at t, fill at open[t+1]), costs, chaining of
ranges, action distribution and the collapse guard."""

from __future__ import annotations

import numpy as np
import pytest

from himari.engine import backtest_signals
from himari.trading import EnvConfig
from himari.evaluation.policy import (
    action_distribution,
    baseline_actions,
    collapse,
    evaluate_actions,
    static_position,
    static_position_text,
)


def prices(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * (1 + rng.normal(0, 0.001, n))
    return open_, close


def test_buy_at_row_t_fills_at_next_open() -> None:
    o, c = prices()
    a, b = 5, 30
    actions = np.full(b - a, 1, dtype=np.int8)
    actions[3] = 2   # BUY decided at the close of row a+3
    actions[10] = 0  # SELL decided at the close of row a+10
    fee, slip = 1e-3, 5e-4
    m = evaluate_actions(o, c, [(a, b)], actions, EnvConfig(fee=fee, slippage=slip))
    entry = o[a + 4] * (1 + slip)
    exit_ = o[a + 11] * (1 - slip)
    qty = 1.0 / (entry * (1 + fee))
    expected = qty * exit_ * (1 - fee) - 1.0
    assert m["total_return"] == pytest.approx(expected, rel=1e-12)
    assert m["n_trades"] == 2


def test_last_row_takes_no_decision_and_distribution_counts_decisions() -> None:
    o, c = prices()
    actions = np.array([1] * 9 + [2], dtype=np.int8)  # the BUY on the last row can never fill
    m = evaluate_actions(o, c, [(0, 10)], actions)
    assert m["n_trades"] == 0 and m["decisions"] == 9
    assert m["actions"] == {"SELL": 0.0, "HOLD": 1.0, "BUY": 0.0}


def test_one_range_equals_the_backtester_and_chaining_matches_it() -> None:
    o, c = prices(200, seed=3)
    acts = np.random.default_rng(1).integers(0, 3, 200).astype(np.int8)
    single = evaluate_actions(o, c, [(0, 200)], acts)
    ref = backtest_signals(o, c, acts).to_dict(0)
    for k, v in ref.items():
        assert single[k] == v
    # two ranges where the second is flat and constant-priced adds nothing but length
    o2 = np.r_[o, np.full(50, 7.0)]
    c2 = np.r_[c, np.full(50, 7.0)]
    chained = evaluate_actions(o2, c2, [(0, 200), (200, 250)], np.r_[acts, np.ones(50, np.int8)])
    assert chained["total_return"] == pytest.approx(ref["total_return"], rel=1e-12)
    assert chained["max_drawdown"] == pytest.approx(ref["max_drawdown"], rel=1e-12)
    assert chained["n_trades"] == ref["n_trades"]


def test_collapse_guard_threshold() -> None:
    assert collapse({"SELL": 0.05, "HOLD": 0.91, "BUY": 0.04})["collapsed"] is True
    assert collapse({"SELL": 0.05, "HOLD": 0.90, "BUY": 0.05})["collapsed"] is False
    acts = np.array([1] * 95 + [2] * 5 + [0], dtype=np.int8)
    dist = action_distribution(acts, [(0, 101)])
    assert dist["HOLD"] == 0.95


def test_static_position_catches_buy_and_hold_in_effect() -> None:
    """BUY said while already long is a no-op: a policy alternating HOLD and BUY is buy-and-hold
    in effect, which the action distribution (50/50) cannot show but the exposure does."""
    open_, close = prices(200, seed=3)
    acts = np.array([2, 1] * 100, dtype=np.int8)
    m = evaluate_actions(open_, close, [(0, 200)], acts)
    assert m["collapsed"] is False
    assert m["static_position"] == "in the market" and m["static_share"] > 0.99
    assert "buy-and-hold" in static_position_text("model", m)
    never = evaluate_actions(open_, close, [(0, 200)], np.array([0, 1] * 100, dtype=np.int8))
    assert never["static_position"] == "flat" and "never-trade" in static_position_text("model", never)
    assert static_position(0.5)["static_position"] is None
    assert static_position_text("model", {"static_position": None}) is None


def test_baselines_per_range() -> None:
    acts = baseline_actions("buy-and-hold", [(0, 5), (10, 13)])
    assert acts.tolist() == [2, 1, 1, 1, 1, 2, 1, 1]
    assert set(baseline_actions("never-trade", [(0, 4)]).tolist()) == {1}
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_actions("moon", [(0, 4)])


def test_wrong_number_of_actions_is_an_error() -> None:
    o, c = prices()
    with pytest.raises(ValueError, match="one action per row"):
        evaluate_actions(o, c, [(0, 10)], np.ones(9, np.int8))
