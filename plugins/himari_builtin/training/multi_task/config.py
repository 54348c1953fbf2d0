"""The config of ``multi-task`` (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

NAME = "multi-task"
MODELS = ("baseline-mlp", "ppo-lstm", "cgdt", "flag-trader")
"""The built-in models with a shared trunk (``trunk()``); cql's two Q networks share none."""


@dataclass(frozen=True)
class MultiTaskConfig:
    horizon: int = 0
    """Bars ahead the auxiliary targets look (0: the data's labeler horizon, else 5)."""
    return_weight: float = 1.0
    """Weight of the next-horizon log-return head's loss (0: no return head)."""
    volatility_weight: float = 1.0
    """Weight of the realised-volatility head's loss (0: no volatility head)."""
    uncertainty: bool = False
    """Uncertainty weighting (Kendall et al. 2018): learned log-variances, w (exp(-s) L + s) per task."""
    initial_log_variance: float = 0.0
    """Starting value of each learned log-variance s (uncertainty weighting)."""
    head_hidden: int = 0
    """Hidden width of each head (0: one Linear layer on the trunk)."""
    validate: bool = True
    """Score the heads on the validation split at every epoch end (MAE, correlation)."""

    def __post_init__(self) -> None:
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 0:
            raise ValueError(f"horizon must be an integer >= 0, got {self.horizon!r}")
        for name in ("return_weight", "volatility_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.return_weight == 0 and self.volatility_weight == 0:
            raise ValueError("return_weight and volatility_weight are both 0: at least one head must train")
        if not math.isfinite(self.initial_log_variance):
            raise ValueError(f"initial_log_variance must be finite, got {self.initial_log_variance}")
        if isinstance(self.head_hidden, bool) or not isinstance(self.head_hidden, int) or self.head_hidden < 0:
            raise ValueError(f"head_hidden must be an integer >= 0, got {self.head_hidden!r}")
