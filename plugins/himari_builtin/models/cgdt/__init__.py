"""CGDT: Critic-Guided Decision Transformer (Wang et al., AAAI 2024, "Critic-Guided Decision
Transformer for Offline Reinforcement Learning"), discrete actions, on the trajectories dataset.

A Decision Transformer (Chen et al. 2021) reads the interleaved tokens ``(R_t, s_t, a_t)`` of a
window of ``context_length`` steps (return-to-go, state, action) with a causal GPT and predicts
a categorical distribution over SELL/HOLD/BUY from each state token. Plain DT imitates whatever
the data did at a given return-to-go, which goes wrong where the return is luck rather than the
action's doing (markets are mostly luck). CGDT adds a critic and a guidance term:

- **Critic**: a separate, smaller causal transformer over the ``(s_t, a_t)`` tokens of the same
  windows that predicts a Gaussian ``N(mu, sigma^2)`` of the return-to-go of ``(history, s_t,
  a_t)``. It has no return-to-go tokens: ``R_t`` is its label, and earlier ones would give it
  away. It is trained first (``critic_steps`` Adam steps on the train windows, Gaussian NLL,
  optionally expectile-weighted with ``critic_expectile``) and then frozen: its parameters never
  require gradients outside that phase, so the Trainer's optimiser never moves them.
- **Policy loss**: ``(NLL(a_data) + c * G) / (1 + c)``, ``G`` the expectile loss (``tau =
  guidance_expectile``) of ``u = (R_t - mu(s_t, a_pred)) / sigma(s_t, a_pred)``, ``c`` warmed up
  linearly from 0 to ``guidance_weight`` over ``guidance_warmup`` optimiser steps. With tau above
  0.5 an action whose critic value falls short of the target is penalised more than one that
  exceeds it, which pulls the policy towards actions the critic rates above the target.
- **The predicted action enters the critic differentiably** (``action_relaxation``):
  ``softmax`` (default) feeds the policy's probabilities through the critic's (linear) action
  embedding, i.e. the expected action embedding: deterministic (resuming stays exact, no extra
  random draws), low variance with three actions, and its gradient is the exact derivative of
  the relaxed critic. ``gumbel-st`` (straight-through Gumbel-softmax) feeds a sampled one-hot
  action forward (the critic only ever saw one-hot actions) and the soft sample's gradient
  backward: in-distribution inputs, at the price of noise.
- **Exact history in the critic**: the guided critic value of step t must see the data's
  actions before t and the predicted action at t. One critic pass does all steps of a window:
  ``L`` query tokens (the relaxed predicted action, at step t's position) are appended after
  the ``2L`` data tokens, and a mask lets query t attend to the data tokens up to ``s_t`` and to
  itself only. A data action token ``a_t`` sees exactly the same, so the critic trained on data
  actions and queried on predicted ones is the same function.

Data: ``himari.data.TrajectoryDataset`` per split. States are the run's (preprocessed,
``zscore`` by default) features of bar t ++ the env's 4 account columns at decision t (from the
behaviour actions up to t-1: no look-ahead); behaviour actions are the labels (``behaviour``)
mixed with ``epsilon`` seeded uniform actions; rewards are the env's own (``replay_actions``:
fee, slippage, mode and the run's reward shaping), times ``reward_scale``; returns-to-go are
discounted with ``gamma`` to the end of the split range. The reward of decision t is known at the
close of bar t+1, i.e. at decision t+1: ``R_{t+1} = (R_t - r_t) / gamma``.

Acting (``act_sequence``) is sequential: a ``VecTradingEnv`` (one env per target,
``random_start=False``) steps through each range from a flat account; the return-to-go token
starts at the target and after each step becomes ``(R - r) / gamma`` with the realised reward
``r`` (clipped to the train returns-to-go's 0.1%..99.9% quantiles, as discounting divides by
gamma at every step). Windows restart every ``context_length // 2`` steps (the context then
holds between half and all of ``context_length`` steps; training windows contain every shorter
prefix, so this is in distribution) and a key/value cache makes each step cost three tokens.

The target return-to-go is chosen on the validation split: when the Trainer evaluates the
validation ranges this model trained with, the actions of every target in ``target_quantiles``
(quantiles of the train returns-to-go) are rolled out together (one env each), scored by the
backtester after costs, and the best-Sharpe target kept in the network buffer ``target_rtg``,
which the checkpoint saves. Any other ranges (test, ``himari backtest``, a restored model) use
the stored target; nothing at row t reads rows after t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from himari.plugin.api import ModelSpec, ParamCount, hookimpl

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
    behaviour: Literal["labels", "random"] = "labels"
    """Behaviour actions of the trajectories: the labels or seeded uniform actions."""
    epsilon: float = 0.2
    """Share of behaviour actions replaced by seeded uniform actions (coverage)."""
    stride: int = 1
    """Train windows start every stride steps (validation windows every context_length)."""
    target_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
    """Target returns-to-go tried on validation: these quantiles of the train returns-to-go."""

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


# ----------------------------------------------------------------- pure pieces (tested alone)

def expectile_loss(u: Any, tau: float) -> Any:
    """Asymmetric squared loss ``|tau - 1(u < 0)| * u^2`` (elementwise)."""
    import torch

    weight = torch.where(u < 0, 1.0 - tau, tau)
    return weight * u * u


def gaussian_nll(target: Any, mu: Any, log_sigma: Any) -> Any:
    """Gaussian negative log-likelihood without the constant (elementwise)."""
    import torch

    return 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma


def guidance_coefficient(step: int, config: CGDTConfig) -> float:
    """c after ``step`` policy optimiser steps: linear from 0 to ``guidance_weight``."""
    if config.guidance_warmup == 0:
        return float(config.guidance_weight)
    return float(config.guidance_weight) * min(1.0, step / config.guidance_warmup)


def next_return_to_go(rtg: Any, reward: Any, gamma: float, low: float, high: float) -> Any:
    """The return-to-go token after a realised (scaled) reward: ``(R - r) / gamma``, clipped to
    ``[low, high]`` (numpy arrays)."""
    import numpy as np

    return np.clip((rtg - reward) / gamma, low, high)


def window_start(t: int, context_length: int) -> int:
    """First step of the inference window at step t: windows restart every ``H = L // 2``
    steps and keep the previous H steps, so ``t - start`` stays in ``[H, L - 1]`` once t >= H."""
    h = max(1, context_length // 2)
    return max(0, (t // h - 1) * h) if context_length > 1 else t


# -------------------------------------------------------------------------------- networks

def _modules() -> dict[str, type]:
    """The torch classes, built on first use so importing this module never imports torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        """Pre-LN GPT block; ``forward`` takes an optional key/value cache of earlier tokens."""

        def __init__(self, d: int, heads: int, dropout: float) -> None:
            super().__init__()
            self.heads, self.p = heads, dropout
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            self.drop = nn.Dropout(dropout)

        def forward(self, x: Any, mask: Any = None, cache: Any = None,
                    rows: Any = None) -> tuple[Any, tuple[Any, Any]]:
            """``mask`` None: causal over x (no cache); else bool ``[Q, P + N]`` (True attends).
            ``rows`` (optional): compute the output of these tokens of x only (their queries,
            residuals and MLP; keys and values still come from every token)."""
            b, n, d = x.shape
            q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
                       for t in self.qkv(self.ln1(x)).split(d, dim=-1))
            if rows is not None:
                q, x = q[:, :, rows], x[:, rows]
            if cache is not None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            p = self.p if self.training else 0.0
            if mask is None:
                att = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
            else:
                att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, x.shape[1], d)))
            x = x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))
            return x, (k, v)

    def run_blocks(blocks: Any, h: Any, mask: Any = None, caches: Any = None,
                   rows: Any = None) -> tuple[Any, list[Any]]:
        """The blocks in order; the last one computes only ``rows`` (the tokens whose output is
        read: a third of the tokens, so about a ninth of the work of a 6-block stack is saved).
        Returns the hidden states (of ``rows`` when given) and the per-block key/value caches."""
        n = h.shape[1]
        past = 0 if caches is None else caches[0][0].shape[2]
        new = []
        for i, block in enumerate(blocks):
            cache = None if caches is None else caches[i]
            if rows is not None and i == len(blocks) - 1:
                full = mask if mask is not None else torch.ones(n, past + n, dtype=torch.bool,
                                                                device=h.device).tril(diagonal=past)
                h, kv = block(h, full[rows], cache, rows)
            else:
                h, kv = block(h, mask, cache)
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

        def run(self, x: Any, mask: Any = None, caches: Any = None, rows: Any = None) -> tuple[Any, list[Any]]:
            """The blocks over (normalised, dropped-out) token embeddings; returns the hidden
            states (of ``rows``) and the new per-layer key/value caches."""
            return run_blocks(self.blocks, self.drop(self.embed_ln(x)), mask, caches, rows)

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
        return-to-go from each action token; optional query tokens (module docstring)."""

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
            rows = torch.arange(2 * t, 3 * t) if query is not None else torch.arange(1, 2 * t, 2)
            h, _ = run_blocks(self.blocks, self.embed_ln(x), mask, None, rows.to(states.device))
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

        def states(self, obs: Any) -> Any:
            """Features ++ scaled account columns (``obs [..., F + 4]``)."""
            return torch.cat([obs[..., :self.n_features], obs[..., self.n_features:] * self.account_scale], dim=-1)

    return {"Block": Block, "Policy": Policy, "Critic": Critic, "CGDTNetwork": CGDTNetwork, "run_blocks": run_blocks}


def build_network(config: CGDTConfig, n_features: int) -> Any:
    return _modules()["CGDTNetwork"](config, n_features)


# ------------------------------------------------------------------------------ inference

class Decoder:
    """Incremental policy over G parallel sequences with a key/value cache.

    ``logits(rtg [G], state [G, S], prev_action [G] or None)`` gives the logits at step t (the
    calls' count) from the tokens of steps ``window_start(t) .. t``; at a window restart the
    cache is rebuilt from the recorded history in one pass, otherwise only the three new tokens
    (``a_{t-1}, R_t, s_t``) are computed. Equal to the policy's full forward on that window."""

    def __init__(self, network: Any, context_length: int, n: int, g: int) -> None:
        import torch

        self.net, self.L = network, context_length
        dev = network.rtg_scale.device
        self.rtg = torch.zeros(g, n, device=dev)
        self.states = torch.zeros(g, n, network.n_features + ACCOUNT_COLUMNS, device=dev)
        self.actions = torch.zeros(g, n, dtype=torch.long, device=dev)
        self.t, self.start, self.caches = 0, 0, None

    def _full(self, t: int) -> Any:
        import torch

        pol, ws = self.net.policy, self.start
        x = pol.tokens(self.rtg[:, ws:t + 1], self.states[:, ws:t + 1], self.actions[:, ws:t + 1], 0)
        x = x[:, :-1]  # no action token for step t: not decided yet
        h, self.caches = pol.run(x, rows=torch.tensor([x.shape[1] - 1], device=x.device))
        return h[:, -1]

    def _incremental(self, t: int) -> Any:
        import torch

        pol, ws = self.net.policy, self.start
        pos = torch.tensor([t - 1 - ws, t - ws], device=self.rtg.device)
        x = torch.cat([pol.token("action", self.actions[:, t - 1:t], pos[:1]),
                       pol.token("return", self.rtg[:, t:t + 1], pos[1:]),
                       pol.token("state", self.states[:, t:t + 1], pos[1:])], dim=1)
        p = self.caches[0][0].shape[2]
        mask = torch.ones(3, p + 3, dtype=torch.bool, device=x.device).tril(diagonal=p)
        h, self.caches = pol.run(x, mask, self.caches, rows=torch.tensor([2], device=x.device))
        return h[:, -1]

    def logits(self, rtg: Any, state: Any, prev_action: Any = None) -> Any:
        t = self.t
        if prev_action is not None and t > 0:
            self.actions[:, t - 1] = prev_action
        self.rtg[:, t] = rtg
        self.states[:, t] = state
        ws = window_start(t, self.L)
        if t == 0 or ws != self.start or self.caches is None:
            self.start = ws
            h = self._full(t)
        else:
            h = self._incremental(t)
        self.t += 1
        return self.net.policy.logits(h).float()


def rollout_targets(network: Any, config: CGDTConfig, features: Any, open_: Any, close: Any,
                    targets: Any, env: Any, on_step: Callable[[], None] | None = None) -> Any:
    """Greedy actions ``[G, n]`` along one range for each of G target returns-to-go, one env per
    target from a flat account; the last row takes no decision (HOLD). ``on_step`` is called
    after each of the ``n - 1`` decisions (progress)."""
    import numpy as np
    import torch

    from himari.plugin.api import Market, VecTradingEnv

    n, g = len(features), len(targets)
    out = np.ones((g, n), dtype=np.int8)
    if n < 2:
        return out
    dev = network.rtg_scale.device
    market = Market(np.ascontiguousarray(open_, dtype=np.float64), np.ascontiguousarray(close, dtype=np.float64),
                    None, warmup=0)
    venv = VecTradingEnv(market, n_envs=g, episode_length=n - 1, mode=env.mode, fee=env.fee,
                         slippage=env.slippage, reward=env, random_start=False, warmup=0, seed=0)
    obs, _ = venv.reset()
    feats = torch.from_numpy(np.nan_to_num(np.asarray(features, dtype=np.float32), nan=0.0, posinf=0.0,
                                           neginf=0.0)).to(dev)
    scale = float(network.rtg_scale)
    low, high = (float(x) for x in network.rtg_bounds)
    rtg = np.asarray(targets, dtype=np.float64)
    decoder = Decoder(network, config.context_length, n, g)
    prev = None
    for t in range(n - 1):
        account = torch.from_numpy(np.array(obs[:, -1, -ACCOUNT_COLUMNS:], dtype=np.float32)).to(dev)
        obs_t = torch.cat([feats[t].expand(g, -1), account], dim=1)
        r_in = torch.from_numpy((rtg / scale).astype(np.float32)).to(dev)
        act = decoder.logits(r_in, network.states(obs_t), prev).argmax(-1)
        out[:, t] = act.cpu().numpy()
        obs, reward, *_ = venv.step(out[:, t].astype(np.int64))
        rtg = next_return_to_go(rtg, np.asarray(reward, dtype=np.float64) * config.reward_scale, config.gamma,
                                low, high)
        prev = act
        if on_step is not None:
            on_step()
    return out


# ----------------------------------------------------------------------------------- data

class _Windows:
    """Windows of ``L`` steps by tensor indexing: ``(obs [B, L, F+4], actions [B, L], rtg [B, L])``."""

    def __init__(self, obs: Any, actions: Any, rtg: Any, starts: Any, length: int) -> None:
        import torch

        self.obs, self.actions, self.rtg, self.starts = obs, actions, rtg, starts
        self.offsets = torch.arange(length)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: Any) -> tuple[Any, Any, Any]:
        k = self.starts[idx][:, None] + self.offsets
        return self.obs[k], self.actions[k], self.rtg[k]


