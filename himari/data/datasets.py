"""Torch datasets for the five model families, as views over a prepared directory.

- ``TabularDataset``: ``(features[t], label[t])`` for the MLP.
- ``TransitionDataset``: ``(s, a, r, s', done)`` for offline RL; ``s = features[t] ++ account[t]``
  exactly like the env's observation (window 1), rewards from the native env's reward function
  (``himari.engine.replay_actions``) with the configured fee, slippage, mode and shaping, so
  offline and online rewards agree.
- ``TrajectoryDataset``: windows of ``(states, actions, rewards, returns_to_go, timesteps)`` of
  ``context_length`` steps for CGDT (decision-transformer style).
- ``SequenceDataset``: windows of ``length`` feature rows ending at t, with the label at t, for
  FLAG-TRADER.

Common rules: items are views (``torch.from_numpy`` of memory-mapped or once-computed arrays, no
per-item copies); ``features`` (default: the prepared raw features) is what the states are built
from, so a model passes its run's preprocessed features (``ctx.features``) and nothing is
overwritten afterwards; an item never spans two ranges of its split (so never a split boundary,
an embargo gap or two symbols); everything random is driven by ``seed``. A split's ranges are
the data's ``split(name)``, or ``ranges=`` when given: inside a run, a model passes the run's own
(``ranges=ctx.splits[split]``), which a walk-forward fold sets.
torch is imported only when an item is built, so importing this module stays cheap.

The classes implement the map-style dataset protocol (``__len__``/``__getitem__``) that
``torch.utils.data.DataLoader`` uses; ``permutation(epoch)`` gives a seeded shuffle order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from himari.data.labels import HOLD
from himari.data.prepared import PreparedData
from himari.data.splits import Ranges, rows_of
from himari.errors import DataError

ActionSource = str | np.ndarray | Callable[[np.ndarray], np.ndarray]


def _torch() -> Any:
    import torch

    return torch


def _open(data: PreparedData | str | os.PathLike[str]) -> PreparedData:
    return data if isinstance(data, PreparedData) else PreparedData(data)


def _checked(ranges: Ranges, data: PreparedData) -> Ranges:
    """``ranges`` given in place of a named split (a run's own, ``ctx.splits[split]``): row
    ranges ``[a, b)`` inside the data."""
    out = [(int(a), int(b)) for a, b in ranges]
    for a, b in out:
        if not 0 <= a <= b <= data.num_samples:
            raise DataError(f"ranges: [{a}, {b}) is not a range of rows of {data.path} (0 .. {data.num_samples})")
    return out


class _Base:
    """Shared plumbing: the split's ranges, the feature array, seed and the seeded shuffle."""

    def __init__(self, data: PreparedData | str | os.PathLike[str], split: str, fold: int | None,
                 features: np.ndarray | None, seed: int, ranges: Ranges | None = None) -> None:
        self.data = _open(data)
        self.split = split
        self.fold = fold
        self.ranges: Ranges = self.data.split(split, fold) if ranges is None else _checked(ranges, self.data)
        self.seed = int(seed)
        if features is None:
            features = self.data.features
        elif len(features) != self.data.num_samples:
            raise DataError(f"features: expected one row per prepared row ({self.data.num_samples}), "
                            f"got {len(features)}")
        self.features = features

    def permutation(self, epoch: int = 0) -> np.ndarray:
        """A shuffle of the item indices, determined by (seed, epoch)."""
        return np.random.default_rng([self.seed, int(epoch)]).permutation(len(self))  # type: ignore[arg-type]

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


class TabularDataset(_Base):
    """``(features[t], label[t])`` for every labelled row t of the split (float32 [F], int64)."""

    def __init__(self, data: PreparedData | str | os.PathLike[str], split: str = "train", *,
                 fold: int | None = None, features: np.ndarray | None = None, seed: int = 0,
                 ranges: Ranges | None = None) -> None:
        super().__init__(data, split, fold, features, seed, ranges)
        rows = rows_of(self.ranges)
        self.index = rows[np.asarray(self.data.labels)[rows] >= 0]

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, i: int) -> tuple[int, int]:
        """First and last prepared row an item reads."""
        t = int(self.index[i])
        return t, t

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        torch = _torch()
        t = int(self.index[i])
        x = torch.from_numpy(np.asarray(self.features[t]))
        return x, torch.tensor(int(self.data.labels[t]), dtype=torch.long)


