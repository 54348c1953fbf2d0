"""Every metric of ``evaluate_actions`` pinned against an independent computation.

The reference below is plain Python/NumPy written from docs/semantics.md (one account step,
decide at the close of bar t, fill at ``open[t+1]`` moved against the trader by the slippage, fee
on the traded notional, mark at ``close[t+1]``) and from the standard definitions of the
metrics; it imports nothing from himari. Several ranges are traded one after another, each from a
flat account, and the metrics of the chained per-bar returns are those of one long account:

- Sharpe  = mean(r) / std(r, ddof=1) * sqrt(bpy)
- Sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(bpy)  (downside deviation over all bars)
- annual  = equity_end ** (bpy / n) - 1, with n the number of returns
- max drawdown = max_t (1 - eq[t] / max_{s<=t} eq[s]) with eq[0] = 1; Calmar = annual / max dd
- turnover, trades: sums; win rate = all wins / all closed round trips; exposure = all steps
  ending in a position / all steps (so each range weighs by its number of steps).

These are also the definitions of docs/semantics.md (its Sortino is the downside deviation with
a 0 target, averaged over every bar, the usual one). Hand-worked cases pin the numbers without
any reference code, and empyrical (when installed) cross-checks the ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from himari.evaluation.policy import METRICS, evaluate_actions
from himari.trading import EnvConfig

SELL, HOLD, BUY = 0, 1, 2
FIVE_MINUTE_BARS_PER_YEAR = 365 * 24 * 12
RATIOS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "calmar")
COUNTS = ("turnover", "n_trades", "win_rate", "exposure")


# ------------------------------------------------------------------------------------------
# Independent reference
# ------------------------------------------------------------------------------------------


@dataclass
class RangeTrace:
    """One range traded from a flat account: its equity at each close and its counters."""

    equity: list[float] = field(default_factory=lambda: [1.0])
    in_market: list[bool] = field(default_factory=list)  # position != 0 after each step
    sides: list[int] = field(default_factory=list)  # the position the actions target after each step
    trades: int = 0
    turnover: int = 0
    closed: int = 0
    wins: int = 0


def trade_range(open_, close, actions, fee: float, slip: float, mode: str) -> RangeTrace:
    """Bar-by-bar account of docs/semantics.md ("One account step"), no shortcuts."""
    cash, units, pos, entry, bankrupt = 1.0, 0.0, 0, 1.0, False
    aimed = 0
    out = RangeTrace()
    for t in range(len(open_) - 1):
        a = int(actions[t])
        aimed = 1 if a == BUY else (-1 if mode == "long_short" else 0) if a == SELL else aimed
        out.sides.append(aimed)
        if bankrupt:
            target = 0
        elif a == BUY:
            target = 1
        elif a == SELL:
            target = -1 if mode == "long_short" else 0
        else:
            target = pos
        if target != pos:
            o = float(open_[t + 1])
            if units != 0.0:
                side = 1.0 if units > 0 else -1.0
                price = o * (1.0 - slip * side)  # a long sells lower, a short buys back higher
                cash += units * price - fee * abs(units) * price
                units = 0.0
                out.closed += 1
                out.wins += cash > entry
            if target != 0:
                price = o * (1.0 + slip * target)
                qty = cash / (price * (1.0 + fee))
                entry = cash
                cash -= target * qty * price + fee * qty * price
                units = target * qty
            out.turnover += abs(target - pos)
            out.trades += 1
            pos = target
        equity = cash + units * float(close[t + 1])
        if equity <= 1e-12:
            cash, equity, units, pos, bankrupt = 1e-12, 1e-12, 0.0, 0, True
        out.equity.append(equity)
        out.in_market.append(pos != 0)
    return out


def ratio_metrics(r: np.ndarray, bpy: float) -> dict[str, float]:
    """Standard performance ratios of simple per-bar returns ``r`` (equity starting at 1)."""
    n = len(r)
    eq = np.cumprod(np.r_[1.0, 1.0 + r])
    total = eq[-1] - 1.0
    with np.errstate(over="ignore"):  # compounding a short span to a year can overflow to inf
        annual = float(eq[-1] ** (bpy / n) - 1.0)
    mean = sum(r) / n
    var = sum((x - mean) ** 2 for x in r) / (n - 1) if n > 1 else 0.0
    sharpe = mean / math.sqrt(var) * math.sqrt(bpy) if var > 0 else 0.0
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / n)
    sortino = mean / down * math.sqrt(bpy) if down > 0 else 0.0
    peak, mdd = 1.0, 0.0
    for e in eq:
        peak = max(peak, e)
        mdd = max(mdd, 1.0 - e / peak)
    calmar = annual / float(mdd) if mdd > 0 else 0.0
    return {"total_return": total, "annual_return": annual, "sharpe": sharpe, "sortino": sortino,
            "max_drawdown": mdd, "calmar": calmar}


def reference(open_, close, ranges, actions, fee, slip, mode, bpy) -> tuple[dict, np.ndarray]:
    """All of evaluate_actions' outputs, and the chained returns, from the reference account."""
    traces, offset = [], 0
    decided: list[int] = []
    for a, b in ranges:
        acts = actions[offset:offset + b - a]
        traces.append(trade_range(open_[a:b], close[a:b], acts, fee, slip, mode))
        decided += list(acts[:-1])  # the last row of a range takes no decision
        offset += b - a
    r = np.array([e1 / e0 - 1.0 for tr in traces for e0, e1 in zip(tr.equity, tr.equity[1:])])
    out = ratio_metrics(r, bpy)
    closed = sum(tr.closed for tr in traces)
    steps = sum(len(tr.in_market) for tr in traces)
    exposure = sum(sum(tr.in_market) for tr in traces) / steps
    out.update(turnover=sum(tr.turnover for tr in traces), n_trades=sum(tr.trades for tr in traces),
               win_rate=sum(tr.wins for tr in traces) / closed if closed else 0.0, exposure=exposure)
    dist = {name: decided.count(i) / len(decided) for i, name in enumerate(("SELL", "HOLD", "BUY"))}
    top = max(dist, key=dist.get)
    out.update(actions=dist, decisions=len(decided), collapsed=dist[top] > 0.9, dominant_action=top,
               dominant_share=dist[top])
    if mode == "long_short":  # the side the actions hold, long, short or flat
        sides = [x for tr in traces for x in tr.sides]
        held = {"long": sides.count(1) / steps, "short": sides.count(-1) / steps, "flat": sides.count(0) / steps}
        top_side = max(held, key=held.get)
        out.update(static_position=top_side if held[top_side] > 0.9 else None, static_share=held[top_side])
    elif exposure > 0.9:
        out.update(static_position="in the market", static_share=exposure)
    elif 1 - exposure > 0.9:
        out.update(static_position="flat", static_share=1 - exposure)
    else:
        out.update(static_position=None, static_share=max(exposure, 1 - exposure))
    return out, r


