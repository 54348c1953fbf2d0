"""Reference strategies every model is compared with, as action arrays for backtest_signals.

A model's result means little on its own: it is reported next to buy-and-hold (the market),
never-trade (zero, after costs) and random policies (what luck alone gives after costs).
"""

from __future__ import annotations

import numpy as np

from himari.engine import BUY, HOLD


def buy_and_hold(n_bars: int) -> np.ndarray:
    """BUY at the first close, then HOLD: the market's own return, less one entry cost."""
    signals = np.full(n_bars, HOLD, dtype=np.int8)
    signals[0] = BUY
    return signals


def never_trade(n_bars: int) -> np.ndarray:
    """HOLD throughout: flat, zero return, zero cost."""
    return np.full(n_bars, HOLD, dtype=np.int8)


def random_policy(n_bars: int, n_strategies: int, *, seed: int, p_hold: float = 0.9) -> np.ndarray:
    """Seeded random actions ``[T, M]``: HOLD with probability ``p_hold``, else SELL or BUY."""
    if not 0.0 <= p_hold <= 1.0:
        from himari.errors import InvalidArgumentError

        raise InvalidArgumentError(f"p_hold: expected a probability in [0, 1], got {p_hold}")
    rng = np.random.default_rng(seed)
    other = (1.0 - p_hold) / 2.0
    return rng.choice(np.array([0, 1, 2], dtype=np.int8), size=(n_bars, n_strategies), p=[other, p_hold, other])
