"""The ObservationFilter hook of the plugin API, used by a third-party training method (an
in-memory plugin): a module returned from ``model_built`` with ``reset``/``observations``/
``rewards`` changes what the online-RL policy sees in training and at evaluation, and the
rewards it learns from; evaluation never updates it; its buffers travel in the checkpoints; a
run pairing it with a model without rollouts, or with a second filter, is refused before
anything is written."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.errors import TrainingError  # noqa: E402
from himari.plugin.api import ObservationFilter, TrainingMethodSpec, hookimpl  # noqa: E402
from himari.plugin.manager import build_plugins  # noqa: E402
from himari.training.config import merge_run_config  # noqa: E402
from himari.training.trainer import Trainer  # noqa: E402

TINY = ["train.epochs=2", "train.max_steps_per_epoch=3", "train.progress=false", "train.patience=0",
        "train.log_every=1"]
ONLINE = ["ppo-lstm.n_envs=4", "ppo-lstm.n_minibatches=2", "ppo-lstm.rollout_steps=16", "ppo-lstm.episode_length=64",
          "ppo-lstm.env_episodes=8", "ppo-lstm.update_epochs=2", "ppo-lstm.encoder_sizes=[16]",
          "ppo-lstm.lstm_hidden=8"]


@dataclass(frozen=True)
class NoSettings:
    pass


class Shift(torch.nn.Module):
    """Adds 100 to every observation; every reward becomes 0.25. Counts its updating calls in a
    buffer (saved state) and its frozen ones in an attribute (not saved)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        self.frozen = 0
        self.resets: list[int] = []
        self.seen_by_evaluation: list[np.ndarray] = []

    def reset(self, n_envs):
        self.resets.append(n_envs)

    def observations(self, obs, update):
        if update:
            self.updates += 1
        else:
            self.frozen += 1
            if isinstance(obs, np.ndarray):
                self.seen_by_evaluation.append(obs.copy())
        return obs + 100

    def rewards(self, rewards, dones, update):
        return torch.full_like(rewards, 0.25)


class ShiftMethod:
    def __init__(self) -> None:
        self.filter = Shift()

    def model_built(self, model, ctx):
        return {"shift": self.filter}


def plugins_with(*names, paradigms=("online-rl", "supervised")):
    made: dict[str, list[ShiftMethod]] = {}

    def factory(name):
        made.setdefault(name, []).append(ShiftMethod())
        return made[name][-1]

    class Plugin:
        @hookimpl
        def himari_register_training_methods(self, registry):
            for name in names:
                registry.add(TrainingMethodSpec(name=name, summary="a test filter", config=NoSettings,
                                                factory=lambda c, n=name: factory(n),
                                                paradigms=paradigms))

    plugins = build_plugins()
    plugins.register(Plugin(), name="shift-plugin")
    return plugins, made


def trainer(plugins, data, run_dir, model="ppo-lstm", methods="shift", sets=ONLINE):
    run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data), "methods": methods},
                           sets=[*TINY, *sets])
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))


def test_a_third_party_filter_changes_training_and_evaluation_and_is_saved(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.training.assemble import load_trained

    assert isinstance(Shift(), ObservationFilter)
    plugins, made = plugins_with("shift")
    t = trainer(plugins, small_prepared, tmp_path / "run")
    summary = t.fit()
    f = made["shift"][0].filter
    assert t.ctx.observation_filter is f
    # training: every env step's observations (plus each epoch's first) went through, updating;
    # after the run the filter holds the best checkpoint's state (reloaded with its weights)
    assert f.resets == [4, 4]
    assert int(f.updates) == summary["best_epoch"] * (16 + 1)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rollouts = [r for r in records if "rollout/reward_mean_filtered" in r]
    assert rollouts and all(r["rollout/reward_mean_filtered"] == 0.25 for r in rollouts)
    assert all(r["rollout/reward_mean"] != 0.25 for r in rollouts)  # the env's own rewards
    # evaluation: the policy saw shifted observations, frozen
    assert f.frozen > 0 and f.seen_by_evaluation
    assert all(obs.shape == (1, 64) for obs in f.seen_by_evaluation)
    # the buffer travels in the checkpoint to the restored policy, which acts through it, frozen
    policy = load_trained(tmp_path / "run", plugins=plugins)
    restored = policy.observation_filter
    assert isinstance(restored, Shift) and restored is not f and int(restored.updates) == int(f.updates)
    data = PreparedData(small_prepared)
    ranges = data.split("test")
    policy.actions(data, ranges)
    assert restored.frozen == sum(b - a - 1 for a, b in ranges) and int(restored.updates) == int(f.updates)


def test_a_filter_with_a_model_without_rollouts_is_refused(small_prepared, tmp_path) -> None:
    plugins, _ = plugins_with("shift")
    with pytest.raises(TrainingError, match="training method 'shift' installs an observation filter for online-RL "
                                            "rollouts; model 'baseline-mlp' has no rollout"):
        trainer(plugins, small_prepared, tmp_path / "run", model="baseline-mlp", sets=[]).fit()
    assert not (tmp_path / "run").exists()


def test_two_filters_are_refused(small_prepared, tmp_path) -> None:
    plugins, _ = plugins_with("shift", "shift-again")
    with pytest.raises(TrainingError, match="training methods 'shift' and 'shift-again' each install an "
                                            "observation filter; a run takes one"):
        trainer(plugins, small_prepared, tmp_path / "run", methods="shift,shift-again").fit()
    assert not (tmp_path / "run").exists()
