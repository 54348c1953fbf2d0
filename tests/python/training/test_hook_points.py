"""Each hook point of the plugin API used by a small in-memory training method or preprocessor,
with a check that it changed training the way the hook promises (not only that it was called).

Hooks: env_config (with the real context), model_built (a parameter added and trained, saved and
restored), epoch_dataset (a stage that changes the epoch's length), before_optimizer_step
(gradients changed before the step), env_source and on_rollout (online RL: the envs run on the
source given, and reshaped rewards reach the advantages), after_training (a report from the
trained policy), and a preprocessor with array state that reads bars and segments. Incompatible
combinations are refused before anything runs."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.errors import ConfigError  # noqa: E402
from himari.plugin.api import EnvConfig, EnvSource, PreprocessorSpec, TrainingMethodSpec, hookimpl  # noqa: E402
from himari.plugin.manager import build_plugins  # noqa: E402
from himari.training.config import merge_run_config  # noqa: E402
from himari.training.trainer import Trainer  # noqa: E402

TINY = ["train.epochs=2", "train.batch_size=64", "train.progress=false", "train.log_every=1",
        "train.checkpoint_every=1000", "train.patience=0"]
ONLINE = ["ppo-lstm.n_envs=4", "ppo-lstm.n_minibatches=2", "ppo-lstm.rollout_steps=16",
          "ppo-lstm.episode_length=64", "ppo-lstm.env_episodes=4", "ppo-lstm.update_epochs=1",
          "ppo-lstm.encoder_sizes=[16]", "ppo-lstm.lstm_hidden=8"]


@dataclass(frozen=True)
class NoSettings:
    pass


def with_method(name: str, factory, paradigms=("supervised", "sequence", "offline-rl", "online-rl")):
    class Plugin:
        @hookimpl
        def himari_register_training_methods(self, registry):
            registry.add(TrainingMethodSpec(name=name, summary="a test method", config=NoSettings,
                                            factory=lambda c: factory(), paradigms=paradigms))

    plugins = build_plugins()
    plugins.register(Plugin(), name=f"{name}-plugin")
    return plugins


def fit(plugins, data, run_dir, model="baseline-mlp", sets=(), **overrides):
    run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data), **overrides},
                           sets=[*TINY, *sets])
    trainer = Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))
    return trainer, trainer.fit()


# ------------------------------------------------------------------------------ env_config


class RaiseFee:
    seen: list = []

    def env_config(self, env, ctx):
        RaiseFee.seen.append((ctx.features.shape, sorted(ctx.splits), ctx.model))
        return replace(env, fee=0.01)


def test_env_config_gets_the_real_context_and_sets_the_runs_costs(small_prepared, tmp_path) -> None:
    RaiseFee.seen = []
    _, s = fit(with_method("raise-fee", RaiseFee), small_prepared, tmp_path / "r", methods="raise-fee",
               sets=["train.epochs=1", "train.max_steps_per_epoch=2"])
    (shape, splits, model_ctx), = RaiseFee.seen
    assert shape[1] == 60 and splits == ["test", "train", "validation"] and model_ctx is None  # before the model
    assert s["costs"]["fee"] == 0.01


# ------------------------------------------------------------------------------ model_built


class AuxHead:
    """Builds a head of its own and a loss term through it: its weights must train, be saved and
    come back when the run is restored."""

    def model_built(self, model, ctx):
        torch.manual_seed(123)
        self.head = torch.nn.Linear(60, 1)
        return {"head": self.head}

    def loss_terms(self, model, batch, ctx):
        return {"aux": self.head(batch[0]).pow(2).mean()}


def test_model_built_adds_parameters_that_train_and_are_restored(small_prepared, tmp_path) -> None:
    from himari.training.assemble import load_trained
    from himari.training.checkpoint import load_checkpoint

    plugins = with_method("aux-head", AuxHead)
    trainer, _ = fit(plugins, small_prepared, tmp_path / "r", methods="aux-head",
                     sets=["train.epochs=1", "train.max_steps_per_epoch=4"])
    torch.manual_seed(123)
    initial = torch.nn.Linear(60, 1).weight.detach()
    best = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")["method_modules"]
    key = "aux-head__head.weight"
    assert key in best
    assert not torch.equal(best[key], initial)  # the optimiser moved it: it was trained
    restored = load_trained(tmp_path / "r", plugins=plugins)
    assert torch.equal(restored.method_modules["aux-head__head"].weight, best[key])
    assert torch.equal(trainer.method_modules["aux-head__head"].weight, best[key])


# ------------------------------------------------------------------------------ epoch_dataset


class Stages:
    """Epoch 0 trains on the first 128 examples only (two batches of 64), epoch 1 on all."""

    def epoch_dataset(self, ds, ctx):
        return _Head(ds, 128) if ctx.epoch == 0 else ds


class _Head:
    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return self.inner[idx]


def test_epoch_dataset_sets_each_epochs_length(small_prepared, tmp_path) -> None:
    trainer, s = fit(with_method("stages", Stages), small_prepared, tmp_path / "r", methods="stages")
    full = len(trainer.train_ds) // 64
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    steps_by_epoch = {}
    for r in records:
        if "train/loss" in r and "validation/sharpe" not in r:
            steps_by_epoch.setdefault(r["epoch"], set()).add(r["step"])
    assert len(steps_by_epoch[0]) == 2 and len(steps_by_epoch[1]) == full
    assert s["steps"] == 2 + full


# ---------------------------------------------------------------------- before_optimizer_step


class FreezeFirstLayer:
    def before_optimizer_step(self, model, optimizer, ctx):
        first = model.network[0]
        norm = float(first.weight.grad.norm())
        first.weight.grad.zero_()
        first.bias.grad.zero_()
        return {"first_layer_grad": norm}


def test_before_optimizer_step_sees_and_changes_the_gradients(small_prepared, tmp_path) -> None:
    from himari.training.checkpoint import load_checkpoint

    plugins = with_method("freeze-first", FreezeFirstLayer)
    trainer, _ = fit(plugins, small_prepared, tmp_path / "r", methods="freeze-first",
                     sets=["train.epochs=1", "train.max_steps_per_epoch=4", "train.weight_decay=0"])
    torch.manual_seed(0)  # the model's initialisation under the run's seed
    from himari_builtin.models.baseline_mlp import BaselineMLP, BaselineMLPConfig

    from himari.plugin.api import ModelContext

    fresh = BaselineMLP(BaselineMLPConfig(), ModelContext(class_counts=trainer.model_context.class_counts))
    last = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["network"]
    assert torch.equal(last["0.weight"], fresh.network[0].weight)  # no step moved the first layer
    assert not torch.equal(last["4.weight"], fresh.network[4].weight)  # the others trained
    logged = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train/freeze-first/first_layer_grad"] > 0 for r in logged if "train/loss" in r
               and "validation/sharpe" not in r)


# --------------------------------------------------------------------- env_source, on_rollout


class MarkedMarket:
    """The training envs run on a constant-feature copy of the first 300 train bars (a marker the
    rollout must show); every reward is replaced by 1 (the advantages must follow)."""

    rollouts: list = []

    def env_source(self, source, ctx):
        n = 300
        return EnvSource(open=source.open[:n], close=source.close[:n],
                         features=np.full((n, source.features.shape[1]), 7.0, np.float32),
                         config=replace(source.config, fee=0.0), rows=source.rows[:n])

    def on_rollout(self, rollout, ctx):
        assert ctx.env_source.config.fee == 0.0
        MarkedMarket.rollouts.append(rollout)
        rollout.rewards.fill_(1.0)


def test_env_source_and_on_rollout_shape_online_training(small_prepared, tmp_path) -> None:
    from himari.training.rl import gae

    MarkedMarket.rollouts = []
    plugins = with_method("marked", MarkedMarket, paradigms=("online-rl",))
    _, s = fit(plugins, small_prepared, tmp_path / "r", model="ppo-lstm", methods="marked",
               sets=[*ONLINE, "train.epochs=1"])
    assert s["costs"]["fee"] == EnvConfig().fee  # evaluation keeps the run's costs
    assert MarkedMarket.rollouts
    for buf in MarkedMarket.rollouts:
        assert (buf.obs[..., :60] == 7.0).all()  # observations come from the source given
        last_values, last_starts, gamma, lam = buf._bootstrap
        adv, ret = gae(torch.ones_like(buf.rewards), buf.values, buf.starts, last_values, last_starts, gamma, lam,
                       buf.final_values)
        torch.testing.assert_close(buf.advantages, adv)  # recomputed from the reshaped rewards
        torch.testing.assert_close(buf.returns, ret)


# ------------------------------------------------------------------------------ after_training


class Report:
    def after_training(self, policy, ctx):
        from himari.plugin.api import action_distribution

        acts = policy.actions(ctx.data, ctx.splits["test"])
        return {"test_actions": action_distribution(acts, ctx.splits["test"]), "checkpoint": policy.checkpoint}


def test_after_training_reports_from_the_trained_policy(small_prepared, tmp_path) -> None:
    _, s = fit(with_method("report", Report), small_prepared, tmp_path / "r", methods="report",
               sets=["train.epochs=1", "train.max_steps_per_epoch=3"])
    report = s["methods"]["report"]
    assert report["checkpoint"] == "best.pt"
    assert report["test_actions"] == s["test"]["model"]["actions"]  # the same policy the summary scored
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["methods"]["report"] == report


# ----------------------------------------------------------------- a preprocessor with arrays


@dataclass(frozen=True)
class RangeConfig:
    span: int = 12
    """Bars of the rolling window."""


class RollingRange:
    """Appends one column: the log of (rolling high / rolling low) over ``span`` bars of each
    segment, divided by its train-split mean (array state). It reads the bars' high and low and
    restarts at every segment, so its values are computed by hand in the test."""

    def __init__(self, config):
        self.config = config
        self.scale = None

    def _raw(self, data):
        out = np.zeros(len(data.features))
        for a, b in data.segments:
            hi = np.log(data.bars.high[a:b])
            lo = np.log(data.bars.low[a:b])
            for i in range(b - a):
                j = max(0, i - self.config.span + 1)
                out[a + i] = hi[j:i + 1].max() - lo[j:i + 1].min()
        return out

    def fit(self, data):
        self.scale = np.array([self._raw(data).mean()])

    def transform(self, data):
        return np.concatenate([data.features, (self._raw(data) / self.scale[0])[:, None]], axis=1)

    def output_names(self, names):
        return (*names, "rolling_range")

    def state_dict(self):
        return {"scale": self.scale, "note": "arrays and JSON together"}

    def load_state_dict(self, state):
        self.scale = np.asarray(state["scale"], dtype=np.float64)


class RangePlugin:
    @hookimpl
    def himari_register_preprocessors(self, registry):
        registry.add(PreprocessorSpec(name="rolling-range", summary="log rolling high/low range", config=RangeConfig,
                                      factory=RollingRange, paradigms=("supervised",)))


def test_a_preprocessor_with_array_state_and_bars(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.preprocess import load_states, run_preprocessors

    plugins = build_plugins()
    plugins.register(RangePlugin(), name="range-plugin")
    trainer, s = fit(plugins, small_prepared, tmp_path / "r", preprocess="rolling-range,zscore",
                     sets=["train.epochs=1", "train.max_steps_per_epoch=3"])
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    state = load_states(tmp_path / "r")[0]
    assert state["columns"][-1] == "rolling_range" and state["state"]["note"] == "arrays and JSON together"
    assert isinstance(state["state"]["scale"], np.ndarray)

    def by_hand(t: int, start: int) -> float:  # log(max high / min low) over the window inside its segment
        j = max(start, t - 11)
        return float(np.log(data.high[j:t + 1]).max() - np.log(data.low[j:t + 1]).min())

    # fitted on the train rows, whose segment starts at the train range (one symbol, no gap)
    scale = np.mean([by_hand(t, a) for t in range(a, b)])
    np.testing.assert_allclose(state["state"]["scale"][0], scale, rtol=1e-12)
    # transformed over every row, whose segment starts at row 0
    out, _ = run_preprocessors(data, np.asarray(data.features), ["rolling-range"], trainer.run.plugin_configs,
                               plugins, trainer.splits, states=[state])
    for t in (a, a + 5, b + 100):
        assert out[t, -1] == pytest.approx(by_hand(t, 0) / scale, rel=1e-6)
    # restored by a backtest from the run's files: the same features
    policy = load_trained(tmp_path / "r", plugins=plugins)
    np.testing.assert_array_equal(policy.features(data), trainer.features)
    assert trainer.features.shape[1] == 61 and s["steps"] == 3


# ------------------------------------------------------------------------- scope checks


def test_incompatible_combinations_are_refused_naming_both(small_prepared) -> None:
    plugins = build_plugins()
    plugins.register(RangePlugin(), name="range-plugin")
    with pytest.raises(ConfigError, match=r"training method 'confidence-penalty' does not apply to model 'cql' "
                                          r"\(offline-rl\): it works with supervised models"):
        merge_run_config(plugins=plugins, overrides={"model": "cql", "methods": "confidence-penalty"})
    with pytest.raises(ConfigError, match=r"preprocessor 'rolling-range' does not apply to model 'ppo-lstm'"):
        merge_run_config(plugins=plugins, overrides={"model": "ppo-lstm", "preprocess": "rolling-range"})
    merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "methods": "confidence-penalty"})


# ------------------------------------------------------------------------------ ctx.preprocess, ctx.build_dataset


class AllBuyOnShiftedFeatures:
    """Rebuilds the epoch's train data from a context whose raw train features are all 1.0 (through
    the run's fitted preprocessing) and whose train labels are all BUY."""

    seen: list = []

    def epoch_dataset(self, dataset, ctx):
        from dataclasses import replace as dc_replace

        raw = np.array(ctx.data.features, dtype=np.float32)
        (a, b), = ctx.splits["train"]
        raw[a:b] = 1.0
        before = torch.get_rng_state().clone(), np.random.get_state()[1].copy()
        feats = ctx.preprocess(ctx.data, raw)
        labels = np.array(ctx.labels)
        labels[a:b] = 2
        ds = ctx.build_dataset(dc_replace(ctx, features=feats, labels=labels), "train")
        after = torch.get_rng_state(), np.random.get_state()[1]
        AllBuyOnShiftedFeatures.seen.append((feats, ds, torch.equal(before[0], after[0])
                                             and np.array_equal(before[1], after[1])))
        return ds


