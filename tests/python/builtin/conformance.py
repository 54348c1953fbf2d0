"""The conformance harness every plugin goes through (d3rlpy's ``algo_tester`` idea); himari's
test suite runs it on every plugin an installed package registers
(tests/python/builtin/test_models.py, test_other_plugins.py), and a plugin's own tests import it
(docs/writing-a-plugin.md, "Testing it").

- ``check_model(name, data_dir, tmp_path)`` trains the model for a few steps with the real
  Trainer, then checks: the run directory and checkpoints exist; a model restored from best.pt
  acts exactly like the trained one; actions are one int in {0, 1, 2} per row; acting is causal
  (changing rows after t never changes the action at t, with ``act`` called on the whole test
  split at once, as the Trainer and ``himari backtest`` call it, so thresholds taken over the
  rows of a call are caught; for a stateful model, one with ``act_sequence``, prices after t
  change too); and the parameter count that ``plugins list``
  reports (arithmetic, or the meta device) equals the built network's.
- ``check_preprocessor(name, data_dir, tmp_path)``: fitting sees the train rows only (rewriting
  every other row, features and bars, changes neither the fitted state nor the train rows'
  output); the transform is causal (rewriting rows after t leaves rows up to t unchanged, with
  the fitted state); the state survives the run directory's files (JSON and arrays) exactly;
  and a tiny run of every compatible built-in model trains with it and is backtested with the
  restored state to the same actions.
- ``check_training_method(name, model, data_dir, tmp_path)``: a tiny two-epoch run with the
  method, interrupted after its first epoch and resumed, ends exactly where the uninterrupted run
  does (weights, history, metrics); the method's state survives a JSON round trip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TINY = ["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=6", "train.checkpoint_every=3",
        "train.log_every=2", "train.progress=false", "recipe=none"]
"""A tiny budget of the plain model: the harness checks the plugin contract, not a model's recipe
(tests/python/training/test_relabel_recipe.py and the models' own tests cover the recipes)."""


def TINY_ONLINE(name: str) -> list[str]:  # noqa: N802 - a constant per model name
    """A tiny online-RL budget: 4 envs x 16 steps, 2 passes of 2 minibatches per rollout."""
    return [f"{name}.n_envs=4", f"{name}.n_minibatches=2", f"{name}.rollout_steps=16",
            f"{name}.episode_length=64", f"{name}.env_episodes=8", f"{name}.update_epochs=2"]


# Models whose default size is too large for the 2-core test budget get a tiny architecture here
# (the conformance checks do not depend on size; each model's own tests check its default size).
TINY_MODEL: dict[str, list[str]] = {
    "cgdt": ["cgdt.context_length=8", "cgdt.d_model=32", "cgdt.n_layers=2", "cgdt.n_heads=2", "cgdt.critic_dim=16",
             "cgdt.critic_layers=1", "cgdt.critic_heads=2", "cgdt.critic_steps=30", "cgdt.critic_batch_size=16"],
    "flag-trader": ["flag-trader.n_layer=2", "flag-trader.n_head=2", "flag-trader.n_embd=32",
                    "flag-trader.context_length=16", "flag-trader.lora_rank=4", "flag-trader.head_hidden=16",
                    "flag-trader.episode_length=16"],
}


def tiny_run(model: str, data_dir: Path, run_dir: Path, plugins: Any = None, sets: list[str] | None = None,
             **overrides: Any) -> dict[str, Any]:
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = plugins or get_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data_dir), **overrides},
                           sets=[*TINY, *(sets or [])])
    import io

    console = Console(file=io.StringIO(), width=200)
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=console).fit()


def model_sets(name: str, spec: Any) -> list[str]:
    """The tiny budget and architecture of a model in the harness."""
    from himari.training.rl import OnlineRLConfig

    sets = TINY_ONLINE(name) if issubclass(spec.config, OnlineRLConfig) else []
    return [*sets, *TINY_MODEL.get(name, [])]


def skip_without_extras(spec: Any) -> None:
    """Skip (with the reason) a plugin whose optional packages are not installed."""
    import pytest

    from himari.plugin.extras import install_hint, missing_modules

    missing = missing_modules(spec.extras)
    if missing:
        pytest.skip(f"{spec.kind} {spec.name!r} needs {', '.join(missing)} ({install_hint(missing)})")