class CGDT:
    """The model plugin instance (see ``himari.plugin.api.Model`` for the lifecycle)."""

    paradigm = "offline-rl"

    def __init__(self, config: CGDTConfig, ctx: Any) -> None:
        self.config = config
        self.env = ctx.env
        self.n_features = ctx.n_features
        self.network = build_network(config, ctx.n_features)
        self._train: _Windows | None = None
        self._seed = 0
        self._tune_ranges: list[tuple[int, int]] | None = None

    # ------------------------------------------------------------------ data

    def dataset(self, ctx: Any, split: str) -> Any:
        """Trajectory windows of the split (``TrajectoryDataset``) with the run's features in the
        state; the train split also fits the return-to-go buffers, and the validation split's
        ranges are remembered as the ones the target is tuned on."""
        import numpy as np
        import torch

        from himari.plugin.api import TrajectoryDataset

        c = self.config
        train = split == "train"
        ds = TrajectoryDataset(ctx.data, split, context_length=c.context_length, gamma=c.gamma,
                               stride=c.stride if train else c.context_length, actions=c.behaviour,
                               epsilon=c.epsilon, fee=ctx.env.fee, slippage=ctx.env.slippage, mode=ctx.env.mode,
                               reward=ctx.env, features=ctx.features, seed=ctx.seed * 2 + (0 if train else 1))
        obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        rtg = ds.returns_to_go.astype(np.float32) * np.float32(c.reward_scale)
        if train:
            self._fit_returns(rtg[ds.index])
            self._seed = int(ctx.seed)
        elif split == "validation":
            self._tune_ranges = [(int(a), int(b)) for a, b in ctx.splits["validation"]]
        windows = _Windows(torch.from_numpy(obs), torch.from_numpy(ds.actions.astype(np.int64)),
                           torch.from_numpy(rtg), torch.from_numpy(ds.window_starts.astype(np.int64)),
                           c.context_length)
        if train:
            self._train = windows
        return windows

    def _fit_returns(self, rtg: Any) -> None:
        """Return-to-go scale (std), clip range and target grid from the train transitions."""
        import numpy as np
        import torch

        net = self.network
        std = float(np.std(rtg)) if len(rtg) else 1.0
        with torch.no_grad():
            net.rtg_scale.fill_(std if np.isfinite(std) and std > 1e-8 else 1.0)
            net.rtg_bounds.copy_(torch.tensor(np.quantile(rtg, RTG_CLIP_QUANTILES), dtype=torch.float32))
            net.rtg_grid.copy_(torch.tensor(np.quantile(rtg, self.config.target_quantiles), dtype=torch.float32))
            net.target_rtg.fill_(float(net.rtg_grid[-1]))

    # ---------------------------------------------------------------- critic

    def critic_loss(self, obs: Any, actions: Any, rtg: Any) -> Any:
        """Expectile-weighted Gaussian NLL of the normalised return-to-go at the data actions
        (weight ``2 |tau - 1(R < mu)|``: 1 everywhere at tau = 0.5)."""
        import torch

        net = self.network
        mu, log_sigma = net.critic(net.states(obs), actions)
        target = rtg.float() / net.rtg_scale
        tau = self.config.critic_expectile
        weight = 2.0 * torch.where(target < mu, 1.0 - tau, tau)
        return (weight.detach() * gaussian_nll(target, mu, log_sigma)).mean()

    def train_critic(self, windows: _Windows, steps: int, seed: int) -> float:
        """Pre-train the critic on the train windows with its own Adam (seeded batches), then
        freeze it; returns the mean NLL of the last 10% of the steps."""
        import numpy as np
        import torch

        from himari.plugin.api import phase

        c, net = self.config, self.network
        dev = net.rtg_scale.device
        critic = net.critic
        critic.requires_grad_(True)
        opt = torch.optim.Adam(critic.parameters(), lr=c.critic_lr)
        rng = np.random.default_rng([seed, 17])
        tail: list[float] = []
        try:
            with torch.enable_grad(), torch.autocast(dev.type, enabled=False), \
                    phase(f"cgdt: critic pre-training, {steps:,} steps", total=steps) as advance:
                for i in range(steps):
                    idx = torch.from_numpy(rng.integers(0, len(windows), size=min(c.critic_batch_size, len(windows))))
                    obs, actions, rtg = (x.to(dev) for x in windows[idx])
                    loss = self.critic_loss(obs, actions, rtg)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
                    opt.step()
                    if i >= steps - max(1, steps // 10):
                        tail.append(float(loss.detach()))
                    advance()
        finally:
            critic.requires_grad_(False)
            for p in critic.parameters():
                p.grad = None
        nll = float(np.mean(tail)) if tail else float("nan")
        with torch.no_grad():
            net.critic_ready.fill_(1)
            net.critic_nll.fill_(nll)
        return nll

    # ------------------------------------------------------------------ loss

    def relaxed_actions(self, logits: Any) -> Any:
        """The predicted action as critic input weights ``[B, T, 3]`` (``action_relaxation``)."""
        import torch
        import torch.nn.functional as F

        if self.config.action_relaxation == "gumbel-st":
            return F.gumbel_softmax(logits.float(), tau=1.0, hard=True)
        return torch.softmax(logits.float(), dim=-1)

    def guidance(self, obs: Any, actions: Any, rtg: Any, logits: Any) -> tuple[Any, Any]:
        """Expectile loss of ``(R - mu) / sigma`` at the predicted actions (the critic's
        parameters are frozen; the gradient reaches the policy through the relaxed action)."""
        import torch

        net = self.network
        mu, log_sigma = net.critic(net.states(obs), actions, self.relaxed_actions(logits))
        u = (rtg.float() / net.rtg_scale - mu) * torch.exp(-log_sigma)
        return expectile_loss(u, self.config.guidance_expectile).mean(), mu

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        net = self.network
        training = net.training and torch.is_grad_enabled()
        if training and int(net.critic_ready) == 0 and self._train is not None:
            self.train_critic(self._train, self.config.critic_steps, self._seed)
        obs, actions, rtg = batch
        actions = actions.long()
        logits = net.policy(rtg.float() / net.rtg_scale, net.states(obs.float()), actions)
        nll = F.cross_entropy(logits.float().reshape(-1, N_ACTIONS), actions.reshape(-1))
        guide, mu = self.guidance(obs.float(), actions, rtg, logits)
        c = guidance_coefficient(int(net.policy_steps), self.config)
        loss = (nll + c * guide) / (1.0 + c)
        if training:
            net.policy_steps += 1
        with torch.no_grad():
            acc = float((logits.argmax(-1) == actions).float().mean())
        return loss, {"action_nll": float(nll.detach()), "guidance": float(guide.detach()), "guidance_c": c,
                      "critic_mu": float(mu.detach().mean()), "critic_nll": float(net.critic_nll),
                      "action_accuracy": acc}

    # ------------------------------------------------------------------- act

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("cgdt decides from the account state and the realised rewards: use "
                          "act_sequence(features, open, close, ranges, env)")

    def _rollout(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any, targets: Any,
                 what: str) -> Any:
        """Actions ``[G, rows]`` of each target along every range (concatenated), reported as
        the phase ``what`` (one unit per decision step)."""
        import numpy as np

        from himari.plugin.api import phase

        steps = sum(max(b - a - 1, 0) for a, b in ranges)
        with phase(f"cgdt: {what}, {steps:,} steps", total=steps) as advance:
            parts = [rollout_targets(self.network, self.config, np.asarray(features[a:b]), np.asarray(open_[a:b]),
                                     np.asarray(close[a:b]), targets, env, advance) for a, b in ranges if b > a]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(targets), 0), dtype=np.int8)

    def _tune(self, all_actions: Any, open_: Any, close: Any, ranges: Any, env: Any) -> int:
        """Index of the best validation Sharpe after costs among the targets' actions."""
        import numpy as np

        from himari.plugin.api import evaluate_actions

        sharpe = [evaluate_actions(np.asarray(open_), np.asarray(close), ranges, acts, env)["sharpe"]
                  for acts in all_actions]
        sharpe = [s if np.isfinite(s) else -np.inf for s in sharpe]
        return int(np.argmax(sharpe))

    def act_sequence(self, features: Any, open: Any, close: Any, ranges: Any, env: Any) -> Any:  # noqa: A002
        """Greedy actions along each range from a flat account, conditioned on the stored target
        return-to-go; on the validation ranges of this training session, first pick the target
        (module docstring) and store it."""
        import torch

        env = env if env is not None else self.env
        ranges = [(int(a), int(b)) for a, b in ranges]
        net = self.network
        if self._tune_ranges is not None and ranges == self._tune_ranges:
            grid = net.rtg_grid.detach().cpu().numpy()
            all_actions = self._rollout(features, open, close, ranges, env, grid,
                                        f"choosing the target return-to-go on validation ({len(grid)} targets)")
            best = self._tune(all_actions, open, close, ranges, env)
            with torch.no_grad():
                net.target_rtg.fill_(float(grid[best]))
            return all_actions[best]
        return self._rollout(features, open, close, ranges, env, [float(net.target_rtg)], "acting")[0]


def build(config: CGDTConfig, ctx: Any) -> CGDT:
    return CGDT(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="cgdt",
        summary="Critic-Guided Decision Transformer: return-conditioned GPT policy, Gaussian critic guidance",
        config=CGDTConfig,
        factory=build,
        paradigm="offline-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
    ))
