"""Per-bar series of a strategy: what it did and what it earned at every bar it was scored on.

One table per strategy, the format ``himari backtest --export`` writes, ``himari evaluate``
chains over its out-of-sample blocks and ``himari report`` draws:

| column | meaning |
| --- | --- |
| ``timestamp`` | bar open time (UTC) |
| ``row`` | prepared row of the bar |
| ``range`` | index of the range (split block, fold) the bar belongs to; each range is traded from flat |
| ``close`` | close price |
| ``action`` | decision taken at the bar's close (0 SELL, 1 HOLD, 2 BUY; the last bar of a range: HOLD) |
| ``position`` | position held over the bar (entered at its open): -1, 0 or 1 |
| ``return`` | simple return of equity over the bar, after costs (0 on a range's first bar) |
| ``gross_return`` | the same without fees and slippage: direction skill alone |
| ``equity`` | equity after the bar's close, chained over the ranges (starts at 1) |

Returns come from ``himari.engine.replay_actions``, the env's own account maths, which agrees
with the backtester bit for bit; chaining multiplies the ranges' per-bar returns, exactly as
``evaluate_actions`` chains its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.trading import EnvConfig

COLUMNS = ("timestamp", "row", "range", "close", "action", "position", "return", "gross_return", "equity")


def per_bar(open_: np.ndarray, close: np.ndarray, timestamps: np.ndarray, ranges: Sequence[tuple[int, int]],
            actions: np.ndarray, env: EnvConfig = EnvConfig()) -> Any:
    """The per-bar table (pandas DataFrame, ``COLUMNS``) of ``actions`` (one per row of the
    concatenated ``ranges``) traded with ``env``'s costs and mode. The last bar of each range
    shows HOLD: no bar follows to fill a decision there, so a model's unexecuted choice is not
    shown as if it were one (the account is the same either way)."""
    import pandas as pd

    from himari.engine import ACTION_NAMES, replay_actions

    actions = np.asarray(actions)
    if actions.ndim != 1 or len(actions) != sum(b - a for a, b in ranges):
        raise ValueError(f"actions: expected one per row of the ranges ({sum(b - a for a, b in ranges)}), "
                         f"got shape {actions.shape}")
    parts, offset = [], 0
    for k, (a, b) in enumerate(ranges):
        n = b - a
        acts = actions[offset:offset + n].astype(np.int8)  # a copy
        if n:
            acts[-1] = ACTION_NAMES.index("HOLD")
        offset += n
        o, c = np.asarray(open_[a:b], dtype=np.float64), np.asarray(close[a:b], dtype=np.float64)
        net = replay_actions(o, c, acts, fee=env.fee, slippage=env.slippage, mode=env.mode)
        gross = replay_actions(o, c, acts, fee=0.0, slippage=0.0, mode=env.mode)
        parts.append(pd.DataFrame({
            "timestamp": pd.to_datetime(np.asarray(timestamps[a:b], dtype=np.int64), utc=True),
            "row": np.arange(a, b, dtype=np.int64),
            "range": np.full(n, k, dtype=np.int64),
            "close": c,
            "action": acts,
            "position": np.asarray(net.position, dtype=np.int8),
            "return": np.r_[0.0, net.equity[1:] / net.equity[:-1] - 1.0],
            "gross_return": np.r_[0.0, gross.equity[1:] / gross.equity[:-1] - 1.0],
        }))
    if not parts:
        raise ValueError("ranges: no bars to score")
    table = pd.concat(parts, ignore_index=True)
    table["equity"] = np.cumprod(1.0 + table["return"].to_numpy())
    return table[list(COLUMNS)]
