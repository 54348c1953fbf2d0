"""Scoring a policy's actions on a split with the native backtester, after fees and slippage.

Alignment (docs/semantics.md): ``actions[i]`` is the decision taken at the close of prepared row
``rows[i]``, from features of rows up to that one; ``backtest_signals`` fills it at the open of
the next row. Each range of a split (one per symbol, or per block of a walk-forward fold) is
traded from a flat account; the last row of a range takes no decision. Labels are never read
here: a policy is scored by prices alone.

With several ranges the per-bar returns of the ranges are chained (traded one after another)
and the metrics recomputed from the chained equity with the backtester's definitions; with one
range the backtester's own metrics are returned unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.engine import ACTION_NAMES, BARS_PER_YEAR_5M, backtest_signals
from himari.evaluation.baselines import buy_and_hold, never_trade
from himari.errors import DataError
from himari.trading import EnvConfig

COLLAPSE_THRESHOLD = 0.9
"""A policy whose most frequent action takes more than this share of decisions has collapsed."""

METRICS = ("total_return", "annual_return", "sharpe", "sortino", "max_drawdown", "calmar",
           "turnover", "n_trades", "win_rate", "exposure")

Ranges = Sequence[tuple[int, int]]


def action_distribution(actions: np.ndarray, ranges: Ranges) -> dict[str, float]:
    """Share of SELL/HOLD/BUY among the decisions (every row of a range but its last)."""
    decided = decision_mask(ranges)
    a = np.asarray(actions)[decided]
    n = max(len(a), 1)
    return {name: float(np.count_nonzero(a == i)) / n for i, name in enumerate(ACTION_NAMES)}


def collapse(distribution: dict[str, float], threshold: float = COLLAPSE_THRESHOLD) -> dict[str, Any]:
    action = max(distribution, key=lambda k: distribution[k])
    share = distribution[action]
    return {"collapsed": bool(share > threshold), "dominant_action": action, "dominant_share": share}


def judged_on_decisions(metrics: dict[str, Any], counts: np.ndarray) -> dict[str, Any]:
    """``metrics`` with ``model_decisions``, the shares of SELL, HOLD and BUY the model decided
    before the execution rules (``counts``, from ``model_actions(decision_counts=)``), and the
    collapse flag judged on them: the HOLDs a decision interval, a holding period or a confidence
    threshold imposes are not the model's (without rules the two mixes are the same). ``actions``
    stays the executed mix. With no counts, ``metrics`` as they are."""
    total = int(np.asarray(counts).sum())
    if total == 0:
        return metrics
    mix = {name: float(counts[i]) / total for i, name in enumerate(ACTION_NAMES)}
    return {**metrics, "model_decisions": mix, **collapse(mix)}


def static_position(exposure: float, threshold: float = COLLAPSE_THRESHOLD) -> dict[str, Any]:
    """The action distribution alone misses a policy that never changes position: BUY said
    while already long is a no-op, so buy-and-hold in effect shows as a HOLD/BUY mix. This
    flags a policy that is in the market, or flat, for more than ``threshold`` of the bars."""
    if exposure > threshold:
        return {"static_position": "in the market", "static_share": float(exposure)}
    if 1.0 - exposure > threshold:
        return {"static_position": "flat", "static_share": float(1.0 - exposure)}
    return {"static_position": None, "static_share": float(max(exposure, 1.0 - exposure))}


def position_shares(actions: np.ndarray, ranges: Ranges, mode: str) -> dict[str, float]:
    """Shares of the decision steps (each bar of a range but its last) spent long, short and flat,
    each range from flat: BUY targets +1, SELL 0 (long_flat) or -1 (long_short), HOLD keeps."""
    counts = {"long": 0, "short": 0, "flat": 0}
    offset = 0
    for a, b in ranges:
        acts = np.asarray(actions[offset:offset + b - a])[:-1]
        offset += b - a
        target = np.where(acts == 2, 1.0, np.where(acts == 0, -1.0 if mode == "long_short" else 0.0, np.nan))
        last = np.maximum.accumulate(np.where(np.isnan(target), -1, np.arange(len(target))))  # forward fill
        held = np.where(last >= 0, target[np.maximum(last, 0)], 0.0) if len(target) else target
        counts["long"] += int((held > 0).sum())
        counts["short"] += int((held < 0).sum())
        counts["flat"] += int((held == 0).sum())
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {k: 0.0 for k in counts}


def static_side(shares: dict[str, float], threshold: float = COLLAPSE_THRESHOLD) -> dict[str, Any]:
    """``static_position`` for ``long_short``: exposure counts a short as in the market, so a
    policy flipping between long and short looked static; here the side held (long, short or
    flat) on more than ``threshold`` of the bars is."""
    side = max(shares, key=lambda k: shares[k])
    return {"static_position": side if shares[side] > threshold else None, "static_share": float(shares[side])}


def static_position_text(name: str, metrics: dict[str, Any]) -> str | None:
    """One console line for a static policy, or None."""
    where = metrics.get("static_position")
    if where is None:
        return None
    twin = {"in the market": "buy-and-hold (long_flat) or a fixed position", "long": "buy-and-hold",
            "short": "a fixed short position"}.get(where, "never-trade")
    return (f"STATIC: {name} is {where} {100 * metrics['static_share']:.1f}% of bars: in effect {twin}, "
            f"whatever its action distribution")


def decision_mask(ranges: Ranges) -> np.ndarray:
    """Rows of the concatenated ``ranges`` that decide: every row of a range but its last."""
    parts = []
    for a, b in ranges:
        m = np.ones(b - a, dtype=bool)
        if b > a:
            m[-1] = False
        parts.append(m)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def _closed_round_trips(n_trades: float, mode: str) -> int:
    """Round trips a range closed, from its number of position changes (the backtester reports
    ``win_rate = wins / closed`` but not ``closed``). Every range starts flat. In ``long_flat``
    the changes alternate open, close, open, ...; in ``long_short`` the first change opens and
    every later one is a flip that closes a position. A liquidation (docs/semantics.md) closes
    nothing and no change follows it, so both counts hold for a bankrupt account too."""
    n = int(n_trades)
    return n // 2 if mode == "long_flat" else max(n - 1, 0)


def _chained(equities: list[np.ndarray], bpy: float) -> dict[str, float]:
    r = np.concatenate([e[1:] / e[:-1] - 1.0 for e in equities])
    eq = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    n = len(r)
    total = float(eq[-1] - 1.0)
    with np.errstate(over="ignore"):  # a tiny span compounded to a year can exceed a float: inf, as the backtester
        annual = float(eq[-1] ** (bpy / n) - 1.0) if n else 0.0
    sd = float(np.std(r, ddof=1)) if n >= 2 else 0.0
    sharpe = float(np.mean(r) / sd * math.sqrt(bpy)) if sd > 0 else 0.0
    down = np.minimum(r, 0.0)
    dd = math.sqrt(float(np.mean(down**2))) if n else 0.0
    sortino = float(np.mean(r) / dd * math.sqrt(bpy)) if dd > 0 else 0.0
    mdd = float(np.max(1.0 - eq / np.maximum.accumulate(eq)))
    return {"total_return": total, "annual_return": annual, "sharpe": sharpe, "sortino": sortino,
            "max_drawdown": mdd, "calmar": annual / mdd if mdd > 0 else 0.0}


def action_problem(actions: np.ndarray, n: int) -> str | None:
    """What is wrong with ``actions`` as the backtester takes them (one integer action, 0 SELL,
    1 HOLD or 2 BUY, per row of ``n``), or None: a float or an out-of-range value would be cast
    to int8 and scored silently (256 read as SELL)."""
    if actions.ndim != 1 or len(actions) != n:
        return f"an array of shape {actions.shape}, expected ({n},): one action per row"
    if actions.dtype == np.bool_ or not np.issubdtype(actions.dtype, np.integer):
        return f"{actions.dtype} values, expected integer actions"
    if n and (int(actions.min()) < 0 or int(actions.max()) > 2):
        return f"values from {int(actions.min())} to {int(actions.max())}, expected 0 (SELL), 1 (HOLD) or 2 (BUY)"
    return None


def evaluate_actions(open_: np.ndarray, close: np.ndarray, ranges: Ranges, actions: np.ndarray,
                     env: EnvConfig = EnvConfig(), bars_per_year: float = BARS_PER_YEAR_5M) -> dict[str, Any]:
    """Metrics of ``actions`` (aligned with the concatenated rows of ``ranges``) after the costs
    and in the position mode of ``env``, annualised with ``bars_per_year``,
    plus the action distribution and the collapse flag."""
    actions = np.asarray(actions)
    if not ranges:
        raise DataError("ranges: no rows to evaluate (the split is empty)")
    lengths = [b - a for a, b in ranges]
    if actions.ndim != 1 or len(actions) != sum(lengths):
        raise ValueError(f"actions: expected one action per row of the split ({sum(lengths)}), "
                         f"got shape {actions.shape}")
    problem = action_problem(actions, len(actions))
    if problem:
        raise ValueError(f"actions: expected integers 0 (SELL), 1 (HOLD) or 2 (BUY), got {problem}")
    signals = actions.astype(np.int8, copy=False)
    results, equities, offset = [], [], 0
    for (a, b), n in zip(ranges, lengths):
        res = backtest_signals(open_[a:b], close[a:b], signals[offset:offset + n], **env.costs(),
                               bars_per_year=bars_per_year, return_equity=len(ranges) > 1)
        results.append(res)
        if res.equity is not None:
            equities.append(res.equity[:, 0])
        offset += n
    if len(results) == 1:
        metrics: dict[str, Any] = results[0].to_dict(0)
    else:
        steps = np.array([n - 1 for n in lengths], dtype=float)
        trades = np.array([r.n_trades[0] for r in results])
        # the win rate of the chained account is all wins over all closed round trips: a range
        # weighs by the round trips it closed (not by its trades, which count opens too)
        closed = np.array([_closed_round_trips(t, env.mode) for t in trades])
        wins = np.rint(closed * np.array([r.win_rate[0] for r in results]))
        metrics = _chained(equities, bars_per_year)
        metrics["turnover"] = float(sum(r.turnover[0] for r in results))
        metrics["n_trades"] = float(trades.sum())
        metrics["win_rate"] = float(wins.sum() / closed.sum()) if closed.sum() else 0.0
        metrics["exposure"] = float(np.dot(steps, [r.exposure[0] for r in results]) / steps.sum())
    dist = action_distribution(actions, ranges)
    metrics["actions"] = dist
    metrics["decisions"] = int(decision_mask(ranges).sum())
    metrics.update(collapse(dist))
    if env.mode == "long_short":
        metrics.update(static_side(position_shares(actions, ranges, env.mode)))
    else:
        metrics.update(static_position(metrics["exposure"]))
    return metrics


def baseline_actions(name: str, ranges: Ranges, *, seed: int = 0) -> np.ndarray:
    """Actions of a reference strategy over the rows of ``ranges`` (per range, from flat)."""
    from himari.evaluation.baselines import random_policy

    parts = []
    for i, (a, b) in enumerate(ranges):
        if name == "buy-and-hold":
            parts.append(buy_and_hold(b - a))
        elif name == "never-trade":
            parts.append(never_trade(b - a))
        elif name == "random":
            parts.append(random_policy(b - a, 1, seed=seed + i)[:, 0])
        else:
            raise ValueError(f"unknown baseline {name!r}; choose buy-and-hold, never-trade or random")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


BASELINES = ("buy-and-hold", "never-trade", "random")
