"""PPO-LSTM's network (torch): the encoder, LSTM core and policy and value heads."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class ActorCritic(nn.Module):
    """Encoder (Linear + ReLU per layer) -> LSTM -> policy and value heads, orthogonally
    initialised (gains sqrt(2) for the encoder, 0.01 for the policy head, 1 for the value head)."""

    def __init__(self, obs_dim: int, n_actions: int, encoder_sizes: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in encoder_sizes:
            lin = nn.Linear(width, h)
            nn.init.orthogonal_(lin.weight, math.sqrt(2))
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.ReLU()]
            width = h
        self.encoder = nn.Sequential(*layers)
        self.lstm = nn.LSTM(width, hidden)
        for name, p in self.lstm.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            else:
                nn.init.orthogonal_(p, 1.0)
        self.actor = nn.Linear(hidden, n_actions)
        nn.init.orthogonal_(self.actor.weight, 0.01)
        nn.init.zeros_(self.actor.bias)
        self.critic = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.critic.weight, 1.0)
        nn.init.zeros_(self.critic.bias)
        self.hidden = hidden

    def initial_state(self, n: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(1, n, self.hidden, device=device)
        return z, z.clone()

    def forward_sequence(self, obs: torch.Tensor, starts: torch.Tensor,
                         state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``obs [T, B, D]``, ``starts [T, B]`` (1 where an episode begins: the state is
        zeroed before that step), ``state`` ``(h, c)`` each ``[1, B, H]``. The LSTM runs once
        per segment between the steps where some env starts an episode."""
        T, B = obs.shape[0], obs.shape[1]
        x = self.encoder(obs.reshape(T * B, -1)).reshape(T, B, -1)
        h, c = state
        reset = (starts > 0).any(dim=1)
        cuts = sorted({0, T, *[int(t) + 1 for t in torch.nonzero(reset[1:]).flatten().tolist()]})
        outs = []
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            if bool(reset[t0]):
                keep = (1.0 - starts[t0].to(h.dtype)).view(1, B, 1)
                h, c = h * keep, c * keep
            out, (h, c) = self.lstm(x[t0:t1], (h, c))
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        return self.actor(out), self.critic(out)[..., 0], (h, c)

    def step(self, obs: torch.Tensor, starts: torch.Tensor | None,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """One step of every env (``obs [B, D]``; ``starts [B]`` or None when no env starts an
        episode): the LSTM cell with the same weights, without ``nn.LSTM``'s per-call overhead
        (rollouts and evaluation; training goes through ``forward_sequence``)."""
        h, c = state[0][0], state[1][0]
        if starts is not None:
            keep = (1.0 - starts.to(h.dtype))[:, None]
            h, c = h * keep, c * keep
        lstm = self.lstm
        h, c = torch.lstm_cell(self.encoder(obs), (h, c), lstm.weight_ih_l0, lstm.weight_hh_l0,
                               lstm.bias_ih_l0, lstm.bias_hh_l0)
        return self.actor(h), self.critic(h)[:, 0], (h[None], c[None])
