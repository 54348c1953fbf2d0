"""Reference strategies pinned against hand-worked cases: buy-and-hold and never-trade
(``himari.evaluation.baselines``) range by range through ``baseline_actions``, the random
policy's probabilities and seeds, and the evaluation's random-at-the-model's-trade-rate and
moving-average-cross baselines (``himari.evaluate.baselines``). Each test names the wrong
implementation it catches."""

from __future__ import annotations

import numpy as np
import pytest

from himari.engine import backtest_signals
from himari.evaluate.baselines import fit_ma_cross, ma_cross, random_like, trade_rate
from himari.evaluation.baselines import never_trade, random_policy
from himari.evaluation.policy import baseline_actions, evaluate_actions
from himari.trading import EnvConfig

S, H, B = 0, 1, 2

# 12 closes for the moving-average cases: flat at 4, a bump to 6, flat at 4 again.
MA_CLOSE = np.array([4.0, 4, 4, 4, 5, 6, 5, 4, 4, 4, 4, 4])


def test_buy_and_hold_enters_at_the_first_bar_of_every_range() -> None:
    """Catches buy-and-hold entering only in the first range (a chain of ranges bought once), or
    at a later bar than the range's first close.

    Rows 0-3 and 4-7 are two ranges, each traded from flat with a 0.1% fee:
    range A buys at close 0, fills at open[1] = 100 and ends at close 110: 1.1 / 1.001;
    range B buys at close 4, fills at open[5] = 50 and ends at close 55: 1.1 / 1.001.
    Chained: (1.1 / 1.001)^2 - 1, two trades (one entry fee per range)."""
    ranges = [(0, 4), (4, 8)]
    assert baseline_actions("buy-and-hold", ranges).tolist() == [B, H, H, H, B, H, H, H]
    open_ = np.array([100.0, 100, 110, 121, 50, 50, 40, 60])
    close = np.array([100.0, 110, 121, 110, 50, 40, 60, 55])
    m = evaluate_actions(open_, close, ranges, baseline_actions("buy-and-hold", ranges),
                         EnvConfig(fee=0.001, slippage=0.0))
    assert m["total_return"] == pytest.approx((1.1 / 1.001) ** 2 - 1.0, rel=1e-12)
    assert m["n_trades"] == 2.0


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_never_trade_is_flat_in_both_modes(mode: str) -> None:
    """Catches a never-trade made of SELLs (or any non-HOLD): flat in long_flat, where SELL from
    flat is a no-op, but a short in long_short.

    Closes fall 100 -> 45 over 12 bars; a short would gain, a long lose; flat gives exactly 0
    return, 0 trades, 0 exposure in either mode."""
    assert never_trade(12).tolist() == [H] * 12
    close = np.linspace(100.0, 45.0, 12)
    res = backtest_signals(close, close, never_trade(12), fee=0.001, slippage=0.0005, mode=mode)
    assert res.total_return[0] == 0.0 and res.n_trades[0] == 0 and res.exposure[0] == 0.0
    m = evaluate_actions(close, close, [(0, 6), (6, 12)], baseline_actions("never-trade", [(0, 6), (6, 12)]),
                         EnvConfig(mode=mode))
    assert m["total_return"] == 0.0 and m["n_trades"] == 0.0 and m["exposure"] == 0.0


def test_random_policy_probability_bounds_and_seeds() -> None:
    """Catches a p_hold of exactly 1 refused (``p_hold < 1``), the HOLD probability put on
    another action, and a baseline random policy that reuses one seed for every range or
    ignores the seed it is given.

    p_hold = 1: the probabilities are (0, 1, 0), so every action is HOLD; p_hold = 0: (0.5, 0,
    0.5), so none is."""
    assert random_policy(12, 2, seed=3, p_hold=1.0).tolist() == [[H, H]] * 12
    assert not (random_policy(200, 1, seed=3, p_hold=0.0) == H).any()
    a = baseline_actions("random", [(0, 400), (1000, 1400)], seed=0)
    assert not np.array_equal(a[:400], a[400:])  # each range draws its own actions
    assert not np.array_equal(a, baseline_actions("random", [(0, 400), (1000, 1400)], seed=1))


def test_random_like_at_rate_one_alternates_from_flat_in_each_range_long_flat() -> None:
    """Catches a random-at-trade-rate baseline whose position is carried from one range into
    the next (each range starts flat), or that trades on a range's last row (it decides
    nothing).

    trade_rate 1: every decision changes the position. Range A (4 rows): BUY, SELL, BUY, then
    the last row HOLD; range B (3 rows) starts flat again: BUY, SELL, HOLD. Rates above 1 are
    clipped to 1, rates at or below 0 never trade."""
    ranges = [(0, 4), (10, 13)]
    want = [B, S, B, H, B, S, H]
    assert random_like(1.0, ranges, "long_flat", seed=5).tolist() == want
    assert random_like(3.0, ranges, "long_flat", seed=5).tolist() == want
    assert random_like(0.0, ranges, "long_flat", seed=5).tolist() == [H] * 7
    assert random_like(-1.0, ranges, "long_flat", seed=5).tolist() == [H] * 7


