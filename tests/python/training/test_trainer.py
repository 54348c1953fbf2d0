"""The Trainer end to end on a small synthetic set: run directory, determinism, evaluation,
collapse guard, early stopping and the best epoch kept, and every training-method hook point."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pytest
from himari_tests_tiny_models import LinearSupervised, plugins_with_model  # type: ignore[import-not-found]
from rich.console import Console

from himari.plugin import EnvConfig, TrainingMethodSpec, hookimpl
from himari.plugin.manager import build_plugins
from himari.training.config import merge_run_config
from himari.training.preprocess import load_states
from himari.training.trainer import Trainer, TrainingError

TINY = ["train.epochs=2", "train.batch_size=128", "train.checkpoint_every=5", "train.log_every=3"]


def quiet(tmp_path):
    import io

    return Console(file=io.StringIO(), width=200)


def train(plugins, data, run_dir, console, sets=(), **overrides):
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(data), **overrides},
                           sets=[*TINY, *sets])
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=console).fit()


def test_run_directory_and_summary(small_prepared, tmp_path) -> None:
    plugins = build_plugins()
    s = train(plugins, small_prepared, tmp_path / "run", quiet(tmp_path))
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "baseline-mlp" and summary["epochs_run"] == 2
    best = max(h["sharpe"] for h in summary["history"])
    assert summary["best_validation_sharpe"] == best
    assert summary["validation"]["model"]["sharpe"] == pytest.approx(best)  # best.pt reloaded
    for split in ("validation", "test"):
        assert set(summary[split]) == {"model", "buy-and-hold", "never-trade"}
        assert summary[split]["never-trade"]["total_return"] == 0.0
        assert summary[split]["buy-and-hold"]["n_trades"] == 1
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "validation/sharpe" in x] == [h for h in (s["steps"] // 2, s["steps"])]
    pre = load_states(run)
    assert pre[0]["name"] == "zscore" and pre[0]["state"]["mean"].shape == (60,)
    assert (run / "preprocessing.npz").is_file()
    assert (run / "config.yaml").read_text().startswith("model: baseline-mlp")


def test_normalisation_is_fitted_on_train_only(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.data.splits import rows_of

    train(build_plugins(), small_prepared, tmp_path / "run", quiet(tmp_path), sets=["train.epochs=1"])
    pre = load_states(tmp_path / "run")[0]["state"]
    d = PreparedData(small_prepared)
    train_rows = rows_of(d.split("train"))
    np.testing.assert_allclose(pre["mean"], np.asarray(d.features, np.float64)[train_rows].mean(0), rtol=1e-9)
    all_rows = rows_of(d.split("train") + d.split("validation") + d.split("test"))
    assert not np.allclose(pre["mean"], np.asarray(d.features, np.float64)[all_rows].mean(0), rtol=1e-6)


def test_same_seed_same_run(small_prepared, tmp_path) -> None:
    plugins = build_plugins()
    a = train(plugins, small_prepared, tmp_path / "a", quiet(tmp_path))
    b = train(plugins, small_prepared, tmp_path / "b", quiet(tmp_path))
    c = train(plugins, small_prepared, tmp_path / "c", quiet(tmp_path), sets=["train.seed=7"])
    assert a["history"] == b["history"] and a["test"] == b["test"]
    assert a["history"] != c["history"]


def test_evaluation_never_reads_labels(small_prepared, tmp_path, monkeypatch) -> None:
    """Scrambling the labels after training changes nothing the evaluation reports."""
    plugins = build_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared)},
                           sets=[*TINY, "train.epochs=1"])
    t = Trainer(run, plugins=plugins, run_dir=tmp_path / "r", console=quiet(tmp_path))
    t.fit()
    before = t.evaluate("test")
    t.ctx.labels = t.labels = np.random.default_rng(0).integers(0, 3, len(t.labels)).astype(np.int8)
    assert t.evaluate("test") == before


@dataclass(frozen=True)
class ConstConfig:
    action: int = 1
    """The action always taken."""


class ConstModel(LinearSupervised):
    """A trainable model that ignores its input when acting: the collapse guard must fire."""

    def act(self, features, rows):
        return np.full(len(rows), self.config.action, dtype=np.int8)


def test_collapse_guard_reports_loudly(small_prepared, tmp_path) -> None:
    plugins = plugins_with_model("const", ConstModel, ConstConfig, "always the same action")
    console = quiet(tmp_path)
    s = train(plugins, small_prepared, tmp_path / "run", console, model="const", preprocess="zscore")
    out = console.file.getvalue()
    assert s["collapsed"] == {"validation": True, "test": True}
    assert s["test"]["model"]["dominant_action"] == "HOLD" and s["test"]["model"]["dominant_share"] == 1.0
    assert "COLLAPSE:" in out and "COLLAPSE on test:" in out


class NoActModel(ConstModel):
    """A model its author forgot to give ``act``."""

    act = None  # type: ignore[assignment]


def test_a_model_without_act_is_refused_before_training(small_prepared, tmp_path) -> None:
    """It trained a whole epoch and then failed at validation with an AttributeError."""
    plugins = plugins_with_model("no-act", NoActModel, ConstConfig, "forgot act")
    with pytest.raises(TrainingError, match=r"model 'no-act': its factory returned a NoActModel without act "
                                            r"\(or act_sequence\), which every model needs"):
        train(plugins, small_prepared, tmp_path / "run", quiet(tmp_path), model="no-act")
    assert not (tmp_path / "run").exists()


@dataclass(frozen=True)
class ProbeConfig:
    fee: float = 0.0
    """Fee the probe forces through the env_config hook."""


class Probe:
    """Uses every hook point and records the calls."""

    calls: list = []

    def __init__(self, config):
        self.config = config
        self.epochs_seen = []

    def env_config(self, env, ctx):
        Probe.calls.append("env_config")
        return replace(env, fee=self.config.fee)

    def dataset(self, ds, ctx, split):
        Probe.calls.append(f"dataset:{split}")
        return ds

    def epoch_start(self, epoch, ctx):
        Probe.calls.append(f"epoch_start:{epoch}")
        self.epochs_seen.append(epoch)

    def loss_terms(self, model, batch, ctx):
        import torch

        return {"l2": 1e-3 * sum((p ** 2).sum() for p in model.network.parameters()) + 0 * torch.zeros(())}

    def outer_loop(self, fit, ctx):
        Probe.calls.append("outer:before")
        fit()
        Probe.calls.append("outer:after")

    def state_dict(self):
        return {"epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        self.epochs_seen = list(state["epochs_seen"])


class ProbePlugin:
    @hookimpl
    def himari_register_training_methods(self, registry):
        registry.add(TrainingMethodSpec(name="probe", summary="uses every hook", config=ProbeConfig, factory=Probe))


def test_training_method_hook_points(small_prepared, tmp_path) -> None:
    plugins = build_plugins()
    plugins.register(ProbePlugin(), name="probe-plugin")
    Probe.calls = []
    s = train(plugins, small_prepared, tmp_path / "run", quiet(tmp_path), methods="probe",
              sets=["probe.fee=0.0"])
    assert Probe.calls == ["env_config", "dataset:train", "dataset:validation", "outer:before",
                           "epoch_start:0", "epoch_start:1", "outer:after"]
    assert s["costs"]["fee"] == 0.0  # the env_config hook reached the evaluation
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "train/probe/l2" in lines  # the loss term was added and logged
    # the fee change is real: the same run with the default fee scores differently after costs
    base = train(plugins, small_prepared, tmp_path / "base", quiet(tmp_path))
    assert base["costs"]["fee"] == EnvConfig().fee


class SettingsProbe(Probe):
    """Records torch's process-wide settings as the run sees them and changes the thread count."""

    seen: ClassVar[list] = []

    def epoch_start(self, epoch, ctx):
        import torch

        SettingsProbe.seen.append((torch.are_deterministic_algorithms_enabled(),
                                   torch.is_deterministic_algorithms_warn_only_enabled()))
        torch.set_num_threads(1)


