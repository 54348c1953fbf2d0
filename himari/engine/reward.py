"""Reward shaping configuration mapped onto the native POD."""

from __future__ import annotations

from dataclasses import dataclass

from himari.engine._native import _core


@dataclass(frozen=True)
class RewardConfig:
    """Coefficients of the shaped reward (docs/semantics.md). All zero gives the log return."""

    drawdown_penalty: float = 0.0
    """Times the increase of drawdown (fraction of the running peak) in a step."""
    turnover_penalty: float = 0.0
    """Times |change of position| in a step (0, 1 or 2), on top of the fee already paid."""
    dsr_weight: float = 0.0
    """Times the differential Sharpe ratio (Moody and Saffell 1998) of the step's log return."""
    dsr_decay: float = 0.01
    """Adaptation rate eta of the DSR's moving moments, in (0, 1]."""

    def to_native(self) -> _core.RewardConfig:
        native = _core.RewardConfig()
        native.drawdown_penalty = float(self.drawdown_penalty)
        native.turnover_penalty = float(self.turnover_penalty)
        native.dsr_weight = float(self.dsr_weight)
        native.dsr_decay = float(self.dsr_decay)
        return native
