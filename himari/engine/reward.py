"""Reward shaping coefficients (``himari.trading.RewardConfig``, the one definition shared with
run configs) mapped onto the native POD."""

from __future__ import annotations

from himari.engine import args
from himari.engine._native import _core
from himari.errors import InvalidArgumentError
from himari.trading import RewardConfig

__all__ = ["RewardConfig", "native_reward"]


def native_reward(config: RewardConfig) -> _core.RewardConfig:
    """The shaping coefficients of ``config`` (a ``RewardConfig`` or an ``EnvConfig``) as the
    native struct the env and ``replay_actions`` read."""
    if not isinstance(config, RewardConfig):  # a dict would fail on its first attribute, unexplained
        raise InvalidArgumentError(f"reward: expected a RewardConfig (or an EnvConfig), got {type(config).__name__} "
                                   f"{config!r}; build one with RewardConfig(drawdown_penalty=...)")
    native = _core.RewardConfig()
    native.drawdown_penalty = args.real("drawdown_penalty", config.drawdown_penalty)
    native.turnover_penalty = args.real("turnover_penalty", config.turnover_penalty)
    native.dsr_weight = args.real("dsr_weight", config.dsr_weight)
    native.dsr_decay = args.real("dsr_decay", config.dsr_decay)
    return native
