"""CGDT's networks (torch): the GPT block, the Decision Transformer policy, the critic and the
network holding both with its buffers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from himari_builtin.models.cgdt.config import ACCOUNT_COLUMNS, ACCOUNT_SCALE, LOG_SIGMA_RANGE, N_ACTIONS, CGDTConfig


class Block(nn.Module):
    """Pre-LN GPT block: ``forward`` over whole windows, ``forward_into_cache`` for acting's
    new tokens against a fixed-size key/value cache."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.p = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)

    def _heads(self, x: Any) -> tuple[Any, Any, Any]:
        """Queries, keys and values ``[B, H, N, d/H]`` of ``x [B, N, d]``."""
        b, n, d = x.shape
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(self.ln1(x)).split(d, dim=-1))
        return q, k, v

    def _attend(self, x: Any, q: Any, k: Any, v: Any, mask: Any) -> Any:
        """Attention of ``q`` over ``k, v`` (causal when ``mask`` is None, else the bool mask,
        True attends), then the residual and the MLP on the rows ``x`` of those queries."""
        p = self.p if self.training else 0.0
        if mask is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        b, n, d = x.shape
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))

    def forward(self, x: Any, mask: Any = None, rows: Any = None) -> tuple[Any, tuple[Any, Any]]:
        """``mask`` None: causal over x; else bool ``[Q, N]`` (True attends). ``rows``
        (optional): compute the output of these tokens of x only (their queries, residuals and
        MLP; keys and values still come from every token). Returns the output and ``(k, v)``."""
        q, k, v = self._heads(x)
        if rows is not None:
            q, x = q[:, :, rows], x[:, rows]
        return self._attend(x, q, k, v, mask), (k, v)

    def forward_into_cache(self, x: Any, mask: Any, cache: tuple[Any, Any], slots: Any,
                           first_row: int = 0) -> Any:
        """The new tokens ``x [B, N, d]`` against a fixed-size key/value cache ``(k, v)
        [B, H, C, d/H]``: their keys and values are written in place at ``slots [N]`` (a device
        tensor), and their queries attend to all C slots under ``mask [N, C]`` (True attends:
        the slots filled so far, causally). Returns the output of rows ``first_row:`` only.

        Why a fixed size: every call then has the same shapes and reads its position from a
        tensor, so the step can be replayed as one CUDA graph, and nothing is copied but the
        new tokens."""
        q, k, v = self._heads(x)
        cache[0].index_copy_(2, slots, k)
        cache[1].index_copy_(2, slots, v)
        return self._attend(x[:, first_row:], q[:, :, first_row:], cache[0], cache[1], mask[first_row:])


def run_blocks(blocks: Any, h: Any, mask: Any = None, rows: Any = None) -> tuple[Any, list[Any]]:
    """The blocks in order; the last one computes only ``rows`` (the tokens whose output is
    read: a third of the tokens, so about a ninth of the work of a 6-block stack is saved).
    Returns the hidden states (of ``rows`` when given) and the per-block keys and values."""
    n = h.shape[1]
    new = []
    for i, block in enumerate(blocks):
        if rows is not None and i == len(blocks) - 1:
            full = mask if mask is not None else torch.ones(n, n, dtype=torch.bool, device=h.device).tril()
            h, kv = block(h, full[rows], rows)
        else:
            h, kv = block(h, mask)
        new.append(kv)
    return h, new


class Policy(nn.Module):
    """The Decision Transformer: tokens ``(R_t, s_t, a_t)``, step positions within the
    window, action logits from the state tokens."""

    def __init__(self, cfg: CGDTConfig, state_dim: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(state_dim, d)
        self.embed_action = nn.Embedding(N_ACTIONS, d)
        self.embed_position = nn.Embedding(cfg.context_length, d)
        self.embed_ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, N_ACTIONS)

    def token(self, kind: str, value: Any, pos: Any) -> Any:
        """Embedding of one kind of token (``return`` [B, T], ``state`` [B, T, S],
        ``action`` [B, T] long) at step positions ``pos`` [T]."""
        if kind == "return":
            e = self.embed_return(value[..., None])
        elif kind == "state":
            e = self.embed_state(value)
        else:
            e = self.embed_action(value)
        return e + self.embed_position(pos)

    def tokens(self, rtg: Any, states: Any, actions: Any, first: int = 0) -> Any:
        """Interleaved ``[B, 3T, d]`` token embeddings of steps at positions first..first+T-1."""
        b, t = rtg.shape
        pos = torch.arange(first, first + t, device=rtg.device)
        x = torch.stack([self.token("return", rtg, pos), self.token("state", states, pos),
                         self.token("action", actions, pos)], dim=2).reshape(b, 3 * t, -1)
        return x

    def run(self, x: Any, mask: Any = None, rows: Any = None) -> tuple[Any, list[Any]]:
        """The blocks over (normalised, dropped-out) token embeddings; returns the hidden
        states (of ``rows``) and the per-layer keys and values."""
        return run_blocks(self.blocks, self.drop(self.embed_ln(x)), mask, rows)

    def logits(self, h: Any) -> Any:
        return self.head(self.ln_f(h))

    def forward(self, rtg: Any, states: Any, actions: Any) -> Any:
        """Action logits ``[B, T, 3]`` at every state token of whole windows (the last
        action token is dropped: no prediction reads it)."""
        t = rtg.shape[1]
        rows = torch.arange(1, 3 * t, 3, device=rtg.device)
        h, _ = self.run(self.tokens(rtg, states, actions)[:, :-1], rows=rows)
        return self.logits(h)


