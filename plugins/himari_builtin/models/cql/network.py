"""CQL's network (torch): the two stacked Q networks, their Polyak target copies and alpha."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from himari_builtin.models.cql.config import ACCOUNT_COLUMNS, ACCOUNT_SCALE, CQLConfig


def polyak_(targets: list[Any], sources: list[Any], tau: float) -> None:
    """In place: ``target <- (1 - tau) target + tau source`` for each pair."""
    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.mul_(1.0 - tau).add_(s.detach(), alpha=tau)


class CQLNetwork(nn.Module):
    """Two Q networks over (features ++ scaled account columns), stored stacked
    (layer i: weight ``w{i} [2, in, out]``, bias ``b{i} [2, 1, out]``) so both heads run in
    one batched matrix product per layer; their Polyak target copies are the buffers
    ``target_w{i}``/``target_b{i}``; alpha is ``log_alpha``."""

    def __init__(self, config: CQLConfig, n_features: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.register_buffer("account_scale", torch.tensor(ACCOUNT_SCALE, dtype=torch.float32))
        sizes = [n_features + ACCOUNT_COLUMNS, *config.hidden_sizes, 3]
        self.n_layers = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            # nn.Linear's default initialisation, per head
            bound = 1.0 / math.sqrt(a)
            w = torch.empty(2, a, b).uniform_(-bound, bound)
            bias = torch.empty(2, 1, b).uniform_(-bound, bound)
            setattr(self, f"w{i}", nn.Parameter(w))
            setattr(self, f"b{i}", nn.Parameter(bias))
            self.register_buffer(f"target_w{i}", w.clone())
            self.register_buffer(f"target_b{i}", bias.clone())
        log_alpha = torch.tensor(math.log(max(config.alpha, 1e-30)), dtype=torch.float32)
        if config.lagrangian:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)

    def inputs(self, s: Any) -> Any:
        return torch.cat([s[:, :self.n_features], s[:, self.n_features:] * self.account_scale], dim=1)

    def layers(self, target: bool = False) -> list[tuple[Any, Any]]:
        pre = "target_" if target else ""
        return [(getattr(self, f"{pre}w{i}"), getattr(self, f"{pre}b{i}")) for i in range(self.n_layers)]

    def _q(self, x: Any, target: bool) -> Any:
        layers = self.layers(target)
        w0, b0 = layers[0]
        h = torch.matmul(x, w0) + b0  # [2, B, h]: x broadcast over the heads
        for w, b in layers[1:]:
            h = torch.baddbmm(b, torch.relu(h), w)
        return h

    def forward(self, x: Any) -> Any:
        """Q values of both heads, ``[2, B, 3]``."""
        return self._q(x, False)

    def target_forward(self, x: Any) -> Any:
        return self._q(x, True)

    def copy_targets(self) -> None:
        """Target weights := the current weights (after a re-initialisation)."""
        with torch.no_grad():
            for (tw, tb), (w, b) in zip(self.layers(True), self.layers(False)):
                tw.copy_(w)
                tb.copy_(b)

    def polyak(self, tau: float) -> None:
        targets, sources = [], []
        for (tw, tb), (w, b) in zip(self.layers(True), self.layers(False)):
            targets += [tw, tb]
            sources += [w, b]
        polyak_(targets, sources, tau)
