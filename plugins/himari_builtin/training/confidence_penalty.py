"""confidence-penalty: subtract ``beta`` x the entropy of the predicted action distribution
from the loss (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident
Output Distributions"). Discourages a classifier from collapsing onto the majority action.

Uses the ``loss_terms`` hook point; needs a model whose network maps a batch's first element to
action logits (supervised and sequence models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class ConfidencePenaltyConfig:
    beta: float = 0.1
    """Weight of the entropy bonus."""


class ConfidencePenalty:
    def __init__(self, config: ConfidencePenaltyConfig) -> None:
        self.config = config

    def loss_terms(self, model: Any, batch: Any, ctx: Any) -> dict[str, Any]:
        import torch.nn.functional as F

        logp = F.log_softmax(model.network(batch[0]).float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        return {"entropy_bonus": -self.config.beta * entropy}


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name="confidence-penalty",
                                    summary="entropy bonus against over-confident, collapsed predictions (loss hook)",
                                    config=ConfidencePenaltyConfig, factory=ConfidencePenalty))
