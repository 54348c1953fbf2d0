"""PPO-LSTM's network (torch): the encoder, LSTM core and policy and value heads."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from himari.plugin.api import init_orthogonal


class ActorCritic(nn.Module):
    """Encoder (Linear + ReLU per layer) -> LSTM -> policy and value heads, orthogonally
    initialised (gains sqrt(2) for the encoder, 1 for the LSTM, 0.01 for the policy head, 1 for
    the value head; zero biases) through ``init_orthogonal``, the implementation the
    ``orthogonal-init`` training method uses."""

    def __init__(self, obs_dim: int, n_actions: int, encoder_sizes: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in encoder_sizes:
            lin = nn.Linear(width, h)
            init_orthogonal(lin, math.sqrt(2))
            layers += [lin, nn.ReLU()]
            width = h
        self.encoder = nn.Sequential(*layers)
        self.lstm = nn.LSTM(width, hidden)
        init_orthogonal(self.lstm, 1.0)
        self.actor = nn.Linear(hidden, n_actions)
        init_orthogonal(self.actor, 0.01)
        self.critic = nn.Linear(hidden, 1)
        init_orthogonal(self.critic, 1.0)
        self.hidden = hidden

    def initial_state(self, n: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(1, n, self.hidden, device=device)
        return z, z.clone()

    def forward_sequence(self, obs: torch.Tensor, starts: torch.Tensor,
                         state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``obs [T, B, D]``, ``starts [T, B]`` (1 where an episode begins: the state is
        zeroed before that step), ``state`` ``(h, c)`` each ``[1, B, H]``: the logits
        ``[T, B, A]``, values ``[T, B]`` and final state."""
        out, state = self.core_sequence(obs, starts, state)
        return self.actor(out), self.critic(out)[..., 0], state

    def core_sequence(self, obs: torch.Tensor, starts: torch.Tensor,
                      state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """The LSTM's outputs ``[T, B, H]`` (what both heads read) and final state; the LSTM
        runs once per segment between the steps where some env starts an episode."""
        T, B = obs.shape[0], obs.shape[1]
        x = self.encoder(obs.reshape(T * B, -1)).reshape(T, B, -1)
        h, c = state
        reset = (starts > 0).any(dim=1).tolist()  # one read of the device: where episodes start
        cuts = [0, *[t for t in range(1, T) if reset[t]], T]
        outs = []
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            if reset[t0]:
                keep = (1.0 - starts[t0].to(h.dtype)).view(1, B, 1)
                h, c = h * keep, c * keep
            out, (h, c) = self.lstm(x[t0:t1], (h, c))
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        return out, (h, c)

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