def _behaviour_actions(source: ActionSource, labels: np.ndarray, features: np.ndarray,
                       rows: slice, rng: np.random.Generator, epsilon: float) -> np.ndarray:
    """Actions for rows ``rows`` from labels, a seeded random policy, an array or a callable."""
    n = rows.stop - rows.start
    if isinstance(source, str):
        if source == "labels":
            act = np.where(labels[rows] >= 0, labels[rows], HOLD).astype(np.int64)
        elif source == "random":
            act = rng.integers(0, 3, size=n)
        else:
            raise DataError(f"actions: expected 'labels', 'random', an array or a callable, got {source!r}")
    elif callable(source):
        act = np.asarray(source(np.asarray(features[rows])), dtype=np.int64).reshape(-1)
        if len(act) != n:
            raise DataError(f"actions: the behaviour policy returned {len(act)} actions for {n} rows")
    else:
        arr = np.asarray(source)
        if arr.ndim != 1:
            raise DataError(f"actions: expected a 1-D array over all prepared rows, got shape {arr.shape}")
        act = arr[rows].astype(np.int64)
    if epsilon > 0:
        flip = rng.random(n) < epsilon
        act = np.where(flip, rng.integers(0, 3, size=n), act)
    if act.size and (act.min() < 0 or act.max() > 2):
        raise DataError("actions: values must be 0 (SELL), 1 (HOLD) or 2 (BUY)")
    return act


class TransitionDataset(_Base):
    """Offline-RL transitions ``(s, a, r, s', done)`` over each range of the split.

    Each range is one episode starting flat; the behaviour policy is ``actions``: ``"labels"``
    (the labeler's classes, undefined -> HOLD), ``"random"`` (seeded uniform), a 1-D array over
    all prepared rows, or a callable mapping a range's features ``[n, F]`` to actions ``[n]``;
    ``epsilon`` mixes in seeded uniform actions. Rewards and account columns come from
    ``himari.engine.replay_actions`` with ``fee``, ``slippage``, ``mode`` and ``reward``
    (a ``RewardConfig``), i.e. from the same code the env runs. ``benchmark_weight`` (>= 0)
    subtracts that many times the log return of holding the asset over each step
    (``holding_log_returns``): at 1 a reward is the excess log return over buy-and-hold, so in a
    rising market staying long is no longer high reward by itself. ``done`` is True on the last
    transition of a range and on a bankruptcy (which ends the episode, as in the env).
    """

    def __init__(self, data: PreparedData | str | os.PathLike[str], split: str = "train", *,
                 fold: int | None = None, actions: ActionSource = "labels", epsilon: float = 0.0,
                 fee: float = 1e-3, slippage: float = 5e-4, mode: str = "long_flat",
                 reward: Any = None, features: np.ndarray | None = None, seed: int = 0,
                 benchmark_weight: float = 0.0, ranges: Ranges | None = None) -> None:
        super().__init__(data, split, fold, features, seed, ranges)
        from himari import engine

        if not (np.isfinite(benchmark_weight) and benchmark_weight >= 0):
            raise DataError(f"benchmark_weight must be finite and >= 0, got {benchmark_weight}")

        reward = reward if reward is not None else engine.RewardConfig()
        rng = np.random.default_rng(self.seed)
        feats, labels = self.features, np.asarray(self.data.labels)
        open_, close = np.asarray(self.data.open), np.asarray(self.data.close)
        obs_parts, act_parts, rew_parts, done_parts, row_parts, item_parts = [], [], [], [], [], []
        offset = 0
        for a, b in self.ranges:
            if b - a < 2:
                continue
            rows = slice(a, b)
            act = _behaviour_actions(actions, labels, feats, rows, rng, epsilon)
            rep = engine.replay_actions(open_[rows], close[rows], act, fee=fee, slippage=slippage,
                                        mode=mode, reward=reward)
            n = b - a
            bankrupt = np.flatnonzero(np.asarray(rep.equity)[1:] <= 1e-12)
            n_trans = int(bankrupt[0]) + 1 if len(bankrupt) else n - 1
            f = np.asarray(feats[rows], dtype=np.float32)
            obs = np.concatenate([f, np.asarray(rep.account, dtype=np.float32)], axis=1)
            rew = np.zeros(n, dtype=np.float32)
            rew[:n - 1] = np.asarray(rep.reward, dtype=np.float64) - benchmark_weight * holding_log_returns(close[rows])
            done = np.zeros(n, dtype=bool)
            done[n_trans - 1] = True
            obs_parts.append(obs)
            act_parts.append(act)
            rew_parts.append(rew)
            done_parts.append(done)
            row_parts.append(np.arange(a, b, dtype=np.int64))
            item_parts.append(offset + np.arange(n_trans, dtype=np.int64))
            offset += n
        if not obs_parts:
            raise DataError(f"split {split!r} has no range of at least 2 rows")
        self.observations = np.concatenate(obs_parts)
        """float32 [rows, F + 4]: features ++ the env's 4 account columns."""
        self.actions = np.concatenate(act_parts)
        self.rewards = np.concatenate(rew_parts)
        self.dones = np.concatenate(done_parts)
        self.source_rows = np.concatenate(row_parts)
        self.index = np.concatenate(item_parts)
        self.obs_dim = self.observations.shape[1]
        self.episode_ends = np.cumsum([len(x) for x in obs_parts])

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, i: int) -> tuple[int, int]:
        k = int(self.index[i])
        return int(self.source_rows[k]), int(self.source_rows[k + 1])

    def __getitem__(self, i: int) -> tuple[Any, Any, Any, Any, Any]:
        torch = _torch()
        k = int(self.index[i])
        return (torch.from_numpy(self.observations[k]), torch.tensor(int(self.actions[k])),
                torch.tensor(float(self.rewards[k])), torch.from_numpy(self.observations[k + 1]),
                torch.tensor(bool(self.dones[k])))