def test_random_like_at_rate_one_flips_in_long_short() -> None:
    """Catches a long_short random baseline that does not flip back from a short (BUY only from
    flat), so it changes position less often than the rate asks.

    trade_rate 1 over 6 rows: flat -> long (BUY), long -> short (SELL), short -> long (BUY),
    long -> short (SELL), long (BUY), last row HOLD: five position changes in five decisions."""
    acts = random_like(1.0, [(0, 6)], "long_short", seed=0)
    assert acts.tolist() == [B, S, B, S, B, H]
    close = np.full(6, 100.0)
    m = evaluate_actions(close, close, [(0, 6)], acts, EnvConfig(mode="long_short", fee=0.0, slippage=0.0))
    assert m["n_trades"] == 5.0 and trade_rate(m) == 1.0


def test_random_like_follows_its_seed() -> None:
    """Catches a random-at-trade-rate baseline that ignores its seed (every fold would then get
    the same draws)."""
    a = random_like(0.3, [(0, 300)], "long_flat", seed=1)
    assert a.tolist() == random_like(0.3, [(0, 300)], "long_flat", seed=1).tolist()
    assert a.tolist() != random_like(0.3, [(0, 300)], "long_flat", seed=2).tolist()


def test_trade_rate_is_position_changes_per_decision() -> None:
    """Catches the trade rate read from the turnover (a flip turns over 2 units but is one
    change of position) or divided by the rows instead of the decisions (a range's last row
    decides nothing).

    13 rows, long_short, constant price: BUY at 0 (flat -> long), SELL at 3 (long -> short),
    BUY at 6 (short -> long): 3 changes over 12 decisions = 0.25 (turnover 1 + 2 + 2 = 5)."""
    acts = np.full(13, H, dtype=np.int8)
    acts[[0, 3, 6]] = [B, S, B]
    close = np.full(13, 100.0)
    m = evaluate_actions(close, close, [(0, 13)], acts, EnvConfig(mode="long_short"))
    assert m["n_trades"] == 3.0 and m["decisions"] == 12
    assert trade_rate(m) == 0.25
    assert trade_rate({"n_trades": 3, "decisions": 12, "turnover": 5.0}) == 0.25


def test_ma_cross_by_hand_with_ties() -> None:
    """Catches a moving-average cross that reads a tie (fast == slow) as SELL, windows off by
    one, or averages that use the close of bar t + 1.

    SMA2 from bar 1: 4, 4, 4, 4.5, 5.5, 5.5, 4.5, 4, 4, 4, 4;
    SMA3 from bar 2: 4, 4, 13/3, 5, 16/3, 5, 13/3, 4, 4, 4.
    Bars 0-1: an average missing, HOLD; 2-3 tie, HOLD; 4-6 fast above, BUY; 7-8 below, SELL;
    9-11 tie, HOLD."""
    want = [H, H, H, H, B, B, B, S, S, H, H, H]
    assert ma_cross(MA_CLOSE, [(0, 12)], fast=2, slow=3).tolist() == want
    for t in range(12):  # the signal at t is unchanged by any change to the closes after t
        later = MA_CLOSE.copy()
        later[t + 1:] = 100.0
        assert ma_cross(later, [(0, 12)], 2, 3)[t] == want[t]


def test_ma_cross_averages_run_over_the_bars_before_a_range() -> None:
    """Catches averages restarted at each range's first row (a warm-up of HOLDs in every test
    block) instead of reading every earlier bar of the series.

    The rows 4-11 and 0-2, 6-8 of the hand-worked case above keep their signals."""
    assert ma_cross(MA_CLOSE, [(4, 12)], 2, 3).tolist() == [B, B, B, S, S, H, H, H]
    assert ma_cross(MA_CLOSE, [(0, 3), (6, 9)], 2, 3).tolist() == [H, H, H, B, S, S]


def test_fit_ma_cross_takes_the_first_window_on_ties() -> None:
    """Catches a fit that takes the last best pair on a tie (``>=``).

    Constant closes: every average equals every other, every pair HOLDs throughout with a
    Sharpe of 0, so the first pair of the grid wins."""
    close = np.full(40, 50.0)
    grid = ((2, 3), (3, 5), (4, 6))
    assert fit_ma_cross(close, close, [(0, 40)], EnvConfig(), 105_120.0, grid) == (2, 3)