def assert_same(got: dict, want: dict) -> None:
    """Every key of ``want`` equals ``got``'s: floats to 1e-9 relative, the rest exactly."""
    assert set(RATIOS + COUNTS) <= want.keys() and set(METRICS) == set(RATIOS + COUNTS)
    for k, v in want.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
        elif isinstance(v, dict):
            assert got[k].keys() == v.keys(), k
            for name, share in v.items():
                assert got[k][name] == pytest.approx(share, rel=1e-12), (k, name)
        else:
            assert got[k] == v, k


def walk(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random walk of closes and opens that gap away from the previous close."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0.0, 0.005, n))
    return open_, close


# ------------------------------------------------------------------------------------------
# Hand-worked cases (numbers from the semantics by hand; no reference code)
# ------------------------------------------------------------------------------------------

# Range 1, rows 0..4, fee = slippage = 1%. Decisions BUY, HOLD, SELL, HOLD (row 4 decides nothing).
#  step 0: BUY fills at open[1] = 100 * 1.01 = 101; qty = 1 / (101 * 1.01) = 1 / 102.01; cash 0.
#          equity = 110 / 102.01 (close[1] = 110)
#  step 1: HOLD; equity = 121 / 102.01
#  step 2 long_flat: SELL fills at open[3] = 121 * 0.99 = 119.79, less 1% fee:
#          cash = 119.79 * 0.99 / 102.01 = 118.5921 / 102.01 > entry 1: one winning round trip.
#  step 3: flat; equity unchanged.
HAND_OPEN_1 = [100.0, 100.0, 110.0, 121.0, 100.0]
HAND_CLOSE_1 = [100.0, 110.0, 121.0, 125.0, 100.0]
HAND_ACTS_1 = [BUY, HOLD, SELL, HOLD, SELL]


def test_hand_worked_one_range_long_flat() -> None:
    bpy = 8.0  # 4 returns: annual = equity_end ** 2 - 1
    m = evaluate_actions(np.array(HAND_OPEN_1), np.array(HAND_CLOSE_1), [(0, 5)],
                         np.array(HAND_ACTS_1, np.int8), EnvConfig(fee=0.01, slippage=0.01, mode="long_flat"), bpy)
    end = 118.5921 / 102.01
    r = [110 / 102.01 - 1, 121 / 110 - 1, 0.9801 - 1, 0.0]  # 118.5921 / 121 = 0.99 * 0.99
    mean = (r[0] + r[1] + r[2] + r[3]) / 4
    sd = math.sqrt(((r[0] - mean) ** 2 + (r[1] - mean) ** 2 + (r[2] - mean) ** 2 + (r[3] - mean) ** 2) / 3)
    down = math.sqrt(r[2] ** 2 / 4)  # the only down bar, averaged over all 4 bars
    mdd = 1 - 0.9801  # peak at 121 / 102.01, then 118.5921 / 102.01
    annual = end ** 2 - 1
    assert m["total_return"] == pytest.approx(end - 1, rel=1e-12)
    assert m["annual_return"] == pytest.approx(annual, rel=1e-12)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(8), rel=1e-9)
    assert m["sortino"] == pytest.approx(mean / down * math.sqrt(8), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(0.0199, rel=1e-9)
    assert m["calmar"] == pytest.approx(annual / mdd, rel=1e-9)
    assert (m["turnover"], m["n_trades"], m["win_rate"]) == (2, 2, 1.0)
    assert m["exposure"] == 0.5  # long after steps 0 and 1 of 4
    assert m["decisions"] == 4
    assert m["actions"] == {"SELL": 0.25, "HOLD": 0.5, "BUY": 0.25}  # the SELL of row 4 not counted
    assert (m["collapsed"], m["dominant_action"], m["dominant_share"]) == (False, "HOLD", 0.5)
    assert (m["static_position"], m["static_share"]) == (None, 0.5)


def test_hand_worked_one_range_long_short_flip() -> None:
    # Same bars; in long_short the SELL of step 2 closes the long (cash C = 118.5921 / 102.01, a
    # win) and opens a short at 121 * 0.99 = 119.79: qty = C / (119.79 * 1.01) = C / 120.9879,
    # cash = C + qty * 119.79 * 0.99 = C + qty * 118.5921. Equity = cash - qty * close:
    #  step 2 (close 125): C * (1 - 6.4079 / 120.9879); step 3 (close 100): C * (1 + 18.5921 / 120.9879)
    m = evaluate_actions(np.array(HAND_OPEN_1), np.array(HAND_CLOSE_1), [(0, 5)],
                         np.array(HAND_ACTS_1, np.int8), EnvConfig(fee=0.01, slippage=0.01, mode="long_short"), 8.0)
    c = 118.5921 / 102.01
    eq = [1.0, 110 / 102.01, 121 / 102.01, c * (1 - 6.4079 / 120.9879), c * (1 + 18.5921 / 120.9879)]
    r = [eq[i + 1] / eq[i] - 1 for i in range(4)]
    mean = sum(r) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    down = math.sqrt(r[2] ** 2 / 4)  # step 2 (the short against a rise) is the only loss
    assert r[2] < 0 < r[3]
    mdd = 1 - eq[3] / eq[2]
    assert m["total_return"] == pytest.approx(eq[4] - 1, rel=1e-12)
    assert m["annual_return"] == pytest.approx(eq[4] ** 2 - 1, rel=1e-12)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(8), rel=1e-9)
    assert m["sortino"] == pytest.approx(mean / down * math.sqrt(8), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(mdd, rel=1e-9)
    assert m["calmar"] == pytest.approx((eq[4] ** 2 - 1) / mdd, rel=1e-9)
    # one flip = one position change, two fills, turnover 2 (+1 for the opening BUY)
    assert (m["turnover"], m["n_trades"], m["win_rate"], m["exposure"]) == (3, 2, 1.0, 1.0)
    # in the market throughout, but long for steps 0-1 and short for 2-3: not one side held
    assert (m["static_position"], m["static_share"]) == (None, 0.5)


def test_hand_worked_two_chained_ranges() -> None:
    # Range 1 as above (rows 0..4, long_flat), then range 2 on rows 5..7 from a flat account:
    #  step 0: BUY fills at open[6] = 50 * 1.01 = 50.5; qty = 1 / (50.5 * 1.01) = 1 / 51.005;
    #          equity = 45 / 51.005
    #  step 1: HOLD; equity = 55 / 51.005; the range ends long (a trade, no closed round trip).
    # Chained returns (6 bars): range 1's four, then 45 / 51.005 - 1 and 55 / 45 - 1.
    open_ = np.array(HAND_OPEN_1 + [50.0, 50.0, 60.0])
    close = np.array(HAND_CLOSE_1 + [50.0, 45.0, 55.0])
    acts = np.array(HAND_ACTS_1 + [BUY, HOLD, SELL], np.int8)
    bpy = 12.0  # 6 returns: annual = equity_end ** 2 - 1
    m = evaluate_actions(open_, close, [(0, 5), (5, 8)], acts, EnvConfig(fee=0.01, slippage=0.01, mode="long_flat"), bpy)
    r = [110 / 102.01 - 1, 0.1, -0.0199, 0.0, 45 / 51.005 - 1, 55 / 45 - 1]
    end = 118.5921 / 102.01 * 55 / 51.005
    mean = sum(r) / 6
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 5)
    down = math.sqrt((0.0199 ** 2 + (45 / 51.005 - 1) ** 2) / 6)  # two down bars over all six
    # peak 121 / 102.01 (end of range 1's step 1); trough after range 2's step 0:
    # 118.5921 / 102.01 * 45 / 51.005, i.e. a drawdown of 1 - 0.9801 * 45 / 51.005
    mdd = 1 - 0.9801 * 45 / 51.005
    annual = end ** 2 - 1
    assert m["total_return"] == pytest.approx(end - 1, rel=1e-12)
    assert m["annual_return"] == pytest.approx(annual, rel=1e-12)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(12), rel=1e-9)
    assert m["sortino"] == pytest.approx(mean / down * math.sqrt(12), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(mdd, rel=1e-9)
    assert m["calmar"] == pytest.approx(annual / mdd, rel=1e-9)
    # trades 2 + 1; one closed round trip (a win): the open position at range 2's end is no loss
    assert (m["turnover"], m["n_trades"], m["win_rate"]) == (3, 3, 1.0)
    assert m["exposure"] == pytest.approx(4 / 6, rel=1e-12)  # 2 of 4 steps, then 2 of 2
    assert m["decisions"] == 6  # rows 4 and 7 end their ranges
    assert m["actions"] == pytest.approx({"SELL": 1 / 6, "HOLD": 3 / 6, "BUY": 2 / 6}, rel=1e-12)
    assert (m["static_position"], m["static_share"]) == (None, pytest.approx(4 / 6, rel=1e-12))


# ------------------------------------------------------------------------------------------
# Against the reference: one range and several, both modes, costs, open/close/flip
# ------------------------------------------------------------------------------------------

# rows of one 90-bar walk; ranges of different lengths with gaps between them
RANGES_3 = [(0, 37), (40, 52), (60, 83)]


def scripted_actions(mode: str, seed: int) -> np.ndarray:
    """Range 1: random (opens, closes and, in long_short, flips); range 2: HOLD only (no trade);
    range 3: random, then a BUY at its second-to-last row so it ends in a position."""
    rng = np.random.default_rng(seed)
    a1 = rng.integers(0, 3, 37)
    a2 = np.full(12, HOLD)
    a3 = rng.integers(0, 3, 23)
    a3[-2] = BUY
    a3[-1] = SELL  # the last row of a range decides nothing
    return np.r_[a1, a2, a3].astype(np.int8)


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_chained_ranges_match_the_reference(mode: str, seed: int) -> None:
    open_, close = walk(90, seed)
    acts = scripted_actions(mode, seed)
    fee, slip, bpy = 2e-3, 1e-3, 8760.0  # hourly bars
    m = evaluate_actions(open_, close, RANGES_3, acts, EnvConfig(fee=fee, slippage=slip, mode=mode), bpy)
    want, _ = reference(open_, close, RANGES_3, acts, fee, slip, mode, bpy)
    assert_same(m, want)
    # the scenario is what it claims: range 1 closes round trips, range 2 never trades, range 3
    # ends in a position
    traces = [trade_range(open_[a:b], close[a:b], acts[o:o + b - a], fee, slip, mode)
              for (a, b), o in zip(RANGES_3, (0, 37, 49))]
    assert traces[0].closed >= 2 and traces[1].trades == 0 and traces[2].in_market[-1]


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_one_range_matches_the_reference(mode: str) -> None:
    open_, close = walk(60, 7)
    acts = np.random.default_rng(7).integers(0, 3, 50).astype(np.int8)
    m = evaluate_actions(open_, close, [(5, 55)], acts, EnvConfig(fee=1e-3, slippage=5e-4, mode=mode))
    want, _ = reference(open_, close, [(5, 55)], acts, 1e-3, 5e-4, mode, FIVE_MINUTE_BARS_PER_YEAR)
    assert_same(m, want)


@pytest.mark.parametrize("n_ranges", [1, 3])
def test_annualisation_follows_bars_per_year(n_ranges: int) -> None:
    """The same actions scored with daily and 5-minute bars: the annual return is
    equity_end ** (bpy / n) - 1 and the ratios scale by sqrt(bpy), nothing else changes."""
    open_, close = walk(90, 11)
    ranges = RANGES_3[:n_ranges]
    acts = scripted_actions("long_flat", 11)[:sum(b - a for a, b in ranges)]
    daily = evaluate_actions(open_, close, ranges, acts, EnvConfig(fee=1e-3, slippage=5e-4, mode="long_flat"), 365.0)
    five = evaluate_actions(open_, close, ranges, acts, EnvConfig(fee=1e-3, slippage=5e-4, mode="long_flat"))
    n = sum(b - a - 1 for a, b in ranges)
    end = 1 + daily["total_return"]
    assert five["total_return"] == daily["total_return"]
    assert daily["annual_return"] == pytest.approx(end ** (365 / n) - 1, rel=1e-9)
    assert five["annual_return"] == pytest.approx(end ** (FIVE_MINUTE_BARS_PER_YEAR / n) - 1, rel=1e-9)
    for k in ("sharpe", "sortino"):
        assert daily[k] != 0
        assert five[k] / daily[k] == pytest.approx(math.sqrt(FIVE_MINUTE_BARS_PER_YEAR / 365), rel=1e-9)
    assert daily["calmar"] == pytest.approx(daily["annual_return"] / daily["max_drawdown"], rel=1e-9)


def test_flags_follow_the_chained_exposure_and_decisions() -> None:
    """Long in all 40 steps of a long range, flat in all 4 of a short one: exposure 40/44 > 0.9
    (an unweighted mean of the ranges' exposures would say 0.5); BUY once then HOLD: HOLD
    takes 42 of 44 decisions (the ranges' last rows are SELLs and must not count)."""
    open_, close = walk(60, 3)
    a1 = np.r_[BUY, np.full(39, HOLD), SELL]
    acts = np.r_[a1, HOLD, HOLD, HOLD, HOLD, SELL].astype(np.int8)
    a2_buy = np.r_[a1, BUY, HOLD, HOLD, HOLD, SELL].astype(np.int8)
    m = evaluate_actions(open_, close, [(0, 41), (50, 55)], acts)
    assert m["exposure"] == pytest.approx(40 / 44, rel=1e-12)
    assert (m["static_position"], m["static_share"]) == ("in the market", pytest.approx(40 / 44))
    assert m["decisions"] == 44
    assert (m["collapsed"], m["dominant_action"]) == (True, "HOLD")
    assert m["dominant_share"] == pytest.approx(43 / 44, rel=1e-12)
    m2 = evaluate_actions(open_, close, [(0, 41), (50, 55)], a2_buy)
    assert m2["actions"] == pytest.approx({"SELL": 0.0, "HOLD": 42 / 44, "BUY": 2 / 44}, rel=1e-12)
    assert m2["collapsed"] is True and m2["exposure"] == 1.0
    # flat throughout but for one step of the short range: exposure 1/44
    a3_flat = np.r_[np.full(41, HOLD), HOLD, HOLD, BUY, SELL, SELL].astype(np.int8)
    m3 = evaluate_actions(open_, close, [(0, 41), (50, 55)], a3_flat)
    assert (m3["static_position"], m3["static_share"]) == ("flat", pytest.approx(43 / 44, rel=1e-12))


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(2, 25), min_size=1, max_size=4),
       mode=st.sampled_from(["long_flat", "long_short"]),
       fee=st.sampled_from([0.0, 1e-3, 1e-2]), slip=st.sampled_from([0.0, 5e-4, 1e-2]),
       seed=st.integers(0, 2**16))
