"""The ``rollout_observations`` hook point through a third-party-style training method: the
policy acts on the observations the hook returns, the rollout stores them, the policy it is
given is differentiable in them, (every step of every rollout)."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.training.config import merge_run_config
from himari.training.trainer import Trainer

SETS = ["train.epochs=1", "train.batch_size=64", "train.progress=false", "train.log_every=1",
        "train.checkpoint_every=1000", "train.patience=0", "ppo-lstm.n_envs=4", "ppo-lstm.n_minibatches=2",
        "ppo-lstm.rollout_steps=16", "ppo-lstm.episode_length=64", "ppo-lstm.env_episodes=2",
        "ppo-lstm.update_epochs=1", "ppo-lstm.encoder_sizes=[16]", "ppo-lstm.lstm_hidden=8"]


class Blind:
    """Shows the policy a constant 7 in market column 0 and records what it is given."""

    calls: ClassVar[list] = []
    stored: ClassVar[list] = []

    def rollout_observations(self, obs, starts, state, policy, ctx):
        with torch.enable_grad():
            x = obs.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(policy(x, starts, state)[0].sum(), x)
        Blind.calls.append((tuple(obs.shape), float(grad.abs().sum())))
        out = obs.clone()
        out[:, 0] = 7.0
        return out

    def on_rollout(self, buf, ctx):
        Blind.stored.append(buf.obs.clone())


def fit(tmp_path, data, methods: str | None, plugins_with_method):
    plugins = plugins_with_method("blind", lambda c: Blind())
    overrides = {"model": "ppo-lstm", "data": str(data), **({"methods": methods} if methods else {})}
    run = merge_run_config(plugins=plugins, overrides=overrides, sets=SETS)
    trainer = Trainer(run, plugins=plugins, run_dir=tmp_path, console=Console(file=io.StringIO(), width=200))
    trainer.fit()
    return trainer


def test_the_policy_acts_on_and_the_rollout_stores_what_the_hook_returns(small_prepared, tmp_path,
                                                                         plugins_with_method) -> None:
    Blind.calls, Blind.stored = [], []
    fit(tmp_path / "blind", small_prepared, "blind", plugins_with_method)
    assert Blind.stored and len(Blind.calls) == 16 * len(Blind.stored)  # every step of every rollout
    assert all(shape == (4, 64) and g > 0 for shape, g in Blind.calls)  # differentiable policy
    for obs in Blind.stored:
        assert torch.all(obs[..., 0] == 7.0) and not torch.all(obs[..., 1] == 7.0)
