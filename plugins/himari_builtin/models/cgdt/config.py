"""CGDT's settings, constants and parameter arithmetic (no torch: ``himari plugins list`` reads
it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from himari.plugin.api import ParamCount

ACCOUNT_COLUMNS = 4
ACCOUNT_SCALE = (1.0, 10.0, 10.0, 0.2)
"""Fixed scales of the env's account columns (position, unrealised PnL, drawdown, log1p(bars))."""
N_ACTIONS = 3
LOG_SIGMA_RANGE = (-5.0, 2.0)
"""Bounds of the critic's log standard deviation (in units of the train RTG's std)."""
RTG_CLIP_QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class CGDTConfig:
    context_length: int = 64
    """Steps per window (each step is 3 tokens: return-to-go, state, action)."""
    d_model: int = 256
    """Width of the policy transformer."""
    n_layers: int = 6
    """Blocks of the policy transformer."""
    n_heads: int = 8
    """Attention heads of the policy transformer."""
    dropout: float = 0.1
    """Dropout of the policy (embeddings, attention, residuals)."""
    critic_dim: int = 96
    """Width of the critic transformer."""
    critic_layers: int = 2
    """Blocks of the critic transformer."""
    critic_heads: int = 4
    """Attention heads of the critic transformer."""
    critic_steps: int = 2000
    """Adam steps of critic pre-training (run once, at the first training step; then frozen)."""
    critic_batch_size: int = 64
    """Windows per critic pre-training step."""
    critic_lr: float = 3e-4
    """Learning rate of critic pre-training."""
    critic_expectile: float = 0.5
    """Expectile weight of the critic's Gaussian NLL (0.5: the plain NLL; above: optimistic)."""
    guidance_weight: float = 1.0
    """Final weight c of the critic guidance term."""
    guidance_warmup: int = 1000
    """Optimiser steps over which c rises linearly from 0 to guidance_weight."""
    guidance_expectile: float = 0.9
    """Expectile tau of the guidance loss on (R_target - mu) / sigma."""
    action_relaxation: Literal["softmax", "gumbel-st"] = "softmax"
    """How the predicted action enters the critic: softmax probabilities or straight-through Gumbel."""
    gamma: float = 0.99
    """Discount of the returns-to-go."""
    reward_scale: float = 100.0
    """Rewards (5-minute log returns) are multiplied by this."""
    benchmark_weight: float = 0.0
    """Times the log return of holding the asset over a step, subtracted from its reward in the
    trajectories and in acting alike (1: returns-to-go are excess returns over buy-and-hold, so
    a high target no longer asks for "stay long in a rising market"; 0: off)."""
    behaviour: Literal["labels", "random"] = "labels"
    """Behaviour actions of the trajectories: the labels or seeded uniform actions."""
    epsilon: float = 0.2
    """Share of behaviour actions replaced by seeded uniform actions (coverage)."""
    stride: int = 1
    """Train windows start every stride steps (validation windows every context_length)."""
    target_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
    """Target returns-to-go tried on validation: these quantiles of the train returns-to-go."""
    acting_cuda_graph: bool = True
    """On CUDA, replay each acting step (three new tokens through the cached decoder) from a
    recorded CUDA graph instead of launching its few hundred kernels one by one from Python."""

    def __post_init__(self) -> None:
        for name in ("context_length", "d_model", "n_layers", "n_heads", "critic_dim", "critic_layers",
                     "critic_heads", "critic_batch_size", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads or self.critic_dim % self.critic_heads:
            raise ValueError("d_model and critic_dim must be multiples of n_heads and critic_heads")
        if self.critic_steps < 0 or self.guidance_warmup < 0:
            raise ValueError("critic_steps and guidance_warmup must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (0.0 < self.critic_expectile < 1.0 and 0.0 < self.guidance_expectile < 1.0):
            raise ValueError("critic_expectile and guidance_expectile must be in (0, 1)")
        if self.guidance_weight < 0 or self.critic_lr <= 0 or self.reward_scale <= 0:
            raise ValueError("guidance_weight must be >= 0, critic_lr and reward_scale > 0")
        if not (math.isfinite(self.benchmark_weight) and self.benchmark_weight >= 0):
            raise ValueError(f"benchmark_weight must be finite and >= 0, got {self.benchmark_weight}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.action_relaxation not in ("softmax", "gumbel-st"):
            raise ValueError(f"action_relaxation must be softmax or gumbel-st, got {self.action_relaxation!r}")
        if not self.target_quantiles or any(not 0.0 <= q <= 1.0 for q in self.target_quantiles):
            raise ValueError(f"target_quantiles must be quantiles in [0, 1], got {self.target_quantiles}")


# ----------------------------------------------------------------------- parameter arithmetic

def _blocks(d: int, layers: int) -> int:
    """Pre-LN GPT blocks: 2 LayerNorms, qkv and output projections, a 4x MLP (with biases)."""
    return layers * (12 * d * d + 13 * d)


def policy_parameters(config: CGDTConfig, n_features: int) -> int:
    """Embeddings of R (Linear 1->d), s (Linear S->d), a (3 x d) and the step position (L x d),
    the embedding LayerNorm, the blocks, the final LayerNorm and the action head (d->3)."""
    d, state = config.d_model, n_features + ACCOUNT_COLUMNS
    embed = 2 * d + (state + 1) * d + N_ACTIONS * d + config.context_length * d + 2 * d
    return embed + _blocks(d, config.n_layers) + 2 * d + (d * N_ACTIONS + N_ACTIONS)


def critic_parameters(config: CGDTConfig, n_features: int) -> int:
    """Embeddings of s (Linear S->d), a (3 x d, no bias: probabilities enter linearly) and the
    step position, the embedding LayerNorm, the blocks, the final LayerNorm, the head (d->2)."""
    d, state = config.critic_dim, n_features + ACCOUNT_COLUMNS
    embed = (state + 1) * d + N_ACTIONS * d + config.context_length * d + 2 * d
    return embed + _blocks(d, config.critic_layers) + 2 * d + (2 * d + 2)


def parameter_count(config: CGDTConfig, n_features: int) -> ParamCount:
    """Total: policy + critic; trainable: the policy (the critic trains in its own phase with its
    own optimiser and is frozen otherwise). Normalisation and targets are buffers."""
    policy = policy_parameters(config, n_features)
    return ParamCount(policy + critic_parameters(config, n_features), policy)
