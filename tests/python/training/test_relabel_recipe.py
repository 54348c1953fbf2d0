"""A run's own labels (``labels:``) and a model's default recipe (``ModelSpec.recipe``).

Relabelling must give exactly the labels ``himari data prepare`` would, must never let a label
read past the end of its own split range, whatever the prepared embargo, and a recipe must sit
under everything the user gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.plugin import ModelSpec, hookimpl
from himari.plugin.manager import build_plugins, get_plugins
from himari.training.config import merge_run_config

P = get_plugins()


def test_relabelled_labels_match_the_labeler_and_stop_at_each_ranges_end(small_prepared: Path) -> None:
    from himari.data import PreparedData
    from himari.data.labels import make_labels
    from himari.training.relabel import relabelled

    data = PreparedData(small_prepared)
    seg = data.segments[0]
    splits = {name: data.split(name) for name in ("train", "validation", "test")}
    view = relabelled(data, {"name": "forward-return", "horizon": 40, "threshold": 0.004}, splits)
    s = slice(seg.start, seg.stop)
    direct = make_labels("forward-return", data.open[s], data.high[s], data.low[s], data.close[s], horizon=40,
                         threshold=0.004)
    assert view.lookahead == 41 and view.metadata["labeler"]["params"] == {"horizon": 40, "threshold": 0.004}
    purged = np.zeros(len(data.close), dtype=bool)
    for ranges in splits.values():
        for a, b in ranges:
            purged[b - 41:b] = True
    inside = np.zeros(len(data.close), dtype=bool)
    for ranges in splits.values():
        for a, b in ranges:
            inside[a:b] = True
    keep = inside & ~purged
    np.testing.assert_array_equal(view.labels[keep], direct.labels[keep[s]])
    assert (view.labels[purged] == -1).all()
    # the prepared embargo (6 bars) is shorter than the new lookahead: without the purge the last
    # 35 train labels would read validation prices
    assert int(data.metadata["embargo"]) < 41
    # a hand-worked row: label from open[t+1] to open[t+41]
    t = splits["train"][0][0] + 100
    fr = np.log(data.open[t + 41] / data.open[t + 1])
    assert view.labels[t] == (2 if fr > 0.004 else 0 if fr < -0.004 else 1)
    assert np.array_equal(data.labels, PreparedData(small_prepared).labels)  # the directory is untouched


def test_rewriting_prices_after_a_range_never_changes_its_labels(small_prepared: Path) -> None:
    from himari.data import PreparedData
    from himari.training.counterfactual import with_arrays
    from himari.training.relabel import relabelled

    data = PreparedData(small_prepared)
    a, b = data.split("train")[0]
    spec = {"name": "triple-barrier", "horizon": 30, "take_profit": 1.0, "stop_loss": 1.0, "vol_window": 48}
    before = relabelled(data, spec, {"train": [(a, b)]}).labels[a:b]
    rng = np.random.default_rng(0)
    bars = {k: np.array(getattr(data, k)) for k in ("open", "high", "low", "close")}
    shock = np.exp(rng.normal(0, 0.05, len(bars["open"]) - b))
    for k in bars:
        bars[k][b:] *= shock
    after = relabelled(with_arrays(data, **bars), spec, {"train": [(a, b)]}).labels[a:b]
    np.testing.assert_array_equal(before, after)
    assert (before >= 0).sum() > 0.5 * (b - a)


def test_a_run_trains_on_its_own_labels(small_prepared: Path, tmp_path: Path) -> None:
    """The class counts the model is built with are those of the run's labels on its train rows."""
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.relabel import relabelled
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared)},
                           sets=["recipe=none", "labels.name=forward-return", "labels.horizon=24",
                                 "labels.threshold=0.01", "train.epochs=1", "train.max_steps_per_epoch=2",
                                 "train.progress=false"])
    Trainer(run, plugins=P, run_dir=tmp_path / "run").fit()
    data = PreparedData(small_prepared)
    splits = {n: data.split(n) for n in ("train", "validation", "test")}
    labels = relabelled(data, run.labels, splits).labels
    rows = np.concatenate([np.arange(a, b) for a, b in splits["train"]])
    y = labels[rows]
    expected = tuple(int((y == k).sum()) for k in range(3))
    assert tuple(load_trained(tmp_path / "run").context.class_counts) == expected
    assert expected != tuple(int((data.labels[rows] == k).sum()) for k in range(3))


@pytest.mark.parametrize("sets, match", [
    (["labels.name=no-such"], "labeler 'no-such' is unknown"),
    (["labels.name=forward-return", "labels.horizon=0"], "horizon"),
    (["labels.name=forward-return", "labels.span=3"], "unknown parameter"),
    (["labels=48"], "expected a mapping"),
    (["recipe=mine"], "recipe: expected one of default, none"),
])
def test_bad_labels_and_recipe_settings_are_refused(sets: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=sets)


def test_labels_and_a_synthetic_set_together_are_refused(small_prepared: Path, tmp_path: Path) -> None:
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                 "augment": str(tmp_path)},
                           sets=["labels.name=forward-return"])
    with pytest.raises(ConfigError, match="synthetic set carries the labels"):
        Trainer(run, plugins=P, run_dir=tmp_path / "run").fit()
    assert not (tmp_path / "run").exists()


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8
    """Hidden width."""


