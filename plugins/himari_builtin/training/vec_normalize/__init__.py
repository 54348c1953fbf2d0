"""vec-normalize (A6): running normalisation of what an online-RL policy sees and learns from,
as stable-baselines3's ``VecNormalize`` (after the running statistics of OpenAI Baselines'
``VecNormalize``): every observation scaled by the running mean and variance of the
observations, clipped at ``clip_obs``; every reward divided by the running standard deviation of
the discounted return, clipped at ``clip_reward``.

A training method, not a preprocessor: its statistics change on every collected step of
training, while a preprocessor is fitted once before training and then applied unchanged. They
are updated by training rollouts only; validation, test and ``himari backtest`` use them as they
stand (frozen). It returns a ``VecNormalizer`` module from ``model_built``, which makes it the
run's ``ObservationFilter`` (``himari.plugin.api``): ``EnvRollout`` applies it to every
observation and reward, evaluation (``sequential_actions``) to every observation, and its
statistics are module buffers, kept in every checkpoint (``best.pt`` holds those the best
weights were trained with) and restored on ``--resume`` and by ``himari backtest``.

For online-RL models that collect through ``EnvRollout`` and act through ``sequential_actions``
(ppo-lstm, flag-trader); a model that collects otherwise is refused at its first rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class VecNormalizeConfig:
    norm_obs: bool = True
    """Normalise observations by their running mean and variance."""
    norm_reward: bool = True
    """Divide rewards by the running standard deviation of the discounted return."""
    clip_obs: float = 10.0
    """Clip normalised observations to [-clip_obs, clip_obs]."""
    clip_reward: float = 10.0
    """Clip normalised rewards to [-clip_reward, clip_reward]."""
    gamma: float | None = None
    """Discount of the return whose variance scales the rewards; null (the default): the model's gamma, or 0.99."""
    epsilon: float = 1e-8
    """Added to the variances before the square root."""

    def __post_init__(self) -> None:
        for name in ("clip_obs", "clip_reward", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


def model_gamma(model: Any, default: float = 0.99) -> float:
    """The discount of the model's config (``OnlineRLConfig.gamma``), else ``default``."""
    gamma = getattr(getattr(model, "config", None), "gamma", None)
    return float(gamma) if isinstance(gamma, (int, float)) and not isinstance(gamma, bool) else default


class VecNormalize:
    """The training method: builds the filter (``model_built``), checks at each rollout that the
    model's collection applied it (``on_rollout``), and reports the final statistics."""

    def __init__(self, config: VecNormalizeConfig) -> None:
        self.config = config
        self.filter: Any = None
        self._seen: int | None = None

    def model_built(self, model: Any, ctx: Any) -> dict[str, Any]:
        from himari_builtin.training.vec_normalize.normalizer import VecNormalizer

        cfg = self.config
        gamma = cfg.gamma if cfg.gamma is not None else model_gamma(model)
        self.filter = VecNormalizer(clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward, gamma=gamma,
                                    epsilon=cfg.epsilon, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward)
        self._seen = None
        return {"normalizer": self.filter}

    def on_rollout(self, rollout: Any, ctx: Any) -> None:
        """A rollout the filter saw no step of was collected without ``EnvRollout``: training on
        raw observations while evaluating on normalised ones would be silently wrong."""
        from himari.plugin.api import ConfigError

        steps = int(self.filter.steps)  # one host read per rollout
        if steps == 0 or steps == self._seen:
            raise ConfigError("vec-normalize: the model collected a rollout without passing it through the "
                              "observation filter (it does not collect through EnvRollout); vec-normalize works "
                              "with online-RL models that do, such as ppo-lstm and flag-trader")
        self._seen = steps

    def after_training(self, policy: Any, ctx: Any) -> dict[str, Any]:
        """The statistics the best checkpoint acts with: env steps seen, observation columns,
        and the standard deviation of the discounted return (the reward scale)."""
        f = policy.observation_filter
        return {"env_steps": int(f.steps), "observation_columns": int(f.obs_rms.mean.numel()),
                "return_std": math.sqrt(float(f.ret_rms.var)), "gamma": f.gamma}


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(
        name="vec-normalize", code="A6",
        summary="running mean/variance normalisation of observations and return-scaled rewards (SB3 VecNormalize)",
        config=VecNormalizeConfig, factory=VecNormalize, paradigms=("online-rl",)))