def test_build_dataset_and_preprocess_rebuild_train_data_from_another_context(small_prepared, tmp_path) -> None:
    AllBuyOnShiftedFeatures.seen = []
    t, _ = fit(with_method("all-buy", AllBuyOnShiftedFeatures), small_prepared, tmp_path / "r", methods="all-buy",
               sets=["train.epochs=1", "train.max_steps_per_epoch=2"])
    (feats, ds, rng_kept), = AllBuyOnShiftedFeatures.seen
    state = t.preprocessing_states[0]["state"]  # zscore fitted on the real train rows, not refitted
    expected = np.clip((1.0 - np.asarray(state["mean"], np.float32)) / np.asarray(state["std"], np.float32), -10, 10)
    x, y, rows = ds.tensors
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(expected, x.shape), rtol=1e-6)
    assert (y == 2).all() and len(y) > 1000
    np.testing.assert_array_equal(feats[t.splits["validation"][0][0]:], t.features[t.splits["validation"][0][0]:])
    assert rng_kept  # neither call moved the global random streams (mid-epoch resumes stay exact)


# ------------------------------------------------------------------------------ epoch_end


class EpochEndProbe:
    """Reports, at each epoch end, the network's mode and the number of the epoch's optimiser
    steps, which only a hook called after the epoch's training can know."""

    calls: list = []

    def __init__(self):
        self.steps = 0

    def before_optimizer_step(self, model, optimizer, ctx):
        self.steps += 1

    def epoch_end(self, epoch, ctx):
        EpochEndProbe.calls.append((epoch, ctx.epoch))
        import torch as t

        return {"steps_so_far": self.steps, "training_mode": float(ctx.model is not None and
                                                                    t.is_grad_enabled())}


