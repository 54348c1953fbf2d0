"""Execution rules in online RL's training rollouts (``execution.in_rollouts``): the vectorised
filter equals the scalar per-bar rule of evaluation, env by env, restarting with each episode;
the env of a real ppo-lstm rollout receives exactly what that rule makes of the sampled actions,
while the rollout keeps the samples the policy learns from; settings that cannot work are refused
before a run directory exists."""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.errors import ConfigError
from himari.evaluation.execution import _NEVER, RolloutExecutionFilter, _decide
from himari.plugin.manager import build_plugins
from himari.training import rollout as rollout_module
from himari.training.config import ExecutionConfig, merge_run_config
from himari.training.trainer import Trainer

SETS = ["train.epochs=1", "train.batch_size=64", "train.progress=false", "train.log_every=1",
        "train.checkpoint_every=1000", "train.patience=0", "ppo-lstm.n_envs=4", "ppo-lstm.n_minibatches=2",
        "ppo-lstm.rollout_steps=32", "ppo-lstm.episode_length=40", "ppo-lstm.env_episodes=12",
        "ppo-lstm.update_epochs=1", "ppo-lstm.encoder_sizes=[16]", "ppo-lstm.lstm_hidden=8"]


def scalar_reference(raw: np.ndarray, top: np.ndarray, new_episode: np.ndarray, mode: str,
                     k: int, m: int, c: float) -> np.ndarray:
    """``_decide`` (the rule evaluation uses) env by env, its state restarted where an episode
    begins: ``raw``, ``top``, ``new_episode`` are ``[T, N]``."""
    out = np.empty_like(raw)
    for i in range(raw.shape[1]):
        bar, position, since = 0, 0, _NEVER
        for t in range(raw.shape[0]):
            if new_episode[t, i]:
                bar, position, since = 0, 0, _NEVER
            out[t, i], position, since = _decide(bar, int(raw[t, i]), float(top[t, i]), position, since, k, m, c, mode)
            bar += 1
    return out


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
@pytest.mark.parametrize(("k", "m", "c"), [(1, 6, 0.0), (4, 0, 0.0), (3, 5, 0.55), (1, 0, 0.5), (2, 1, 0.0)])
def test_the_vectorised_filter_is_the_per_bar_rule(mode: str, k: int, m: int, c: float) -> None:
    rng = np.random.default_rng(k * 100 + m * 10 + int(c * 100))
    T, N = 300, 7
    raw = rng.choice(3, size=(T, N), p=[0.35, 0.3, 0.35])
    top = rng.choice([0.34, 0.5, 0.55, 0.6, 0.9], size=(T, N))  # some exactly at c: kept only above it
    new_episode = rng.random((T, N)) < 0.03
    new_episode[0] = True
    filt = RolloutExecutionFilter(N, mode, ExecutionConfig(decision_interval=k, min_hold=m, confidence=c))
    got = np.empty_like(raw)
    for t in range(T):
        if t:  # the rollout restarts the envs whose previous step ended an episode
            filt.restart(torch.from_numpy(new_episode[t]))
        got[t] = filt.step(torch.from_numpy(raw[t]), torch.from_numpy(top[t]) if c > 0 else None).numpy()
    want = scalar_reference(raw, top, new_episode, mode, k, m, c)
    np.testing.assert_array_equal(got, want)
    assert (got != raw).mean() > 0.05  # the rules did act on this input


def test_the_confidence_rule_needs_probabilities() -> None:
    filt = RolloutExecutionFilter(2, "long_flat", ExecutionConfig(confidence=0.4))
    assert filt.needs_probabilities
    with pytest.raises(ConfigError, match="probabilities"):
        filt.step(torch.tensor([0, 2]))


class EnvRecorder:
    """Wraps the rollout's env and records every action array it receives."""

    received: ClassVar[list] = []

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, actions):
        copy = actions.cpu().numpy() if isinstance(actions, torch.Tensor) else np.array(actions, copy=True)
        EnvRecorder.received.append(copy)
        return self._env.step(actions)


class RolloutKeeper:
    """A training method that keeps each rollout's sampled actions and episode starts."""

    rollouts: ClassVar[list] = []

    def on_rollout(self, buf, ctx):
        # copies: the rollout buffer is reused by the next rollout
        RolloutKeeper.rollouts.append((buf.actions.cpu().clone().numpy(), buf.starts.cpu().clone().numpy(),
                                       dict(buf.stats)))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])])
