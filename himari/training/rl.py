"""Reusable pieces of online reinforcement learning in the native env (PPO-LSTM uses them;
FLAG-TRADER's PPO can reuse them as they are).

- ``OnlineRLConfig``: the settings every online-RL model shares (experience budget in episodes,
  envs, rollout length, episode length, update epochs, minibatches, discount, GAE lambda,
  learning-rate annealing). A model's ``<Name>Config`` derives from it; the Trainer reads these
  fields to plan the run (``plan``).
- ``gae``: generalised advantage estimation (Schulman et al. 2016) over ``[T, N]`` rollouts with
  episode-start flags; an episode cut by its length (truncated) bootstraps from the value of
  its final observation (the env's ``info["final_obs"]``), one ended by bankruptcy
  (terminated) does not.
- ``RolloutBuffer``: one rollout of N envs x T steps plus the recurrent state each env had at
  its start; indexing it by env gives whole sequences ``[T, B, ...]`` so a recurrent network
  trains on them in one batched pass (minibatches are sets of envs, never cut sequences).
- ``train_env``: a ``VecTradingEnv`` on random windows of the epoch's env source (the train
  split's longest range by default) with its costs, mode and reward shaping (``EnvConfig``).
- ``sequential_actions``: deterministic evaluation of a policy that sees the account state: a
  1-env ``VecTradingEnv`` (``random_start=False``) steps through each range of a split from a
  flat account, so the account columns the policy sees are exactly the env's, and the actions it
  returns are then scored by the backtester (which agrees with the env bit for bit).
- ``observation_filter``: the context in which evaluation applies a run's ``ObservationFilter``
  (running normalisation of what the policy sees) to every observation ``sequential_actions``
  hands to a policy, frozen; ``active_observation_filter`` is the one in force.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OnlineRLConfig:
    """Settings shared by online-RL models (derive a model's config from this class)."""

    env_episodes: int = 200
    """Experience budget: episodes of ``episode_length`` steps (env steps = episodes x length)."""
    n_envs: int = 8
    """Envs stepping together in the VecTradingEnv (each on its own random window)."""
    rollout_steps: int = 128
    """Steps per env per rollout (the sequence length the recurrent core trains on)."""
    episode_length: int = 2048
    """Steps per training episode (shorter when the train split ends first)."""
    update_epochs: int = 4
    """Passes over each rollout."""
    n_minibatches: int = 4
    """Minibatches per pass; each holds n_envs / n_minibatches whole env sequences."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run."""

    def __post_init__(self) -> None:
        for name in ("env_episodes", "n_envs", "rollout_steps", "episode_length", "update_epochs", "n_minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_envs % self.n_minibatches:
            raise ValueError(f"n_envs ({self.n_envs}) must be a multiple of n_minibatches ({self.n_minibatches})")
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("gamma and gae_lambda must be in [0, 1]")


@dataclass(frozen=True)
class Plan:
    """How the Trainer spreads an online-RL budget over its epochs."""

    iterations: int
    """Rollout + update cycles of the whole run."""
    iterations_per_epoch: int
    steps_per_iteration: int
    """Optimiser steps per cycle (update_epochs x n_minibatches)."""
    env_steps_per_iteration: int


def plan(cfg: OnlineRLConfig, epochs: int) -> Plan:
    total = max(1, math.ceil(cfg.env_episodes * cfg.episode_length / (cfg.n_envs * cfg.rollout_steps)))
    return Plan(total, max(1, math.ceil(total / max(1, epochs))), cfg.update_epochs * cfg.n_minibatches,
                cfg.n_envs * cfg.rollout_steps)


def gae(rewards: Any, values: Any, starts: Any, last_values: Any, last_starts: Any, gamma: float,
        lam: float, final_values: Any = None) -> tuple[Any, Any]:
    """Advantages and returns of a rollout (torch tensors ``[T, N]``).

    ``starts[t]`` is 1 where the observation of step t begins an episode (so the step before it
    ended one); ``last_values``/``last_starts`` ``[N]`` describe the observation after the last
    step. ``final_values[t]`` (``[T, N]``, optional) is the value of the final observation of
    the episode that step t truncated, and 0 where step t did not end an episode or ended it by
    termination. With ``d_t = starts[t+1]`` (``last_starts`` for the last step):
    ``delta_t = r_t + gamma (V_{t+1} (1 - d_t) + final_values[t]) - V_t`` and
    ``A_t = delta_t + gamma lam (1 - d_t) A_{t+1}``; returns are ``A + V``.
    """
    import torch

    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(last_values)
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            nonterminal = 1.0 - last_starts.to(rewards.dtype)
            next_values = last_values
        else:
            nonterminal = 1.0 - starts[t + 1].to(rewards.dtype)
            next_values = values[t + 1]
        bootstrap = next_values * nonterminal
        if final_values is not None:
            bootstrap = bootstrap + final_values[t]
        delta = rewards[t] + gamma * bootstrap - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


class RolloutBuffer:
    """One rollout of ``n_envs`` envs x ``steps`` steps (torch tensors on ``device``).

    Fields ``[T, N]`` (``obs`` ``[T, N, *obs_shape]``: ``[T, N, D]``, or ``[T, N, W, D]`` for
    windowed observations): ``obs``, ``actions``, ``logprobs``, ``values``,
    ``rewards``, ``starts`` (1.0 where obs begins an episode), ``final_values`` (the value of
    the final observation of an episode step t truncated, else 0: ``gae``'s bootstrap), ``bars``
    (int64: the bar of ``ctx.env_source`` each step decided at, so the step is filled at
    ``open[bar + 1]`` and marked at ``close[bar + 1]``; -1 where the collector does not know),
    ``rows`` (int64: the prepared row of each observation's bar, ``-1`` where the bar is not a
    prepared row: a synthetic market, or a buffer filled by other code), then
    ``advantages`` and ``returns`` after ``finish``. ``state`` is the recurrent state at the rollout's first step,
    a tuple of tensors with the env axis at dim 1 (``nn.LSTM``'s ``(h, c)`` layout).
    ``buf[idx]`` (a LongTensor of env indices) is a dict of whole sequences for those envs: what
    a recurrent model's ``loss`` takes.
    """

    def __init__(self, steps: int, n_envs: int, obs_dim: int | tuple[int, ...], device: str = "cpu") -> None:
        import torch

        self.steps, self.n_envs = steps, n_envs
        f32 = dict(dtype=torch.float32, device=device)
        obs_shape = (obs_dim,) if isinstance(obs_dim, int) else tuple(obs_dim)
        self.obs = torch.zeros(steps, n_envs, *obs_shape, **f32)
        self.actions = torch.zeros(steps, n_envs, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(steps, n_envs, **f32)
        self.values = torch.zeros(steps, n_envs, **f32)
        self.rewards = torch.zeros(steps, n_envs, **f32)
        self.starts = torch.zeros(steps, n_envs, **f32)
        self.final_values = torch.zeros(steps, n_envs, **f32)
        self.bars = torch.full((steps, n_envs), -1, dtype=torch.long, device=device)
        self.advantages = torch.zeros(steps, n_envs, **f32)
        self.returns = torch.zeros(steps, n_envs, **f32)
        self.rows = torch.full((steps, n_envs), -1, dtype=torch.long, device=device)
        self.state: tuple[Any, ...] = ()

    def finish(self, last_values: Any, last_starts: Any, gamma: float, lam: float) -> None:
        self._bootstrap = (last_values, last_starts, gamma, lam)
        self.recompute_advantages()

    def recompute_advantages(self) -> None:
        """GAE advantages and returns from the current ``rewards`` (after ``finish``; a training
        method's ``on_rollout`` hook may have reshaped the rewards)."""
        last_values, last_starts, gamma, lam = self._bootstrap
        self.advantages, self.returns = gae(self.rewards, self.values, self.starts, last_values, last_starts,
                                            gamma, lam, self.final_values)

    def __len__(self) -> int:
        return self.n_envs

    def __getitem__(self, idx: Any) -> dict[str, Any]:
        return {"obs": self.obs[:, idx], "actions": self.actions[:, idx], "logprobs": self.logprobs[:, idx],
                "values": self.values[:, idx], "starts": self.starts[:, idx],
                "advantages": self.advantages[:, idx], "returns": self.returns[:, idx],
                "rows": self.rows[:, idx], "state": tuple(s[:, idx] for s in self.state)}


def train_env(ctx: Any, cfg: OnlineRLConfig, seed: int, window: int = 1, device: str = "cpu") -> Any:
    """A ``VecTradingEnv`` of ``cfg.n_envs`` envs on random windows of ``ctx.env_source`` (the
    market and env config the Trainer chose for this epoch: by default the longest range of the
    train split, over the run's preprocessed features, with its costs, mode and reward shaping);
    observations of ``window`` bars; on ``device`` (the market is copied to the GPU for ``cuda``)."""
    from himari.engine import Market, VecTradingEnv
    from himari.errors import DataError

    source = ctx.env_source
    if source is None:
        raise DataError("no env source: the training envs are built by the Trainer's online-RL loop")
    n = len(source.close)
    if n - source.warmup - window - 1 < 1:
        raise DataError(f"the training market ({n} bars) is too short for windows of {window} bars")
    market = Market(np.ascontiguousarray(source.open, dtype=np.float64),
                    np.ascontiguousarray(source.close, dtype=np.float64),
                    np.ascontiguousarray(source.features, dtype=np.float32), warmup=source.warmup, device=device)
    env = source.config
    return VecTradingEnv(market, n_envs=cfg.n_envs, episode_length=min(cfg.episode_length, n - window - 1),
                         mode=env.mode, fee=env.fee, slippage=env.slippage, reward=env, window=window, seed=int(seed))


_FILTER: ContextVar[Any] = ContextVar("himari_observation_filter", default=None)


@contextlib.contextmanager
def observation_filter(filter_: Any) -> Iterator[Any]:
    """Evaluate with ``filter_`` (an ``ObservationFilter``, or None for none): inside the
    ``with`` block ``sequential_actions`` passes every observation through
    ``filter_.observations(obs, update=False)`` before the policy sees it. The Trainer's
    evaluations and ``TrainedPolicy.actions`` (``himari backtest``) enter it with the run's
    filter, so any policy that acts through ``sequential_actions`` sees at evaluation what it
    saw in training, without passing the filter along itself. A context variable: threads and
    nested blocks each see their own."""
    token = _FILTER.set(filter_)
    try:
        yield filter_
    finally:
        _FILTER.reset(token)


def active_observation_filter() -> Any:
    """The ``ObservationFilter`` of the innermost ``observation_filter`` block, or None."""
    return _FILTER.get()


PolicyStep = Callable[[np.ndarray, np.ndarray], Any]
"""``step(obs, starts [n] bool) -> actions [n]`` or ``(actions [n], probabilities [n, 3])``: one
decision per env; ``obs`` is float32 ``[n, D]`` (``window`` 1) or ``[n, W, D]`` (the last W bars,
oldest first); ``starts`` marks the first observation of an episode (reset any recurrent state
there). The probabilities (softmax of the policy's action logits) are needed only by an
execution rule's confidence threshold."""


def sequential_actions(step: PolicyStep, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
                       ranges: Sequence[tuple[int, int]], env: Any, window: int = 1,
                       execution: Any = None) -> np.ndarray:
    """Roll a policy through each range in order from a flat account (a 1-env VecTradingEnv,
    ``random_start=False``, with the run's fee, slippage and mode); returns one action per row of
    the concatenated ranges, the last row of each range (which takes no decision) HOLD.

    With ``execution`` (the run's ``ExecutionConfig``) each decision passes through an
    ``ExecutionFilter`` (one per range) before it reaches the env, so the account columns the
    policy sees next, and the actions returned, are the executed ones.

    With ``window`` W > 1 the policy sees the env's windowed observation ``[1, W, D]``, exactly as
    a training env of that window shows it: the features of the W - 1 rows before each decision
    row too (rows before the range start are earlier rows of ``features``, zeros before row 0)
    and zero account columns before the range start. The market then begins W - 1 rows before
    the range and the episode at the range start (the env's ``warmup``), so the decisions and
    fills stay on the range's own rows.

    Inside an ``observation_filter(f)`` block every observation passes through
    ``f.observations(obs, update=False)`` before ``step`` sees it (the statistics stay frozen)."""
    from himari.engine import Market, VecTradingEnv
    from himari.evaluation.execution import ExecutionFilter, active

    execution_on = active(execution)
    filter_ = active_observation_filter()
    parts = []
    for a, b in ranges:
        n = b - a
        out = np.ones(n, dtype=np.int8)
        if n >= 2:
            # Rows [a - lead, a) only fill the first windows (no decision or fill happens on
            # them); rows before 0 get zero features and the first bar's prices.
            lead = window - 1
            have = min(lead, a)
            o = np.ascontiguousarray(open_[a - have:b], dtype=np.float64)
            c = np.ascontiguousarray(close[a - have:b], dtype=np.float64)
            f = np.ascontiguousarray(features[a - have:b], dtype=np.float32)
            if lead > have:
                o, c = np.r_[np.full(lead - have, o[0]), o], np.r_[np.full(lead - have, o[0]), c]
                f = np.concatenate([np.zeros((lead - have, f.shape[1]), dtype=np.float32), f])
            market = Market(o, c, f, warmup=lead)
            venv = VecTradingEnv(market, n_envs=1, episode_length=n - 1, mode=env.mode, fee=env.fee,
                                 slippage=env.slippage, random_start=False, warmup=lead, window=window, seed=0)
            obs, _ = venv.reset()
            starts = np.ones(1, dtype=bool)
            rules = ExecutionFilter(1, env.mode, execution) if execution_on else None
            for t in range(n - 1):
                seen = obs[:, -1, :] if window == 1 else obs
                if filter_ is not None:
                    seen = filter_.observations(seen, update=False)
                decided = step(seen, starts)
                probs = None
                if isinstance(decided, tuple):
                    decided, probs = decided
                act = np.asarray(decided).reshape(1)
                if rules is not None:
                    act = rules.step(act, probs)
                out[t] = act[0]
                obs, _, term, trunc, _ = venv.step(act.astype(np.int64))
                starts = np.zeros(1, dtype=bool)
                if term[0]:  # bankrupt: the account stays liquidated (the backtester holds it flat)
                    out[t + 1:] = 1
                    break
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)



TrunkStep = Callable[[np.ndarray, np.ndarray], tuple[Any, Any]]
"""``step(obs, starts) -> (actions [1], hidden [1, H])``: a ``PolicyStep`` that also returns the
representation its action head read (a NumPy array or a torch tensor)."""


def sequential_trunk(step: TrunkStep, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
                     ranges: Sequence[tuple[int, int]], env: Any, window: int = 1) -> np.ndarray:
    """The representation a stateful policy's action head reads at each row of the concatenated
    ``ranges`` as it acts through them with ``sequential_actions`` (from a flat account, its own
    actions filling): float32 ``[n, H]``, NaN at rows that take no decision (the last row of each
    range, rows after a bankruptcy). What a model's ``trunk_sequence`` returns, so a training
    method can score heads on the trunk over a validation split."""
    starts_at: list[int] = []
    offset = 0
    for a, b in ranges:
        if b - a >= 2:
            starts_at.append(offset)
        offset += b - a
    total = offset
    rows: list[int] = []
    hidden: list[np.ndarray] = []
    pos = {"k": -1, "t": 0}

    def recording(obs: np.ndarray, starts: np.ndarray) -> Any:
        if bool(np.asarray(starts).any()):
            pos["k"], pos["t"] = pos["k"] + 1, 0
        actions, h = step(obs, starts)
        h = h.detach().float().cpu().numpy() if hasattr(h, "detach") else np.asarray(h, dtype=np.float32)
        rows.append(starts_at[pos["k"]] + pos["t"])
        hidden.append(np.asarray(h, dtype=np.float32).reshape(-1))
        pos["t"] += 1
        return actions

    sequential_actions(recording, features, open_, close, ranges, env, window=window)
    width = hidden[0].shape[0] if hidden else 0
    out = np.full((total, width), np.nan, dtype=np.float32)
    if hidden:
        out[np.asarray(rows)] = np.stack(hidden)
    return out