class Critic(nn.Module):
    """Causal transformer over ``(s_t, a_t)`` tokens predicting ``(mu, log_sigma)`` of the
    return-to-go from each action token; optional query tokens (package docstring)."""

    def __init__(self, cfg: CGDTConfig, state_dim: int) -> None:
        super().__init__()
        d = cfg.critic_dim
        self.embed_state = nn.Linear(state_dim, d)
        self.action_weight = nn.Parameter(torch.randn(N_ACTIONS, d) * 0.02)
        self.embed_position = nn.Embedding(cfg.context_length, d)
        self.embed_ln = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(d, cfg.critic_heads, 0.0) for _ in range(cfg.critic_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2)
        self._masks: dict[tuple[int, str], Any] = {}

    def query_mask(self, t: int, device: Any) -> Any:
        """``[3T, 3T]`` bool: data tokens causal among themselves; query t sees the data
        tokens up to ``s_t`` (index 2t) and itself."""
        key = (t, str(device))
        if key not in self._masks:
            m = torch.zeros(3 * t, 3 * t, dtype=torch.bool, device=device)
            m[:2 * t, :2 * t] = torch.ones(2 * t, 2 * t, dtype=torch.bool, device=device).tril()
            steps = torch.arange(t, device=device)
            m[2 * t:, :2 * t] = torch.arange(2 * t, device=device)[None, :] <= 2 * steps[:, None]
            m[2 * t + steps, 2 * t + steps] = True
            self._masks[key] = m
        return self._masks[key]

    def forward(self, states: Any, actions: Any, query: Any = None) -> tuple[Any, Any]:
        """``states [B, T, S]``, data ``actions [B, T]`` long, ``query [B, T, 3]`` action
        weights (probabilities or one-hot) or None; ``(mu, log_sigma)`` ``[B, T]`` at the
        query tokens, or at the data action tokens when there is no query."""
        b, t, _ = states.shape
        pos = self.embed_position(torch.arange(t, device=states.device))
        s = self.embed_state(states) + pos
        a = self.action_weight[actions] + pos
        x = torch.stack([s, a], dim=2).reshape(b, 2 * t, -1)
        mask = None
        if query is not None:
            x = torch.cat([x, query.to(self.action_weight.dtype) @ self.action_weight + pos], dim=1)
            mask = self.query_mask(t, states.device)
        # made on the device: a host tensor copied over each forward cannot be recorded in a CUDA graph
        rows = (torch.arange(2 * t, 3 * t, device=states.device) if query is not None
                else torch.arange(1, 2 * t, 2, device=states.device))
        h, _ = run_blocks(self.blocks, self.embed_ln(x), mask, rows)
        out = self.head(self.ln_f(h)).float()
        return out[..., 0], out[..., 1].clamp(*LOG_SIGMA_RANGE)


class CGDTNetwork(nn.Module):
    """Policy + frozen critic + buffers: account scales, the return-to-go scale, clip range,
    target grid and chosen target, the critic phase flag and the guidance step counter."""

    def __init__(self, cfg: CGDTConfig, n_features: int) -> None:
        super().__init__()
        state = n_features + ACCOUNT_COLUMNS
        self.n_features = n_features
        self.policy = Policy(cfg, state)
        self.critic = Critic(cfg, state)
        self.critic.requires_grad_(False)
        self.register_buffer("account_scale", torch.tensor(ACCOUNT_SCALE, dtype=torch.float32))
        self.register_buffer("rtg_scale", torch.tensor(1.0))
        self.register_buffer("rtg_bounds", torch.tensor([-1e6, 1e6]))
        self.register_buffer("rtg_grid", torch.zeros(len(cfg.target_quantiles)))
        self.register_buffer("target_rtg", torch.tensor(0.0))
        self.register_buffer("critic_ready", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("critic_nll", torch.tensor(float("nan")))
        self.register_buffer("policy_steps", torch.tensor(0, dtype=torch.int64))
        self._critic_ready_host: bool | None = None  # see critic_is_ready()
        self.register_load_state_dict_post_hook(CGDTNetwork._forget_host_copy)

    @staticmethod
    def _forget_host_copy(module: CGDTNetwork, _incompatible: Any) -> None:
        module._critic_ready_host = None  # loaded buffers: read the flag again at the next step

    def critic_is_ready(self) -> bool:
        """Whether the critic's pre-training phase ran. The buffer is the state checkpoints
        keep; reading a CUDA buffer waits for the GPU, and the loss asks at every step, so the
        flag is read once (and again after each ``load_state_dict``) and then kept on the host
        beside the buffer by ``set_critic_ready``."""
        if self._critic_ready_host is None:
            self._critic_ready_host = bool(int(self.critic_ready))
        return self._critic_ready_host

    def set_critic_ready(self) -> None:
        """Record that the critic's pre-training phase ran."""
        with torch.no_grad():
            self.critic_ready.fill_(1)
        self._critic_ready_host = True

    def count_policy_step(self) -> None:
        """One more policy training step (the guidance schedule's clock, on the device: the
        loss reads it there, so a step replayed as a CUDA graph advances it too)."""
        with torch.no_grad():
            self.policy_steps += 1

    def states(self, obs: Any) -> Any:
        """Features ++ scaled account columns (``obs [..., F + 4]``)."""
        return torch.cat([obs[..., :self.n_features], obs[..., self.n_features:] * self.account_scale], dim=-1)


def build_network(config: CGDTConfig, n_features: int) -> CGDTNetwork:
    """The policy and the (frozen) critic of ``config`` over ``n_features`` features."""
    return CGDTNetwork(config, n_features)