def test_epoch_end_reports_land_in_each_epochs_validation_record(small_prepared, tmp_path) -> None:
    EpochEndProbe.calls = []
    _, s = fit(with_method("probe", EpochEndProbe), small_prepared, tmp_path / "r", methods="probe",
               sets=["train.max_steps_per_epoch=3"])
    assert EpochEndProbe.calls == [(0, 0), (1, 1)]
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    epoch_records = [r for r in records if "validation/sharpe" in r]
    assert [r["validation/probe/steps_so_far"] for r in epoch_records] == [3.0, 6.0]
    assert all(r["validation/probe/training_mode"] == 0.0 for r in epoch_records)  # under no_grad


class BadEpochEnd:
    def epoch_end(self, epoch, ctx):
        return [1.0]


def test_epoch_end_must_return_a_dict(small_prepared, tmp_path) -> None:
    from himari.errors import TrainingError

    with pytest.raises(TrainingError, match="'bad-end'.*epoch_end must return a dict"):
        fit(with_method("bad-end", BadEpochEnd), small_prepared, tmp_path / "r", methods="bad-end",
            sets=["train.max_steps_per_epoch=1", "train.epochs=1"])
    assert not (tmp_path / "r").exists()


def test_numpy_scalars_in_a_state_come_back_with_their_dtype(tmp_path) -> None:
    """A float64 scale saved as a Python float came back "weak": ``float32_features / scale``
    then ran in float32, 1 ulp off on 17% of the values, so a resumed run and a backtest read
    other features than the run trained on."""
    from himari.training.preprocess import load_states, save_states

    state = {"scale": np.float64(0.0123456789), "count": np.int32(7), "on": np.bool_(True), "half": np.float32(0.5),
             "plain": 2.5}
    save_states(tmp_path, [{"name": "p", "state": state}])
    back = load_states(tmp_path)[0]["state"]
    for key in ("scale", "count", "on", "half"):
        assert type(back[key]) is type(state[key]) and back[key] == state[key], key
    assert back["plain"] == 2.5 and type(back["plain"]) is float
    x = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    np.testing.assert_array_equal(x / back["scale"], x / state["scale"])
    assert (x / back["scale"]).dtype == np.float64


