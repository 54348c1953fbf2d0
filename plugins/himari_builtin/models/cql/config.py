"""CQL's settings and its parameter arithmetic (no torch: ``himari plugins list`` reads it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from himari.plugin.api import ParamCount

ACCOUNT_COLUMNS = 4
ACCOUNT_SCALE = (1.0, 10.0, 10.0, 0.2)
"""Fixed scales of the account columns (position, unrealised PnL, drawdown, log1p(bars))."""


@dataclass(frozen=True)
class CQLConfig:
    hidden_sizes: tuple[int, ...] = (210, 210)
    """Width of each hidden layer of each of the two Q networks."""
    gamma: float = 0.99
    """Discount factor."""
    target: Literal["min", "double-dqn"] = "min"
    """TD target: min (clipped double-Q, max_a min_i Q'_i) or double-dqn (Q'_i at argmax_a Q_i)."""
    tau: float = 0.005
    """Polyak averaging rate of the target networks per optimiser step."""
    alpha: float = 1.0
    """Weight of the conservative term (the initial value when lagrangian)."""
    lagrangian: bool = False
    """Learn alpha (log_alpha, one extra parameter) so that the mean gap settles at target_gap."""
    target_gap: float = 1.0
    """Target of logsumexp_a Q(s, a) - Q(s, a_data) for the Lagrangian alpha."""
    reward_scale: float = 100.0
    """Rewards (5-minute log returns) are multiplied by this."""
    benchmark_weight: float = 0.0
    """Times the log return of holding the asset over a step, subtracted from its reward (1: the
    reward is the excess log return over buy-and-hold, so a Q-value no longer rises for being
    long in a rising market by itself; 0: off)."""
    behaviour: Literal["labels", "random"] = "labels"
    """Behaviour actions of the transitions dataset: the labels or seeded uniform actions."""
    epsilon: float = 0.2
    """Share of behaviour actions replaced by seeded uniform actions (coverage)."""
    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if self.target not in ("min", "double-dqn"):
            raise ValueError(f"target must be min or double-dqn, got {self.target!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.alpha < 0 or (self.lagrangian and self.alpha <= 0):
            raise ValueError(f"alpha must be >= 0 (> 0 when lagrangian), got {self.alpha}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.reward_scale <= 0:
            raise ValueError("reward_scale must be > 0")
        if not (math.isfinite(self.benchmark_weight) and self.benchmark_weight >= 0):
            raise ValueError(f"benchmark_weight must be finite and >= 0, got {self.benchmark_weight}")


def parameter_count(config: CQLConfig, n_features: int) -> ParamCount:
    """Two Q networks (weights and biases of each Linear) plus log_alpha when it is learned;
    the target copies are buffers, not parameters."""
    head, width = 0, n_features + ACCOUNT_COLUMNS
    for h in config.hidden_sizes:
        head += width * h + h
        width = h
    head += width * 3 + 3
    total = 2 * head + (1 if config.lagrangian else 0)
    return ParamCount(total, total)