class SettingsPlugin:
    @hookimpl
    def himari_register_training_methods(self, registry):
        registry.add(TrainingMethodSpec(name="settings", summary="reads torch settings", config=ProbeConfig,
                                        factory=SettingsProbe))


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_run_gives_torch_settings_back(small_prepared, tmp_path, deterministic) -> None:
    """Deterministic mode is on inside a run that asks for it (warn only) and the caller's own
    settings, deterministic mode, cuDNN autotuning and threads, are back after it, also when the
    run fails."""
    import torch

    plugins = build_plugins()
    plugins.register(SettingsPlugin(), name="settings-plugin")
    threads = torch.get_num_threads()
    torch.backends.cudnn.benchmark = True
    try:
        SettingsProbe.seen = []
        train(plugins, small_prepared, tmp_path / "run", quiet(tmp_path), methods="settings",
              sets=[f"train.deterministic={str(deterministic).lower()}"])
        assert SettingsProbe.seen == [(deterministic, deterministic)] * 2
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and torch.get_num_threads() == threads
        torch.use_deterministic_algorithms(True)  # a caller's strict mode survives a run too
        with pytest.raises(TrainingError, match="loss is nan"):
            train(plugins, small_prepared, tmp_path / "nan", quiet(tmp_path), methods="settings",
                  sets=["train.lr=1e30", "baseline-mlp.loss=cross-entropy", "train.grad_clip=0"])
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.get_num_threads() == threads
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
        torch.set_num_threads(threads)