def test_the_env_executes_what_the_rules_make_of_the_sampled_actions(small_prepared, tmp_path, monkeypatch,
                                                                     plugins_with_method, device) -> None:
    """decision interval 3 and minimum hold 5 in a ppo-lstm run: every action the env received
    is the scalar rule applied to the rollout's samples (restarted at each episode start, and the
    state carried from one rollout into the next); the rollout stores the samples themselves. On
    a GPU the env, the rules and the policy all run there."""
    real_train_env = rollout_module.train_env
    monkeypatch.setattr(rollout_module, "train_env", lambda *a, **kw: EnvRecorder(real_train_env(*a, **kw)))
    EnvRecorder.received, RolloutKeeper.rollouts = [], []
    run = merge_run_config(plugins=(plugins := plugins_with_method("keeper", lambda c: RolloutKeeper())),
                           overrides={"model": "ppo-lstm", "data": str(small_prepared), "methods": "keeper"},
                           sets=[*SETS, "execution.decision_interval=3", "execution.min_hold=5",
                                 "execution.in_rollouts=true", f"train.device={device}"])
    Trainer(run, plugins=plugins, run_dir=tmp_path / "run", console=Console(file=io.StringIO(), width=200)).fit()
    assert len(RolloutKeeper.rollouts) >= 2
    sampled = np.concatenate([a for a, _, _ in RolloutKeeper.rollouts])
    starts = np.concatenate([s for _, s, _ in RolloutKeeper.rollouts]) > 0
    received = np.stack(EnvRecorder.received)
    assert received.shape == sampled.shape
    assert starts[:, :].sum() > sampled.shape[1]  # episodes ended inside the rollouts (episode_length 40)
    want = scalar_reference(sampled, np.zeros(sampled.shape), starts, "long_flat", 3, 5, 0.0)
    np.testing.assert_array_equal(received, want)
    overruled = (received != sampled).mean()
    assert overruled > 0.3  # two bars in three are HOLD whatever was sampled
    stats = [st["rules_overruled"] for _, _, st in RolloutKeeper.rollouts]
    assert np.mean(stats) == pytest.approx(overruled)


def test_without_the_setting_the_env_gets_the_samples(small_prepared, tmp_path, monkeypatch,
                                                      plugins_with_method) -> None:
    real_train_env = rollout_module.train_env
    monkeypatch.setattr(rollout_module, "train_env", lambda *a, **kw: EnvRecorder(real_train_env(*a, **kw)))
    EnvRecorder.received, RolloutKeeper.rollouts = [], []
    run = merge_run_config(plugins=(plugins := plugins_with_method("keeper", lambda c: RolloutKeeper())),
                           overrides={"model": "ppo-lstm", "data": str(small_prepared), "methods": "keeper"},
                           sets=[*SETS, "execution.decision_interval=3", "execution.min_hold=5"])
    Trainer(run, plugins=plugins, run_dir=tmp_path / "run", console=Console(file=io.StringIO(), width=200)).fit()
    sampled = np.concatenate([a for a, _, _ in RolloutKeeper.rollouts])
    np.testing.assert_array_equal(np.stack(EnvRecorder.received), sampled)
    assert all("rules_overruled" not in st for _, _, st in RolloutKeeper.rollouts)


@pytest.mark.parametrize(("model", "sets", "why"), [
    ("ppo-lstm", ["execution.in_rollouts=true"], "change nothing"),
    ("ppo-lstm", ["execution.in_rollouts=true", "execution.min_hold=6", "execution.select=true"], "fixed before"),
    ("baseline-mlp", ["execution.in_rollouts=true", "execution.min_hold=6"], "learns from a data set"),
])
def test_settings_that_cannot_work_are_refused_before_the_run_exists(small_prepared, tmp_path, model, sets,
                                                                     why) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises((ConfigError, ValueError), match=why):
        plugins = build_plugins()
        run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(small_prepared)},
                               sets=[*(SETS if model == "ppo-lstm" else ["train.epochs=1"]), *sets])
        Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO(), width=200)).fit()
    assert not run_dir.exists()


def test_a_rollout_that_ignores_the_rules_stops_the_run(small_prepared, tmp_path, monkeypatch) -> None:
    """An online model whose rollout() is its own (not EnvRollout) would train without the rules:
    the run stops at its first rollout, naming the model, and leaves no run directory."""
    from himari_builtin.models.ppo_lstm.model import PPOLSTM

    from himari.errors import TrainingError

    own = PPOLSTM.rollout

    def rollout_of_its_own(self, ctx, reset):
        ctx = type(ctx)(**{**ctx.__dict__, "rollout_execution": None})
        return own(self, ctx, reset)

    monkeypatch.setattr(PPOLSTM, "rollout", rollout_of_its_own)
    plugins = build_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "ppo-lstm", "data": str(small_prepared)},
                           sets=[*SETS, "execution.min_hold=5", "execution.in_rollouts=true"])
    with pytest.raises(TrainingError, match="'ppo-lstm' collected a rollout without the execution rules"):
        Trainer(run, plugins=plugins, run_dir=tmp_path / "run", console=Console(file=io.StringIO(), width=200)).fit()
    assert not (tmp_path / "run").exists()
