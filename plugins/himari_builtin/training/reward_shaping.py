"""reward-shaping (K7): every term of the online-RL reward in one place, with documented
coefficients, plus a benchmark-relative term.

The native env already computes the drawdown-increase, turnover and differential-Sharpe terms
(docs/semantics.md, "Reward"); this method sets their coefficients through the ``env_config``
hook, so the CPU and CUDA envs compute them exactly as before. The benchmark term is added in
Python on the env's outputs, through the ``on_rollout`` hook: for the step decided at bar ``t``
of the training market (``rollout.bars``), the log return of holding the asset over the same
interval, ``b_t = log(close[t+1] / close[t])``, is subtracted ``benchmark_weight`` times. With
weight 1 the reward becomes the excess log return over buy-and-hold: an agent that stays long
the whole episode earns zero (up to the entry fill's costs and the gap between ``close[t]`` and
``open[t+1]`` on the first step), so "always long" is no longer free reward in a bull market,
and stepping aside before a fall earns the fall it avoided. The term is computed with torch on
the rollout's device, the same on the CPU and the GPU.

Reward of a step (``r`` the log return of equity; ``D`` the differential Sharpe ratio):
``r - drawdown_penalty * max(0, dd_after - dd_before) - turnover_penalty * traded
+ dsr_weight * D - benchmark_weight * b``. Each term's mean over a rollout is logged
(``rollout/reward_<term>``; ``rollout/reward_benchmark`` is the subtracted amount) and
``rollout/reward_mean`` is the shaped reward the policy trains on.

Online-RL models only (ppo-lstm, flag-trader): they are the ones trained on env rewards as they
are collected. The shaping coefficients are this method's; a run that also sets them in its
``env:`` section is refused, so they are never given in two places.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl

_SHAPING = ("drawdown_penalty", "turnover_penalty", "dsr_weight", "dsr_decay")


@dataclass(frozen=True)
class RewardShapingConfig:
    drawdown_penalty: float = 0.0
    """Times the increase of drawdown (fraction of the running peak) in a step (>= 0)."""
    turnover_penalty: float = 0.0
    """Times |change of position| in a step (0, 1 or 2), on top of the fee already paid (>= 0)."""
    dsr_weight: float = 0.0
    """Times the differential Sharpe ratio (Moody and Saffell 1998) of the step's log return."""
    dsr_decay: float = 0.01
    """Adaptation rate eta of the differential Sharpe ratio's moving moments, in (0, 1]."""
    benchmark_weight: float = 1.0
    """Times the log return of holding the asset over the step, subtracted (>= 0; 1: the reward
    is the excess log return over buy-and-hold; 0: off)."""

    def __post_init__(self) -> None:
        for name in ("drawdown_penalty", "turnover_penalty", "benchmark_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not math.isfinite(self.dsr_weight):
            raise ValueError(f"dsr_weight must be finite, got {self.dsr_weight}")
        if not (math.isfinite(self.dsr_decay) and 0 < self.dsr_decay <= 1):
            raise ValueError(f"dsr_decay must be in (0, 1], got {self.dsr_decay}")


class RewardShaping:
    def __init__(self, config: RewardShapingConfig) -> None:
        self.config = config

    def env_config(self, env: Any, ctx: Any) -> Any:
        """The run's env config with this method's shaping coefficients (the env computes them)."""
        from himari.plugin.api import ConfigError, RewardConfig

        default = RewardConfig()
        given = {n: getattr(env, n) for n in _SHAPING if getattr(env, n) != getattr(default, n)}
        if given:
            first = next(iter(given))
            raise ConfigError(f"reward-shaping sets the reward's coefficients, but the run's env section also sets "
                              f"env.{first}={given[first]}; give them as plugins.reward-shaping.{first} only")
        return replace(env, **{n: getattr(self.config, n) for n in _SHAPING})

    def outer_loop(self, fit: Any, ctx: Any) -> Any:
        """Refuse the reward-normalising filter before the first rollout (the filter is known once
        every method's ``model_built`` has run, which is after this method's own)."""
        self._check_filter(ctx)
        return fit()

    def _check_filter(self, ctx: Any) -> None:
        w = self.config.benchmark_weight
        filter_ = getattr(ctx, "observation_filter", None)
        if w and getattr(filter_, "norm_reward", False):
            from himari.plugin.api import ConfigError

            # The filter has already scaled these rewards by its running return std; a raw log
            # return subtracted from them would weigh the benchmark by an arbitrary, drifting factor.
            raise ConfigError(f"reward-shaping: benchmark_weight={w} cannot be combined with an observation "
                              "filter that normalises rewards (vec-normalize with norm_reward=true); set "
                              "vec-normalize.norm_reward=false or reward-shaping.benchmark_weight=0")

    def on_rollout(self, rollout: Any, ctx: Any) -> None:
        """Subtract ``benchmark_weight`` x the asset's log return over each step from the rewards."""
        from himari.plugin.api import HimariError

        w = self.config.benchmark_weight
        self._check_filter(ctx)
        bars = getattr(rollout, "bars", None)
        if bars is None or bool((bars < 0).any()):
            raise HimariError("reward-shaping: the rollout does not record the bar of each step (rollout.bars)")
        bench = benchmark_returns(ctx.env_source.close, bars)
        if w:
            rollout.rewards -= (w * bench).to(rollout.rewards.dtype)
        stats = getattr(rollout, "stats", None)
        if isinstance(stats, dict):
            stats["reward_benchmark"] = float((w * bench).mean())
            stats["reward_mean"] = float(rollout.rewards.double().mean())


def benchmark_returns(close: Any, bars: Any) -> Any:
    """``log(close[bars + 1] / close[bars])`` (float64, ``bars``' shape and device): the log
    return of holding the asset over each step decided at ``bars``."""
    import torch

    c = torch.as_tensor(close, dtype=torch.float64).to(bars.device)
    return torch.log(c[bars + 1] / c[bars])


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(
        name="reward-shaping", code="K7",
        summary="online-RL reward terms in one place: drawdown, turnover, differential Sharpe, excess over holding",
        config=RewardShapingConfig, factory=RewardShaping, paradigms=("online-rl",),
        models=("ppo-lstm", "flag-trader")))