def test_any_ranges_and_actions_match_the_reference(lengths, mode, fee, slip, seed) -> None:
    rng = np.random.default_rng(seed)
    ranges, start = [], 0
    for n in lengths:
        start += int(rng.integers(0, 4))
        ranges.append((start, start + n))
        start += n
    open_, close = walk(start + 1, seed)
    acts = rng.choice(3, size=sum(lengths), p=rng.dirichlet([1, 1, 1])).astype(np.int8)
    bpy = float(rng.choice([365.0, 8760.0, FIVE_MINUTE_BARS_PER_YEAR]))
    m = evaluate_actions(open_, close, ranges, acts, EnvConfig(fee=fee, slippage=slip, mode=mode), bpy)
    want, _ = reference(open_, close, ranges, acts, fee, slip, mode, bpy)
    assert_same(m, want)


# ------------------------------------------------------------------------------------------
# Cross-check with a well-kept library
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_ratios_agree_with_empyrical(mode: str) -> None:
    empyrical = pytest.importorskip("empyrical", reason="empyrical-reloaded is not installed")
    open_, close = walk(90, 5)
    acts = scripted_actions(mode, 5)
    bpy = 8760.0
    m = evaluate_actions(open_, close, RANGES_3, acts, EnvConfig(fee=1e-3, slippage=5e-4, mode=mode), bpy)
    _, r = reference(open_, close, RANGES_3, acts, 1e-3, 5e-4, mode, bpy)
    assert m["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=bpy), rel=1e-9)
    assert m["sortino"] == pytest.approx(empyrical.sortino_ratio(r, annualization=bpy), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(-empyrical.max_drawdown(r), rel=1e-9)
    assert m["annual_return"] == pytest.approx(empyrical.annual_return(r, annualization=bpy), rel=1e-9)
    assert m["calmar"] == pytest.approx(empyrical.calmar_ratio(r, annualization=bpy), rel=1e-9)
    assert m["total_return"] == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9)


def test_a_bankrupt_range_chains_like_the_reference() -> None:
    """long_short: range 1 shorts, flips long and short again (two losing round trips) and is
    wiped out when the price more than doubles (liquidated, no more fills: the later BUYs do
    nothing); range 2 closes a winning long. Wins over closed round trips: 1 of 3."""
    open_ = np.array([100.0, 100.0, 110.0, 110.0, 250.0, 260.0, 50.0, 50.0, 60.0, 60.0])
    close = np.array([100.0, 105.0, 110.0, 250.0, 250.0, 260.0, 50.0, 55.0, 60.0, 60.0])
    acts = np.array([SELL, BUY, SELL, BUY, BUY, HOLD,  # rows 0..5
                     BUY, HOLD, SELL, HOLD], np.int8)  # rows 6..9
    ranges = [(0, 6), (6, 10)]
    fee, slip = 1e-3, 5e-4
    m = evaluate_actions(open_, close, ranges, acts, EnvConfig(fee=fee, slippage=slip, mode="long_short"), 365.0)
    want, _ = reference(open_, close, ranges, acts, fee, slip, "long_short", 365.0)
    first = trade_range(open_[:6], close[:6], acts[:6], fee, slip, "long_short")
    assert first.equity[-1] == 1e-12 and first.closed == 2 and first.wins == 0  # the scenario
    assert_same(m, want)
    assert m["win_rate"] == pytest.approx(1 / 3) and m["n_trades"] == 3 + 2


def test_flags_are_strict_at_the_threshold() -> None:
    """"More than 90%": a share of exactly 0.9 flags nothing."""
    open_, close = walk(30, 9)
    # two ranges of 5 steps: long in 5, then in 4 (the SELL at range 2's last decision
    # flattens): exposure 9/10; HOLD 7 of 10 decisions
    acts = np.array([BUY, HOLD, HOLD, HOLD, HOLD, SELL, BUY, HOLD, HOLD, HOLD, SELL, BUY], np.int8)
    m = evaluate_actions(open_, close, [(0, 6), (10, 16)], acts)
    assert (m["static_position"], m["static_share"]) == (None, 0.9)
    # flat in 9 of 10 steps: the mirror image
    acts = np.array([HOLD, HOLD, HOLD, HOLD, HOLD, BUY, HOLD, HOLD, HOLD, BUY, SELL, BUY], np.int8)
    m = evaluate_actions(open_, close, [(0, 6), (10, 16)], acts)
    assert m["exposure"] == pytest.approx(0.1, rel=1e-12)
    assert (m["static_position"], m["static_share"]) == (None, pytest.approx(0.9, rel=1e-12))
    # one range, BUY then 9 HOLDs: HOLD takes exactly 0.9 of the decisions
    m = evaluate_actions(open_, close, [(0, 11)], np.array([BUY] + [HOLD] * 9 + [SELL], np.int8))
    assert (m["collapsed"], m["dominant_action"], m["dominant_share"]) == (False, "HOLD", 0.9)
    assert (m["static_position"], m["static_share"]) == ("in the market", 1.0)


def test_long_short_static_is_judged_on_the_side_held_not_on_exposure() -> None:
    """In long_short a short is "in the market" too: a policy flipping between long and short
    every few bars had exposure 1.0 and was called static, "in effect buy-and-hold"."""
    from himari.evaluation.policy import evaluate_actions, static_position_text
    from himari.trading import EnvConfig

    n = 400
    o = c = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, n)))
    ls = EnvConfig(mode="long_short", fee=0.0, slippage=0.0)
    flipping = np.where((np.arange(n) // 10) % 2 == 0, 2, 0)  # ten bars long, ten bars short
    m = evaluate_actions(o, c, [(0, n)], flipping, ls)
    assert m["exposure"] == pytest.approx(1.0)
    assert m["static_position"] is None and m["static_share"] == pytest.approx(200 / 399, abs=1e-12)
    short = evaluate_actions(o, c, [(0, n)], np.zeros(n, np.int64), ls)
    assert short["static_position"] == "short" and short["static_share"] == 1.0
    assert "in effect a fixed short position" in static_position_text("run", short)
    long = evaluate_actions(o, c, [(0, n)], np.full(n, 2), ls)
    assert long["static_position"] == "long" and "in effect buy-and-hold" in static_position_text("run", long)
    # long_flat keeps its rule: in the market (long) or flat
    lf = evaluate_actions(o, c, [(0, n)], flipping, EnvConfig(fee=0.0, slippage=0.0))
    assert lf["static_position"] is None and lf["exposure"] == pytest.approx(200 / 399, abs=1e-12)
