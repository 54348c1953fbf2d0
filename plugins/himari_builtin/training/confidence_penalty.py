"""confidence-penalty: subtract ``beta`` x the entropy of the predicted action distribution
from the loss (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident
Output Distributions"). Discourages a classifier from collapsing onto the majority action.

Uses the ``loss_terms`` hook point on the model's ``action_logits(batch)`` (the policy's logits
on a training batch); declared for supervised models, whose batches are labelled rows. Offline-RL
models such as CQL produce Q values, not logits, and are refused up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class ConfidencePenaltyConfig:
    beta: float = 0.1
    """Weight of the entropy bonus."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


class ConfidencePenalty:
    def __init__(self, config: ConfidencePenaltyConfig) -> None:
        self.config = config

    def loss_terms(self, model: Any, batch: Any, ctx: Any) -> dict[str, Any]:
        import torch.nn.functional as F

        from himari.plugin.api import ConfigError

        if not callable(getattr(model, "action_logits", None)):
            raise ConfigError("confidence-penalty needs a model with action_logits(batch)")
        logp = F.log_softmax(model.action_logits(batch).float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        return {"entropy_bonus": -self.config.beta * entropy}


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name="confidence-penalty",
                                    summary="entropy bonus against over-confident, collapsed predictions (loss hook)",
                                    config=ConfidencePenaltyConfig, factory=ConfidencePenalty,
                                    paradigms=("supervised",)))
