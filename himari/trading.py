"""The execution terms every part of himari shares: costs, position mode and reward shaping.

One definition, used by the env (``VecTradingEnv(reward=...)``), offline rewards
(``replay_actions``), training (the run config's ``env:`` section) and evaluation
(``evaluate_actions``), so a fee or a shaping coefficient means the same thing everywhere.

- ``RewardConfig``: the shaping coefficients of the RL reward (docs/semantics.md).
- ``EnvConfig``: a ``RewardConfig`` plus the costs and the position mode; it is accepted
  wherever a ``RewardConfig`` is (``VecTradingEnv(reward=env_config)``), so a run's config is
  handed to the native env as it is.

Plain dataclasses on the standard library (and ``himari.errors``): importing this module loads
neither NumPy nor the native core (plugin listings stay fast). Values are checked when a config
is built; the native core checks them again.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from himari.errors import InvalidArgumentError

MODES = ("long_flat", "long_short")
"""``long_flat``: BUY targets +1, SELL targets 0. ``long_short``: BUY +1, SELL -1. HOLD keeps."""


def _is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool and not a string that spells one."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_floats(config: Any, names: tuple[str, ...]) -> None:
    """Store NumPy numbers as Python floats: a config is written to JSON and YAML, which take
    neither an ``np.float32`` nor its inexact value (0.001 in float32 is 0.0010000000474...)."""
    for name in names:
        value = getattr(config, name)
        if _is_number(value) and type(value) is not float:
            object.__setattr__(config, name, float(str(value)) if hasattr(value, "dtype") else float(value))


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _refuse(name: str, value: Any, rule: str) -> InvalidArgumentError:
    """The error for a setting outside its rule; a value that is not a number is told so, since
    ``got 1`` would hide that it was the string '1'."""
    if not _is_number(value):
        return InvalidArgumentError(f"{name}: expected a number, got {value!r}")
    return InvalidArgumentError(f"{name} must be {rule}, got {value}")


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

    def __post_init__(self) -> None:
        _as_floats(self, ("drawdown_penalty", "turnover_penalty", "dsr_weight", "dsr_decay"))
        for name in ("drawdown_penalty", "turnover_penalty"):
            v = getattr(self, name)
            if not (_finite(v) and v >= 0):
                raise _refuse(name, v, "finite and >= 0")
        if not _finite(self.dsr_weight):
            raise _refuse("dsr_weight", self.dsr_weight, "finite")
        if not (_finite(self.dsr_decay) and 0 < self.dsr_decay <= 1):
            raise _refuse("dsr_decay", self.dsr_decay, "in (0, 1]")

    def reward(self) -> RewardConfig:
        """The shaping coefficients alone (an ``EnvConfig`` drops its costs and mode)."""
        return RewardConfig(**{f.name: getattr(self, f.name) for f in fields(RewardConfig)})


@dataclass(frozen=True)
class EnvConfig(RewardConfig):
    """Execution costs, position mode and reward shaping, shared by training (online-RL envs,
    offline rewards) and the evaluation backtests. Training methods may change it through their
    ``env_config`` hook."""

    fee: float = 1e-3
    """Fraction of traded notional paid on every fill."""
    slippage: float = 5e-4
    """Fraction of price each fill is moved against the trader."""
    mode: str = "long_flat"
    """long_flat (SELL goes flat) or long_short (SELL goes short)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _as_floats(self, ("fee", "slippage"))
        for name in ("fee", "slippage"):
            v = getattr(self, name)
            if not (_finite(v) and 0 <= v < 1):
                raise _refuse(name, v, "a fraction in [0, 1)")
        if self.mode not in MODES:
            raise InvalidArgumentError(f"mode must be long_flat or long_short, got {self.mode!r}")

    def costs(self) -> dict[str, Any]:
        """``fee``, ``slippage`` and ``mode`` as keyword arguments (``backtest_signals(**env.costs())``)."""
        return {"fee": self.fee, "slippage": self.slippage, "mode": self.mode}
