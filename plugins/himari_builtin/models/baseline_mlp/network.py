"""BaselineMLP's network (torch): the layers and the class weights of the class-weighted loss."""

from __future__ import annotations

import torch
from torch import nn

from himari_builtin.models.baseline_mlp.config import BaselineMLPConfig


def build_network(config: BaselineMLPConfig, n_features: int, n_actions: int,
                  class_counts: tuple[int, ...]) -> nn.Sequential:
    """Linear + BatchNorm + ReLU + Dropout per hidden layer, then Linear to the action logits;
    the buffer ``class_weight`` is the inverse train class frequency of ``class_counts``."""
    layers: list[nn.Module] = []
    width = n_features
    for h in config.hidden_sizes:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(config.dropout)]
        width = h
    layers.append(nn.Linear(width, n_actions))
    network = nn.Sequential(*layers)
    counts = torch.tensor(class_counts, dtype=torch.float32).clamp(min=1.0)
    network.register_buffer("class_weight", counts.sum() / (len(counts) * counts))
    return network