def _plugins_with(recipe: dict) -> object:
    class Plugin:
        @hookimpl
        def himari_register_models(self, registry):
            registry.add(ModelSpec(name="tiny", summary="a model with a recipe", config=TinyConfig,
                                   factory=lambda c, x: None, default_preprocess=("zscore",), recipe=recipe,
                                   augment=True))

    plugins = build_plugins()
    plugins.register(Plugin(), name="tiny-plugin")
    return plugins


RECIPE = {"labels": {"name": "forward-return", "horizon": 48, "threshold": 0.006},
          "execution": {"min_hold": 48, "decision_interval": 6}, "train": {"epochs": 3},
          "methods": ["confidence-penalty"], "plugins": {"tiny": {"width": 16}}}


def test_a_recipe_sits_under_the_users_settings() -> None:
    plugins = _plugins_with(RECIPE)
    run = merge_run_config(plugins=plugins, overrides={"model": "tiny"})
    assert run.labels == {"name": "forward-return", "horizon": 48, "threshold": 0.006}
    assert (run.execution.min_hold, run.execution.decision_interval) == (48, 6)
    assert run.train.epochs == 3 and run.methods == ["confidence-penalty"]
    assert run.plugin_configs["tiny"].width == 16 and run.recipe == "default"
    # an option, a --set and a YAML list each win over their part of the recipe only
    run = merge_run_config(plugins=plugins, overrides={"model": "tiny", "train.epochs": 5},
                           sets=["execution.min_hold=12", "labels.horizon=24", "methods=[]"])
    assert run.train.epochs == 5 and run.execution.min_hold == 12 and run.execution.decision_interval == 6
    assert run.labels["horizon"] == 24 and run.labels["threshold"] == 0.006 and run.methods == []
    # labels naming another labeler replace the recipe's (its parameters would not fit)
    run = merge_run_config(plugins=plugins, overrides={"model": "tiny"},
                           sets=["labels.name=risk-adjusted", "labels.horizon=96"])
    assert run.labels == {"name": "risk-adjusted", "horizon": 96, "z": 0.5, "vol_window": 48}
    # recipe=none: the plain settings
    run = merge_run_config(plugins=plugins, overrides={"model": "tiny"}, sets=["recipe=none"])
    assert run.labels is None and run.execution.min_hold == 0 and run.train.epochs == 10
    assert run.methods == [] and run.plugin_configs["tiny"].width == 8 and run.to_dict()["recipe"] == "none"


def test_a_synthetic_set_keeps_the_labels_it_was_made_with() -> None:
    """With --augment the recipe's labels step aside (the set's rows carry the prepared labels);
    the rest of the recipe stays."""
    plugins = _plugins_with(RECIPE)
    run = merge_run_config(plugins=plugins, overrides={"model": "tiny", "augment": "/some/set"})
    assert run.labels is None and run.execution.min_hold == 48 and run.train.epochs == 3


def test_a_resumed_run_keeps_the_recipe_it_was_written_with(tmp_path: Path) -> None:
    """config.yaml holds every setting filled in, so reading it back gives the same run even
    if the model's recipe changed since."""
    import yaml

    from himari.training.config import resolve_run_config

    first = merge_run_config(plugins=_plugins_with(RECIPE), overrides={"model": "tiny"})
    changed = _plugins_with({**RECIPE, "execution": {"min_hold": 288}, "train": {"epochs": 7}})
    again = resolve_run_config(yaml.safe_load(yaml.safe_dump(first.to_dict())), changed)
    assert again.to_dict() == first.to_dict()


@pytest.mark.parametrize("recipe, match", [
    ({"env": {"fee": 0.0}}, "may not set env.fee"),
    ({"data": "x"}, "not 'data'"),
    ({"splits": {}}, "not 'splits'"),
])
def test_a_recipe_may_not_set_the_users_market(recipe: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelSpec(name="tiny", summary="s", config=TinyConfig, factory=lambda c, x: None, recipe=recipe)


def test_himari_train_with_no_options_trains_baseline_mlps_recipe(small_prepared: Path, tmp_path: Path) -> None:
    """The recipe reaches the run: its labels relabel the train rows (the class counts are the
    recipe labeler's) and its execution rules act on the test split (no position is changed
    again within the minimum holding period)."""
    import json

    import yaml
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.relabel import relabelled
    from himari_builtin.models.baseline_mlp import RECIPE

    run_dir = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                                   "--epochs", "1", "--set", "train.max_steps_per_epoch=4"])
    assert res.exit_code == 0, res.output
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["recipe"] == "default" and config["labels"] == RECIPE["labels"]
    assert {k: config["execution"][k] for k in RECIPE["execution"]} == RECIPE["execution"]
    data = PreparedData(small_prepared)
    splits = {n: data.split(n) for n in ("train", "validation", "test")}
    y = relabelled(data, RECIPE["labels"], splits).labels[np.concatenate([np.arange(a, b) for a, b in splits["train"]])]
    assert tuple(load_trained(run_dir).context.class_counts) == tuple(int((y == k).sum()) for k in range(3))
    test = splits["test"]
    acts = load_trained(run_dir).actions(data, test)
    changes = np.flatnonzero(acts != 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["execution"]["min_hold"], summary["execution"]["decision_interval"]) == (288, 12)
    pos, last = 0, None
    for i in changes:  # long_flat: a change of position is BUY while flat or SELL while long
        new = 1 if acts[i] == 2 else 0
        if new != pos:
            assert last is None or i - last >= 288
            pos, last = new, i