class Lazy(Probe):
    def outer_loop(self, fit, ctx):
        return None


class LazyPlugin:
    @hookimpl
    def himari_register_training_methods(self, registry):
        registry.add(TrainingMethodSpec(name="lazy", summary="forgets to fit", config=ProbeConfig, factory=Lazy))


def test_early_stopping_keeps_the_first_best_epoch(small_prepared, tmp_path, monkeypatch) -> None:
    """Validation Sharpe ratios scripted per epoch (1.0, 0.5, 2.0, 2.0, 1.5, 0.5, 3.0, ...) with
    patience 3: epoch 2 is bad, epoch 3 the best (which restarts the count; a tie does not
    improve), epochs 4-6 the three bad ones, so the run stops after epoch 6, never sees the 3.0,
    and scores the weights of epoch 3."""
    script = [1.0, 0.5, 2.0, 2.0, 1.5, 0.5, 3.0, 3.5]
    real_evaluate, real_score = Trainer.evaluate, Trainer._score_epoch
    seen: list[dict] = []
    in_epoch = [False]

    def evaluate(self, split, execution=None):
        out = real_evaluate(self, split, execution)
        if in_epoch[0] and split == "validation":
            seen.append(dict(out))
            out = {**out, "sharpe": script[len(seen) - 1]}
        return out

    def score(self, epoch, train_loss):
        in_epoch[0] = True
        try:
            return real_score(self, epoch, train_loss)
        finally:
            in_epoch[0] = False

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    monkeypatch.setattr(Trainer, "_score_epoch", score)
    s = train(build_plugins(), small_prepared, tmp_path / "run", quiet(tmp_path),
              sets=["recipe=none", "train.epochs=8", "train.patience=3", "train.max_steps_per_epoch=4"])
    assert s["epochs_run"] == 6 and s["stopped_early"] and s["best_epoch"] == 3
    assert s["best_validation_sharpe"] == 2.0 and [h["sharpe"] for h in s["history"]] == script[:6]
    # best.pt holds epoch 3's weights: the final validation score is epoch 3's real one
    assert seen[2]["actions"] != seen[3]["actions"]  # epochs 3 and 4 act differently
    assert s["validation"]["model"]["actions"] == seen[2]["actions"]
    assert s["validation"]["model"]["total_return"] == pytest.approx(seen[2]["total_return"], rel=1e-12)


def test_outer_loop_that_skips_fit_is_an_error(small_prepared, tmp_path) -> None:
    plugins = build_plugins()
    plugins.register(LazyPlugin(), name="lazy-plugin")
    with pytest.raises(TrainingError, match="outer_loop did not call fit"):
        train(plugins, small_prepared, tmp_path / "run", quiet(tmp_path), methods="lazy")


def test_nan_loss_is_a_clear_runtime_error(small_prepared, tmp_path) -> None:
    with pytest.raises(TrainingError, match="loss is nan"):
        train(build_plugins(), small_prepared, tmp_path / "run", quiet(tmp_path), sets=["train.lr=1e30",
              "baseline-mlp.loss=cross-entropy", "train.grad_clip=0"])


def test_refuses_a_non_empty_run_dir(small_prepared, tmp_path) -> None:
    from himari.errors import HimariError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(HimariError, match="not empty"):
        train(build_plugins(), small_prepared, tmp_path / "run", quiet(tmp_path))
