"""Labels pinned against hand-worked twelve-bar series (mutation-tested: each test names the
wrong implementation it catches).

The triple-barrier and risk-adjusted series share one construction whose volatility is exact:
closes alternate 1, 2, 1, 2, ..., so every close-to-close log return is +log 2 or -log 2, and
with ``vol_window=2`` the population std of the last two returns is exactly log 2 from bar 2
on (bars 0 and 1 have fewer than two returns: no estimate, label undefined). With
``horizon=4``, sqrt(4) = 2, so the barrier width is w = 2 log 2 = log 4: from an entry at
open 1 the take-profit ``tp`` sits at price 4**tp and the stop-loss ``sl`` at 4**-sl. Twelve
bars with ``horizon=4`` (lookahead 5) leave t = 0 .. 6 with a whole window (t + 5 <= 11); the
labels of t = 7 .. 11 are undefined. The window that decides label t is bars t+1 .. t+4.
"""

from __future__ import annotations

import numpy as np

from himari.data.labels import (
    BUY,
    HOLD,
    SELL,
    UNDEFINED,
    forward_return,
    risk_adjusted,
    triple_barrier,
)

U = UNDEFINED
N = 12
LOG4 = float(np.log(4.0))


def _series() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Opens 1; closes 1, 2, 1, 2, ...; highs max(open, close); lows 1 (no barrier touched)."""
    o = np.ones(N)
    c = np.where(np.arange(N) % 2 == 1, 2.0, 1.0)
    return o, np.maximum(o, c), np.minimum(o, c), c


def test_triple_barrier_window_is_bars_t_plus_1_through_t_plus_horizon() -> None:
    """One take-profit touch, high[7] = 8 (above 4 = entry * 4**1). Label t is decided by bars
    t+1 .. t+4, so t = 3, 4, 5, 6 are BUY (bar 7 is their j = 4, 3, 2, 1) and t = 2 (bar 7 is
    t+5) is HOLD. open[6] = 1.5 moves t=5's entry: barriers 6 and 0.375, still touched by 8.

    t      0  1  2     3    4    5    6    7..11
    label  U  U  HOLD  BUY  BUY  BUY  BUY  U
    target    .  log(open[7]/open[3]) = 0 for t=2; log 4 for every BUY (the barrier, not the high)

    Catches: the last bar t+horizon never deciding (t=3 HOLD); bar t+horizon+1 deciding, a
    read past the lookahead (t=2 BUY); one label too few at the end (t=6 undefined); the
    time-limit exit at open[t+horizon] instead of open[t+1+horizon] (t=2 target log 1.5);
    a BUY target at the high instead of the barrier (log 8); lookahead = horizon.
    """
    o, h, l, c = _series()
    o[6] = 1.5
    h[6] = 1.5
    h[7] = 8.0
    res = triple_barrier(o, h, l, c, horizon=4, take_profit=1.0, stop_loss=1.0, vol_window=2)
    assert res.labels.tolist() == [U, U, HOLD, BUY, BUY, BUY, BUY, U, U, U, U, U]
    np.testing.assert_allclose(res.target[2:7], [0.0, LOG4, LOG4, LOG4, LOG4], rtol=1e-6, atol=1e-7)
    assert np.isnan(res.target[:2]).all() and np.isnan(res.target[7:]).all()
    assert res.lookahead == 5  # horizon + 1: the label at t reads open[t + 5]


def test_triple_barrier_take_profit_and_stop_loss_use_their_own_multipliers() -> None:
    """take_profit 1.5, stop_loss 0.5: barriers at 4**1.5 = 8 and 4**-0.5 = 0.5 (entry 1).
    Bar 5: low 0.4 (below 0.5) -> SELL for t = 2, 3, 4 (bar 5 in t+1 .. t+4). Bar 9: high 10
    (above 8) -> BUY for t = 5, 6. The bars' ordinary highs (2) stay below 8 and lows (1) above
    0.5; a take-profit wrongly at 4**0.5 = 2 would be touched (exactly) by the high of bar 3.

    t      2     3     4     5    6
    label  SELL  SELL  SELL  BUY  BUY
    target -log 2 (the stop-loss level, 0.5 * log 4), +log 8 (1.5 * log 4)

    Catches: the take-profit scaled by stop_loss (barrier 2: the ordinary highs give BUY at
    t=2), the two multipliers swapped, and a SELL target at the low (log 0.4) instead of the
    barrier.
    """
    o, h, l, c = _series()
    l[5] = 0.4
    h[9] = 10.0
    res = triple_barrier(o, h, l, c, horizon=4, take_profit=1.5, stop_loss=0.5, vol_window=2)
    assert res.labels.tolist() == [U, U, SELL, SELL, SELL, BUY, BUY, U, U, U, U, U]
    want = [-0.5 * LOG4] * 3 + [1.5 * LOG4] * 2
    np.testing.assert_allclose(res.target[2:7], want, rtol=1e-6)


def test_triple_barrier_a_touch_exactly_at_the_barrier_counts() -> None:
    """A bar whose high (low) equals the barrier touches it. Here the arithmetic is exact in
    floats: sigma = log 2, w = 2 * log 2 = log 4, and log(4.0) == 2 * log(2.0), log(0.25) ==
    -2 * log(2.0). high[7] = 4 exactly -> BUY for t = 3 .. 6; in a second series low[7] = 0.25
    exactly -> SELL for t = 3 .. 6; t = 2 (bar 7 is t+5) stays HOLD in both.

    Catches: a take-profit test ``high > barrier`` and a stop-loss test ``low < barrier``
    (strict), which leave every label HOLD.
    """
    assert np.log(4.0) == 2.0 * np.log(2.0) and np.log(0.25) == -(2.0 * np.log(2.0))  # exact floats
    o, h, l, c = _series()
    h[7] = 4.0
    up = triple_barrier(o, h, l, c, horizon=4, take_profit=1.0, stop_loss=1.0, vol_window=2)
    assert up.labels.tolist() == [U, U, HOLD, BUY, BUY, BUY, BUY, U, U, U, U, U]
    o, h, l, c = _series()
    l[7] = 0.25
    down = triple_barrier(o, h, l, c, horizon=4, take_profit=1.0, stop_loss=1.0, vol_window=2)
    assert down.labels.tolist() == [U, U, HOLD, SELL, SELL, SELL, SELL, U, U, U, U, U]


def test_risk_adjusted_by_hand() -> None:
    """y_t = log(open[t+5] / open[t+1]) / (sigma_t * sqrt 4) = log(open[t+5] / open[t+1]) / log 4,
    z = 0.5. Opens 1 except open[8] = 4, open[9] = 0.5, open[10] = 0.25:

    t      2     3         4              5          6
    exit   o[7]  o[8]=4    o[9]=0.5       o[10]=.25  o[11]
    y      0     1         -0.5 (= -z)    -1         0
    label  HOLD  BUY       HOLD (strict)  SELL       HOLD

    t = 0, 1: no volatility yet; t = 7 .. 11: no exit bar; lookahead 5. With flat closes
    (zero volatility) nothing can be scaled: every label undefined.

    Catches: lookahead = horizon; a zero volatility scaled by 1 instead of undefined (flat
    closes would give HOLD/BUY labels); a non-strict -z.
    """
    o, h, l, c = _series()
    o[8], o[9], o[10] = 4.0, 0.5, 0.25
    h, l = np.maximum(np.maximum(o, c), h), np.minimum(np.minimum(o, c), l)
    res = risk_adjusted(o, h, l, c, horizon=4, z=0.5, vol_window=2)
    assert res.labels.tolist() == [U, U, HOLD, BUY, HOLD, SELL, HOLD, U, U, U, U, U]
    np.testing.assert_allclose(res.target[2:7], [0.0, 1.0, -0.5, -1.0, 0.0], atol=1e-7)
    assert res.lookahead == 5
    flat = np.ones(N)
    res = risk_adjusted(o, np.maximum(o, flat), np.minimum(o, flat), flat, horizon=4, z=0.5, vol_window=2)
    assert (res.labels == U).all() and np.isnan(res.target).all()


def test_forward_return_labels_the_one_bar_that_has_a_whole_window() -> None:
    """horizon 1, three bars: t = 0 enters at open[1] = 100 and exits at open[2] = 102, a log
    return of log 1.02 = 0.0198 > 0.002 -> BUY; t = 1 and t = 2 have no exit bar. With two bars
    no label is defined (and nothing fails).

    Catches: a guard ``n > 2 + horizon`` that leaves the last labelable bar undefined.
    """
    o = np.array([100.0, 100.0, 102.0])
    res = forward_return(o, o, o, o, horizon=1, threshold=0.002)
    assert res.labels.tolist() == [BUY, U, U]
    assert res.target[0] == np.float32(np.log(102.0) - np.log(100.0))
    two = forward_return(o[:2], o[:2], o[:2], o[:2], horizon=1, threshold=0.002)
    assert two.labels.tolist() == [U, U] and res.lookahead == 2