def refused_before_a_run(name: str, factory, match: str, data, tmp_path) -> None:
    """A run with the training method ``name`` stops with a ``TrainingError`` matching ``match``
    and leaves no run directory."""
    from himari.errors import TrainingError

    with pytest.raises(TrainingError, match=match):
        fit(with_method(name, factory), data, tmp_path / "run", methods=name)
    assert not (tmp_path / "run").exists()


def test_a_method_state_that_is_not_json_is_refused_naming_the_method(small_prepared, tmp_path) -> None:
    """A NumPy integer in a state failed the first checkpoint with "Object of type int64 is not
    JSON serializable", naming no method."""

    class Counts:
        def state_dict(self):
            return {"seen": np.int64(3)}

        def load_state_dict(self, state):
            pass

    refused_before_a_run("np-state", Counts, r"training method 'np-state': state_dict\(\) must return JSON data .*int64",
                         small_prepared, tmp_path)


def test_a_dataset_hook_returning_none_is_refused_naming_the_method(small_prepared, tmp_path) -> None:

    class Forgets:
        def dataset(self, dataset, ctx, split):
            len(dataset)  # looks at it, forgets to return it

    refused_before_a_run("forgets", Forgets, r"training method 'forgets': its dataset hook \('train'\) returned "
                         r"NoneType, expected a dataset", small_prepared, tmp_path)


