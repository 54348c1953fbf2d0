"""maml's task data for online-RL models: rollouts of the policy in envs over one task window.

An online-RL model has no labelled rows, so a task's support and query sets are rollouts
(Finn et al. 2017, section 5.3): the model's own ``task_rollout(ctx)`` collects one rollout in
fresh envs built from ``ctx.env_source``, which ``window_source`` makes the bars ``[a, b)`` of one
task window and nothing else, so an env over a window cannot read a bar outside it (an episode
of an observation window of W bars starts at the window's bar W - 1). The envs are seeded per
(run seed, cycle, task, support or query); the run's observation filter, if any, is applied
frozen (``FrozenFilter``: task rollouts never move its statistics or its per-env returns), and
other methods' ``rollout_observations`` hooks do not reach task rollouts. ``loaded`` puts a set
of weights into the network for the length of a rollout (the query rollout acts with the adapted
weights) and puts the original ones back.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

SUPPORT, QUERY, ADAPT = 0, 1, 2
"""Which rollout of a task a seed is for."""


def window_source(ctx: Any, start: int, end: int) -> Any:
    """The ``EnvSource`` of bars ``[start, end)``: their prices and the run's preprocessed
    features, the run's env config (costs, mode, shaping), each bar's prepared row."""
    from himari.plugin.api import EnvSource

    data = ctx.data
    return EnvSource(open=np.ascontiguousarray(data.open[start:end], dtype=np.float64),
                     close=np.ascontiguousarray(data.close[start:end], dtype=np.float64),
                     features=np.ascontiguousarray(ctx.features[start:end], dtype=np.float32),
                     config=ctx.env, rows=np.arange(start, end, dtype=np.int64), warmup=0)


class FrozenFilter:
    """A run's ``ObservationFilter`` applied without updating it: observations and rewards are
    normalised with the current statistics, and ``reset`` leaves the training envs' state alone."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def reset(self, n_envs: int) -> None:
        return None

    def observations(self, obs: Any, update: bool) -> Any:
        return self.inner.observations(obs, False)

    def rewards(self, rewards: Any, dones: Any, update: bool) -> Any:
        return self.inner.rewards(rewards, dones, False)


def task_seed(seed: int, cycle: int, task: int, kind: int) -> int:
    """The env seed of one task rollout (a 31-bit int, as ``EnvRollout`` takes it)."""
    return int(np.random.SeedSequence([int(seed), int(cycle), int(task), int(kind), 0x4D414D4C])
               .generate_state(1)[0] % (2**31 - 1))


def task_rollout(model: Any, ctx: Any, start: int, end: int, seed: int) -> Any:
    """One rollout of ``model`` (its ``task_rollout``) in envs over bars ``[start, end)`` only,
    seeded by ``seed``. A window too short for the model's observations is a ``ConfigError``
    naming maml's settings."""
    from himari.plugin.api import ConfigError, DataError

    filter_ = getattr(ctx, "observation_filter", None)
    task_ctx = dataclasses.replace(ctx, env_source=window_source(ctx, start, end), seed=int(seed), epoch=0,
                                   rollout_observations=None,
                                   observation_filter=None if filter_ is None else FrozenFilter(filter_))
    try:
        return model.task_rollout(task_ctx)
    except DataError as e:
        raise ConfigError(f"maml: a task's {end - start} bars are too short for the model's rollouts ({e}); "
                          "raise maml.window, maml.support or --adapt-bars") from None


def whole(buf: Any, parts: int = 1) -> Any:
    """Every env's sequence of a rollout as one batch (what the model's ``loss`` takes), or, with
    ``parts`` > 1 dividing the envs, as that many ``Parts`` of consecutive envs (the model's
    minibatches: a task loss then needs no more memory than one update step)."""
    import torch

    from himari_builtin.training.maml.steps import Parts

    n = len(buf)
    if parts <= 1 or n % parts:
        return buf[torch.arange(n)]
    return Parts(buf[idx] for idx in torch.arange(n).chunk(parts))


@contextlib.contextmanager
def loaded(params: dict[str, Any], weights: dict[str, Any]) -> Iterator[None]:
    """``weights`` copied into the parameters ``params`` (``{name: parameter}``) for the block,
    the original values put back after it."""
    import torch

    saved = {k: p.detach().clone() for k, p in params.items()}
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(weights[k])
    try:
        yield
    finally:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])
