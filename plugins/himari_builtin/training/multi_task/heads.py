"""The auxiliary heads of ``multi-task`` (torch): one small regressor per task on the model's
trunk, the targets' train-split standardisation as buffers, and, with uncertainty weighting,
the learned log-variances. Saved and restored with the run's checkpoints (``model_built``
modules), so ``himari backtest`` gets the trained heads back."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def _head(width: int, hidden: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(width, 1)
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class AuxiliaryHeads(nn.Module):
    """``forward(h [..., width]) -> [..., k]``: each task's prediction of its standardised
    target (``(y - mean) / std`` with the train split's mean and std, ``mean`` and ``std``
    buffers). ``log_var`` (k learned log-variances ``s_i``) exists with uncertainty weighting."""

    def __init__(self, width: int, tasks: tuple[str, ...], hidden: int, uncertainty: bool,
                 initial_log_variance: float) -> None:
        super().__init__()
        self.tasks = tasks
        self.heads = nn.ModuleList(_head(width, hidden) for _ in tasks)
        self.register_buffer("mean", torch.zeros(len(tasks), dtype=torch.float64))
        self.register_buffer("std", torch.ones(len(tasks), dtype=torch.float64))
        self.log_var = nn.Parameter(torch.full((len(tasks),), float(initial_log_variance))) if uncertainty else None

    def forward(self, h: Any) -> Any:
        h = h.float()
        return torch.cat([head(h) for head in self.heads], dim=-1)


def uncertainty_weighted(losses: Any, log_var: Any) -> Any:
    """Kendall, Gal and Cipolla (2018): ``sum_i exp(-s_i) L_i + s_i`` over the tasks, per task
    ``[k]`` (sum it for the total). With ``L_i`` the mean squared error of a regression and
    ``s_i = log sigma_i^2`` this is twice the Gaussian negative log-likelihood
    ``L_i / (2 sigma_i^2) + log sigma_i`` (constants dropped): minimising it over ``s_i`` gives
    ``s_i = log L_i``, so each task's effective weight ``exp(-s_i)`` settles at ``1 / L_i``."""
    return torch.exp(-log_var) * losses + log_var


def masked_mse(pred: Any, target: Any, valid: Any) -> Any:
    """Mean squared error over the ``valid`` entries (0, with a gradient path, when none is)."""
    err = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    count = valid.sum()
    return (err * err).sum() / count.clamp(min=1)


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation of two 1-D float64 arrays (NaN for fewer than two values or a constant)."""
    import numpy as np

    if len(a) < 2 or float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