def test_a_loss_or_loss_term_of_the_wrong_kind_is_refused_naming_its_plugin(small_prepared, tmp_path) -> None:
    """A bare tensor from loss failed with "iteration over a 0-d tensor", and a vector term in
    backward with "grad can be implicitly created only for scalar outputs", naming neither."""
    import torch

    from himari.errors import TrainingError
    from himari.training.plugin_checks import checked_loss, checked_term

    with pytest.raises(TrainingError, match=r"model 'm': loss must return \(loss tensor, dict of values to log\), got "
                                            r"Tensor"):
        checked_loss(torch.tensor(1.0), "m")
    with pytest.raises(TrainingError, match=r"model 'm': loss must return a one-element tensor as its loss, got \(4,\)"):
        checked_loss((torch.ones(4), {}), "m")
    loss = torch.tensor(2.0)
    assert checked_loss((loss, {"a": 1.0}), "m")[0] is loss
    with pytest.raises(TrainingError, match=r"training method 'w': loss_terms\['t'\] must be a one-element tensor, got "
                                            r"\(3,\)"):
        checked_term(torch.ones(3), "w", "t")
    assert checked_term(0.5, "w", "t") == 0.5 and checked_term(torch.ones(1), "w", "t").numel() == 1

    class VectorTerm:
        def loss_terms(self, model, batch, ctx):
            return {"t": torch.ones(7, requires_grad=True)}

    refused_before_a_run("vector-term", VectorTerm, r"training method 'vector-term': loss_terms\['t'\]",
                         small_prepared, tmp_path)
