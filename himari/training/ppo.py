"""The PPO objective shared by the online-RL models (Schulman et al. 2017, "Proximal Policy
Optimization Algorithms"), so PPO-LSTM and FLAG-TRADER optimise exactly the same loss and a fix
lands in both.

- ``PPOConfig``: ``OnlineRLConfig`` plus the objective's coefficients (clip ranges, entropy and
  value weights, advantage normalisation). A PPO model's ``<Name>Config`` derives from it.
- ``ppo_loss``: clipped surrogate + (optionally clipped) value loss - entropy bonus, with
  per-minibatch advantage normalisation, from the current network's ``logits``/``values`` and
  the rollout's batch (a ``RolloutBuffer`` item). Shapes only need to agree: ``[T, B]`` sequences
  of a recurrent model or flattened ``[T * B]`` samples of a stateless one give the same loss.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.training.rl import OnlineRLConfig


@dataclass(frozen=True)
class PPOConfig(OnlineRLConfig):
    """Settings of the PPO objective (derive a PPO model's config from this class)."""

    clip_range: float = 0.2
    """PPO ratio clip epsilon."""
    clip_range_vf: float = 0.2
    """Value clipping around the rollout's values; 0 disables."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.clip_range <= 0 or self.clip_range_vf < 0 or self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError("clip_range must be > 0; clip_range_vf, ent_coef, vf_coef >= 0")


def ppo_loss(logits: Any, values: Any, batch: dict[str, Any], cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The PPO loss of one minibatch and its diagnostics.

    ``logits [..., A]`` and ``values [...]`` are the current network's outputs for
    ``batch["obs"]``; ``batch`` holds the rollout's ``actions``, ``logprobs``, ``values``,
    ``advantages`` and ``returns`` with the same leading shape. ``cfg`` has the ``PPOConfig``
    fields. Returns ``(loss, {policy_loss, value_loss, entropy, approx_kl, clipfrac})``; the
    log-probabilities and values are computed in float32 whatever the autocast dtype, so the
    ratio of a bf16 forward is not quantised.
    """
    import torch

    logp_all = torch.log_softmax(logits.float(), -1)
    logp = logp_all.gather(-1, batch["actions"][..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    log_ratio = logp - batch["logprobs"]
    ratio = log_ratio.exp()
    adv = batch["advantages"]
    if cfg.normalize_advantage and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)).mean()
    v_loss = value_loss(values.float(), batch["values"], batch["returns"], cfg.clip_range_vf)
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    with torch.no_grad():  # logs stay on the device: the Trainer copies a step's logs at once
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > cfg.clip_range).float().mean()
    return loss, {"policy_loss": pg_loss.detach(), "value_loss": v_loss.detach(),
                  "entropy": entropy.detach(), "approx_kl": approx_kl, "clipfrac": clipfrac}


def value_loss(values: Any, old_values: Any, returns: Any, clip: float) -> Any:
    """``0.5 * (V - R)^2``, or with ``clip > 0`` the pessimistic maximum of it and the loss of
    ``V`` clipped to ``old_values +- clip`` (PPO2's value clipping)."""
    import torch

    unclipped = (values - returns) ** 2
    if clip <= 0:
        return 0.5 * unclipped.mean()
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (clipped - returns) ** 2).mean()