def holding_log_returns(close: np.ndarray) -> np.ndarray:
    """``log(close[t+1] / close[t])`` for each step decided at bar t: what holding the asset
    earned over the step, the benchmark an excess-return reward subtracts. It is known at the
    close of bar t+1, when the step's own reward is."""
    c = np.asarray(close, dtype=np.float64)
    return np.log(c[1:] / c[:-1])


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Returns-to-go ``G_t = r_t + gamma * G_{t+1}`` (vectorised through an EWM recursion)."""
    r = np.asarray(rewards, dtype=np.float64)[::-1]
    if len(r) == 0:
        return np.zeros(0)
    if gamma == 1.0:
        return np.cumsum(r)[::-1].copy()
    x = np.r_[0.0, r] / (1.0 - gamma)  # y_k = gamma * y_{k-1} + r_k with y_{-1} = 0
    y = pd.Series(x).ewm(alpha=1.0 - gamma, adjust=False).mean().to_numpy()[1:]
    return y[::-1].copy()


class TrajectoryDataset(TransitionDataset):
    """Windows of ``context_length`` steps: ``(states [L, F+4], actions [L], rewards [L],
    returns_to_go [L], timesteps [L])`` for CGDT.

    Episodes are the split's ranges (as in ``TransitionDataset``); returns-to-go are discounted
    with ``gamma`` to the end of the episode; timesteps count from the episode start. Windows
    start every ``stride`` steps and lie wholly inside one episode.
    """

    def __init__(self, data: PreparedData | str | os.PathLike[str], split: str = "train", *,
                 context_length: int = 64, gamma: float = 0.99, stride: int = 1, **kwargs: Any) -> None:
        super().__init__(data, split, **kwargs)
        if context_length < 1 or stride < 1:
            raise DataError(f"context_length and stride must be >= 1, got {context_length}, {stride}")
        self.context_length = int(context_length)
        self.gamma = float(gamma)
        n = len(self.observations)
        self.returns_to_go = np.zeros(n, dtype=np.float32)
        self.timesteps = np.zeros(n, dtype=np.int64)
        starts = []
        ep_start = 0
        for end in self.episode_ends:
            items = self.index[(self.index >= ep_start) & (self.index < end)]
            if len(items):
                last = int(items[-1]) + 1  # transitions ep_start .. last-1
                self.returns_to_go[ep_start:last] = discounted_returns(self.rewards[ep_start:last], self.gamma)
                self.timesteps[ep_start:end] = np.arange(end - ep_start)
                s = np.arange(ep_start, last - self.context_length + 1, stride, dtype=np.int64)
                starts.append(s)
            ep_start = int(end)
        self.window_starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.max_timestep = int(self.timesteps.max()) if n else 0

    def __len__(self) -> int:
        return len(self.window_starts)

    def rows(self, i: int) -> tuple[int, int]:
        s = int(self.window_starts[i])
        return int(self.source_rows[s]), int(self.source_rows[s + self.context_length - 1])

    def __getitem__(self, i: int) -> tuple[Any, Any, Any, Any, Any]:  # type: ignore[override]
        torch = _torch()
        s = int(self.window_starts[i])
        e = s + self.context_length
        return (torch.from_numpy(self.observations[s:e]), torch.from_numpy(self.actions[s:e]),
                torch.from_numpy(self.rewards[s:e]), torch.from_numpy(self.returns_to_go[s:e]),
                torch.from_numpy(self.timesteps[s:e]))


class SequenceDataset(_Base):
    """Windows of ``length`` feature rows ending at t, with the label at t: ``(x [L, F], y)``.

    Only windows wholly inside one range of the split and with a defined label at t are items;
    ends are taken every ``stride`` rows.
    """

    def __init__(self, data: PreparedData | str | os.PathLike[str], split: str = "train", *,
                 length: int = 256, stride: int = 1, fold: int | None = None,
                 features: np.ndarray | None = None, seed: int = 0, ranges: Ranges | None = None) -> None:
        super().__init__(data, split, fold, features, seed, ranges)
        if length < 1 or stride < 1:
            raise DataError(f"length and stride must be >= 1, got {length}, {stride}")
        self.length = int(length)
        labels = np.asarray(self.data.labels)
        ends = []
        for a, b in self.ranges:
            e = np.arange(a + self.length - 1, b, stride, dtype=np.int64)
            ends.append(e[labels[e] >= 0])
        self.window_ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.window_ends)

    def rows(self, i: int) -> tuple[int, int]:
        t = int(self.window_ends[i])
        return t - self.length + 1, t

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        torch = _torch()
        t = int(self.window_ends[i])
        x = torch.from_numpy(np.asarray(self.features[t - self.length + 1: t + 1]))
        return x, torch.tensor(int(self.data.labels[t]), dtype=torch.long)
