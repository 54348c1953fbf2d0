"""The conformance harness every model plugin goes through (d3rlpy's ``algo_tester`` idea).

``check_model(name, data_dir, tmp_path)`` trains the model for a few steps with the real
Trainer, then checks: the run directory and checkpoints exist; a model restored from best.pt
acts exactly like the trained one; actions are one int in {0, 1, 2} per row; acting is causal
(changing rows after t never changes the action at t; for a stateful model, one with
``act_sequence``, prices after t change too); and the parameter count that
``plugins list`` reports (arithmetic, or the meta device) equals the built network's.
A model registered by any installed plugin is checked by tests/python/builtin/test_models.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TINY = ["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=6", "train.checkpoint_every=3",
        "train.log_every=2", "train.progress=false"]


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


def skip_without_extras(spec: Any) -> None:
    """Skip (with the reason) a plugin whose optional packages are not installed."""
    import pytest

    from himari.plugin.extras import install_hint, missing_modules

    missing = missing_modules(spec.extras)
    if missing:
        pytest.skip(f"{spec.kind} {spec.name!r} needs {', '.join(missing)} ({install_hint(missing)})")


def check_model(name: str, data_dir: Path, tmp_path: Path, plugins: Any = None) -> dict[str, Any]:
    import torch

    from himari.data import PreparedData
    from himari.data.splits import rows_of
    from himari.plugin.listing import model_parameters
    from himari.plugin.manager import get_plugins
    from himari.training.assemble import apply_preprocessing, load_trained
    from himari.training.rl import OnlineRLConfig

    plugins = plugins or get_plugins()
    spec = plugins.models().get(name)
    skip_without_extras(spec)
    run_dir = tmp_path / f"run-{name}"
    sets = TINY_ONLINE(name) if issubclass(spec.config, OnlineRLConfig) else []
    sets = [*sets, *TINY_MODEL.get(name, [])]
    summary = tiny_run(name, data_dir, run_dir, plugins, sets=sets)

    # run directory: the files the docs promise
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "preprocessing.json",
              "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / f).is_file(), f"{name}: {f} missing"
    assert summary["steps"] == 6
    assert np.isfinite(summary["test"]["model"]["sharpe"])

    # save -> load -> act gives the same actions
    policy = load_trained(run_dir, plugins=plugins)
    data = PreparedData(data_dir)
    rows = rows_of(data.split("test"))
    raw = np.asarray(data.features)
    prices = {"open": np.asarray(data.open), "close": np.asarray(data.close), "ranges": data.split("test")}
    a1 = policy.act(raw, rows, **prices)
    a2 = load_trained(run_dir, plugins=plugins).act(raw, rows, **prices)
    assert a1.shape == (len(rows),), f"{name}: act returned shape {a1.shape}"
    assert np.issubdtype(a1.dtype, np.integer)
    assert set(np.unique(a1)) <= {0, 1, 2}
    np.testing.assert_array_equal(a1, a2)
    assert summary["test"]["model"]["actions"] == __import__(
        "himari.evaluation.policy", fromlist=["x"]).action_distribution(a1, data.split("test"))

    # causality: rewriting every row after t leaves the action at t unchanged
    features, _ = apply_preprocessing(raw, policy.run.preprocess, policy.run.plugin_configs, plugins, None,
                                      policy.preprocessing)
    t = int(rows[len(rows) // 2])
    changed = features.copy()
    changed[t + 1:] = np.random.default_rng(0).normal(size=changed[t + 1:].shape).astype(np.float32) * 5
    probe = rows[rows <= t][-50:]
    policy.model.network.eval()
    with torch.no_grad():
        if policy.stateful:  # sequential policy: also rewrite the prices after t
            a, b = next((a, b) for a, b in data.split("test") if a <= t < b)
            open_, close = np.array(data.open, dtype=np.float64), np.array(data.close, dtype=np.float64)
            moved_open, moved_close = open_.copy(), close.copy()
            scale = np.exp(np.random.default_rng(1).normal(0, 0.05, size=len(open_) - t - 1))
            moved_open[t + 1:] *= scale
            moved_close[t + 1:] *= scale
            env = policy.context.env
            before = np.asarray(policy.model.act_sequence(features, open_, close, [(a, b)], env))[:t + 1 - a]
            after = np.asarray(policy.model.act_sequence(changed, moved_open, moved_close, [(a, b)], env))[:t + 1 - a]
        else:
            before = np.asarray(policy.model.act(features, probe))
            after = np.asarray(policy.model.act(changed, probe))
    np.testing.assert_array_equal(before, after, err_msg=f"{name}: act at row t reads rows after t")

    # parameter count: what the listing says is what the network holds
    net = policy.model.network
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    cfg = policy.run.plugin_configs[name]
    assert tuple(model_parameters(spec, cfg, policy.context.n_features)) == (total, trainable)
    return summary