def check_model(name: str, data_dir: Path, tmp_path: Path, plugins: Any = None) -> dict[str, Any]:
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    import torch

    from himari.data import PreparedData
    from himari.data.splits import rows_of
    from himari.plugin.listing import model_parameters
    from himari.plugin.manager import get_plugins
    from himari.evaluation.policy import action_distribution
    from himari.training.assemble import load_trained
    from himari.training.rl import OnlineRLConfig

    plugins = plugins or get_plugins()
    spec = plugins.models().get(name)
    skip_without_extras(spec)
    run_dir = tmp_path / f"run-{name}"
    summary = tiny_run(name, data_dir, run_dir, plugins, sets=model_sets(name, spec))

    # run directory: the files the docs promise
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "preprocessing.json",
              "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / f).is_file(), f"{name}: {f} missing"
    assert summary["steps"] == 6
    assert np.isfinite(summary["test"]["model"]["sharpe"])

    # save -> load -> act gives the same actions
    policy = load_trained(run_dir, plugins=plugins)
    data = PreparedData(data_dir)
    ranges = data.split("test")
    rows = rows_of(ranges)
    a1 = policy.actions(data, ranges)
    a2 = load_trained(run_dir, plugins=plugins).actions(data, ranges)
    assert a1.shape == (len(rows),), f"{name}: act returned shape {a1.shape}"
    assert np.issubdtype(a1.dtype, np.integer)
    assert set(np.unique(a1)) <= {0, 1, 2}
    np.testing.assert_array_equal(a1, a2)
    assert summary["test"]["model"]["actions"] == action_distribution(a1, ranges)

    # causality: rewriting every row after t leaves the action at t unchanged
    features = policy.features(data)
    t = int(rows[len(rows) // 2])
    changed = features.copy()
    changed[t + 1:] = np.random.default_rng(0).normal(size=changed[t + 1:].shape).astype(np.float32) * 5
    upto = rows <= t
    policy.model.network.eval()
    with torch.no_grad():
        if policy.stateful:  # sequential policy: also rewrite the prices after t
            a, b = next((a, b) for a, b in ranges if a <= t < b)
            open_, close = np.array(data.open, dtype=np.float64), np.array(data.close, dtype=np.float64)
            moved_open, moved_close = open_.copy(), close.copy()
            scale = np.exp(np.random.default_rng(1).normal(0, 0.05, size=len(open_) - t - 1))
            moved_open[t + 1:] *= scale
            moved_close[t + 1:] *= scale
            env = policy.context.env
            before = np.asarray(policy.model.act_sequence(features, open_, close, [(a, b)], env))[:t + 1 - a]
            after = np.asarray(policy.model.act_sequence(changed, moved_open, moved_close, [(a, b)], env))[:t + 1 - a]
        else:  # act is called with a whole split's rows, so rows after t in the same call must not count
            before = np.asarray(policy.model.act(features, rows))[upto]
            after = np.asarray(policy.model.act(changed, rows))[upto]
    np.testing.assert_array_equal(before, after, err_msg=f"{name}: act at row t reads rows after t")

    # parameter count: what the listing says is what the network holds
    net = policy.model.network
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    cfg = policy.run.plugin_configs[name]
    assert tuple(model_parameters(spec, cfg, policy.context.n_features)) == (total, trainable)
    return summary


# ------------------------------------------------------------------------------ preprocessors


class Rewritten:
    """A prepared data set whose features and bars are replaced at ``rows`` by seeded noise (the
    timestamps, so the segments, stay): what a preprocessor must not look at."""

    def __init__(self, data: Any, rows: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._data = data
        self.features = np.array(data.features)
        self.features[rows] = rng.normal(size=(len(rows), self.features.shape[1])).astype(np.float32) * 7
        for k in ("open", "high", "low", "close", "volume"):
            arr = np.array(getattr(data, k), dtype=np.float64)
            arr[rows] *= np.exp(rng.normal(0, 0.2, size=len(rows)))
            setattr(self, k, arr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)


def _same_state(a: Any, b: Any) -> bool:
    """Equality of nested states holding NumPy arrays or tensors (exact, dtype included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    if hasattr(a, "detach"):
        a = a.detach().cpu().float().numpy() if str(a.dtype) == "torch.bfloat16" else a.detach().cpu().numpy()
    if hasattr(b, "detach"):
        b = b.detach().cpu().float().numpy() if str(b.dtype) == "torch.bfloat16" else b.detach().cpu().numpy()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))
    return bool(a == b) or (a != a and b != b)


def check_preprocessor(name: str, data_dir: Path, tmp_path: Path, plugins: Any = None,
                       models: list[str] | None = None) -> None:
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    from himari.data import PreparedData
    from himari.data.splits import rows_of
    from himari.plugin.api import applies_to
    from himari.plugin.manager import get_plugins
    from himari.training.assemble import load_trained
    from himari.training.preprocess import load_states, run_preprocessors, save_states

    plugins = plugins or get_plugins()
    spec = plugins.preprocessors().get(name)
    skip_without_extras(spec)
    data = PreparedData(data_dir)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    configs = {name: spec.config()}

    def run(d: Any, states: Any = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        return run_preprocessors(d, np.asarray(d.features), [name], configs, plugins, splits, seed=3, states=states)

    out, states = run(data)
    assert out.dtype == np.float32 and out.shape[0] == len(data.features) and np.isfinite(out).all(), name
    again, states_again = run(data)
    np.testing.assert_array_equal(out, again, err_msg=f"{name}: fitting twice gives different outputs")
    assert _same_state(states, states_again), f"{name}: fitting twice gives different states"

    # fit sees the train rows only
    train = rows_of(splits["train"])
    others = np.setdiff1d(np.arange(len(out)), train)
    moved_out, moved_states = run(Rewritten(data, others, seed=11))
    assert _same_state(states, moved_states), f"{name}: the fitted state depends on rows outside the train split"
    np.testing.assert_array_equal(moved_out[train], out[train],
                                  err_msg=f"{name}: train rows' output depends on rows outside the train split")

    # causal transform with the fitted state: rows <= t do not see rows > t
    (va, vb), = splits["validation"][:1]
    t = (va + vb) // 2
    later = np.arange(t + 1, len(out))
    causal, _ = run(Rewritten(data, later, seed=12), states=states)
    np.testing.assert_array_equal(causal[:t + 1], out[:t + 1], err_msg=f"{name}: row t's output reads rows after t")

    # the state round trip through a run directory's files
    state_dir = tmp_path / f"states-{name}"
    state_dir.mkdir()
    save_states(state_dir, states)
    loaded = load_states(state_dir)
    assert _same_state(loaded, states), f"{name}: the saved state does not come back identical"
    restored, _ = run(data, states=loaded)
    np.testing.assert_array_equal(restored, out, err_msg=f"{name}: a restored state transforms differently")

    # one tiny epoch with every compatible built-in model, backtested with the restored state
    builtin = [m for m in plugins.models().names() if plugins.models().entry(m).origin.plugin.startswith("himari_builtin")]
    for model in models if models is not None else builtin:
        mspec = plugins.models().get(model)
        if not applies_to(spec, model, mspec.paradigm) or missing_extras(mspec):
            continue
        run_dir = tmp_path / f"run-{name}-{model}"
        summary = tiny_run(model, data_dir, run_dir, plugins, sets=model_sets(model, mspec), preprocess=name)
        policy = load_trained(run_dir, plugins=plugins)
        np.testing.assert_array_equal(policy.features(data), out, err_msg=f"{name} with {model}: restored features")
        from himari.evaluation.policy import action_distribution

        acts = policy.actions(data, splits["test"])
        assert action_distribution(acts, splits["test"]) == summary["test"]["model"]["actions"], (name, model)


def missing_extras(spec: Any) -> list[str]:
    from himari.plugin.extras import missing_modules

    return missing_modules(spec.extras)


# --------------------------------------------------------------------------- training methods


def check_training_method(name: str, model: str, data_dir: Path, tmp_path: Path, plugins: Any = None,
                          extra_sets: list[str] | None = None) -> None:
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    import io
    import json

    import pytest
    import torch
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.checkpoint import load_checkpoint
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = plugins or get_plugins()
    spec = plugins.training_methods().get(name)
    mspec = plugins.models().get(model)
    skip_without_extras(spec)
    skip_without_extras(mspec)
    sets = [*TINY, "train.epochs=2", "train.max_steps_per_epoch=3", "train.patience=0",
            *model_sets(model, mspec), *(extra_sets or [])]

    def trainer(run_dir: Path) -> Trainer:
        run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data_dir), "methods": name},
                               sets=sets)
        return Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))

    whole = trainer(tmp_path / "whole").fit()
    assert whole["steps"] >= 2 and np.isfinite(whole["test"]["model"]["sharpe"]), (name, model)

    cut = trainer(tmp_path / "cut")
    end_epoch = cut.end_epoch

    def stop_after_first(epoch: int) -> None:
        end_epoch(epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    cut.end_epoch = stop_after_first  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    resumed = Trainer.resume(tmp_path / "cut", plugins=plugins, console=Console(file=io.StringIO(), width=200)).fit()
    assert resumed["history"] == whole["history"], f"{name} with {model}: a resumed run trains differently"
    for which in ("last", "best"):
        a = load_checkpoint(tmp_path / "whole" / "checkpoints" / f"{which}.pt")["network"]
        b = load_checkpoint(tmp_path / "cut" / "checkpoints" / f"{which}.pt")["network"]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name} with {model}: {which}.pt {k} differs after a resume"
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "cut" / "metrics.jsonl").read_text()

    method = spec.factory(spec.config())
    if hasattr(method, "state_dict"):
        state = json.loads(json.dumps(method.state_dict()))
        other = spec.factory(spec.config())
        other.load_state_dict(state)
        assert other.state_dict() == state, f"{name}: state_dict does not survive a JSON round trip"
