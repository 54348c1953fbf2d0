"""Execution rules in the Trainer and in restored runs (stateless models): the evaluation under
rules equals filtering the model's own actions and probabilities by hand; himari backtest acts
under the same rules; choosing the rules on validation never reads the test split and picks the
argmax of an independently recomputed validation Sharpe; rules a model cannot follow are refused
before anything is created."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
from himari_tests_tiny_models import LinearSupervised  # type: ignore[import-not-found]
from rich.console import Console

from himari.errors import ConfigError
from himari.evaluation.execution import apply
from himari.evaluation.policy import evaluate_actions
from himari.plugin import ModelSpec, hookimpl
from himari.plugin.manager import build_plugins
from himari.training.config import ExecutionConfig, merge_run_config
from himari.training.trainer import Trainer

TINY = ["train.epochs=2", "train.batch_size=128", "train.checkpoint_every=50", "train.log_every=50", "recipe=none"]
RULES = ["execution.decision_interval=3", "execution.min_hold=6", "execution.confidence=0.4"]
GRID = ["execution.select=true", "execution.grid_decision_interval=[4, 1]", "execution.grid_min_hold=[0, 12]",
        "execution.grid_confidence=[0.0, 0.45]"]


def trainer(plugins, data, run_dir, sets=(), model="baseline-mlp", **overrides):
    run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data), **overrides},
                           sets=[*TINY, *sets])
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))


def own_decisions(raw, ranges):
    """Shares of SELL, HOLD, BUY among the model's own decisions: every row of a range but its last."""
    starts = np.cumsum([0] + [b - a for a, b in ranges][:-1])
    decided = np.concatenate([raw[o:o + (b - a) - 1] for o, (a, b) in zip(starts, ranges)]).astype(np.int64)
    return np.bincount(decided, minlength=3) / len(decided)


def judged_by_hand(metrics, own):
    """The metrics of the executed actions with the collapse flag judged on the model's own mix."""
    names = ("SELL", "HOLD", "BUY")
    return {**metrics, "model_decisions": dict(zip(names, own.tolist())), "collapsed": bool(own.max() > 0.9),
            "dominant_action": names[int(np.argmax(own))], "dominant_share": float(own.max())}


def by_hand(policy, data, ranges, rules, env):
    """The rules applied to the restored model's own act and action_probabilities."""
    import torch

    from himari.data.splits import rows_of

    feats = policy.features(data)
    rows = rows_of(ranges)
    policy.model.network.eval()
    with torch.no_grad():
        raw = np.asarray(policy.model.act(feats, rows))
        probs = np.asarray(policy.model.action_probabilities(feats, rows))
    return raw, apply(raw, probs, ranges, env.mode, rules)


def test_evaluation_under_rules_equals_filtering_the_models_actions(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.leaderboard import backtest

    t = trainer(build_plugins(), small_prepared, tmp_path / "run", RULES)
    s = t.fit()
    rules = ExecutionConfig(decision_interval=3, min_hold=6, confidence=0.4)
    assert s["execution"] == {"selected": False, "decision_interval": 3, "min_hold": 6, "confidence": 0.4}
    assert not (tmp_path / "run" / "execution.json").exists()
    data = PreparedData(small_prepared)
    policy = load_trained(tmp_path / "run")
    assert policy.rules == rules
    for split in ("validation", "test"):
        ranges = data.split(split)
        raw, executed = by_hand(policy, data, ranges, rules, t.env)
        assert (raw != executed).any()  # the rules changed something
        expected = evaluate_actions(data.open, data.close, ranges, executed, t.env, t.bars_per_year)
        own = own_decisions(raw, ranges)
        assert s[split]["model"] == judged_by_hand(expected, own)
        assert expected["actions"]["HOLD"] > own[1]  # the rules added HOLDs the model did not decide
        np.testing.assert_array_equal(policy.actions(data, ranges), executed)
        raw_metrics = evaluate_actions(data.open, data.close, ranges, raw, t.env, t.bars_per_year)
        assert expected["n_trades"] < raw_metrics["n_trades"]
    # the epochs scored under the same rules: best.pt's validation Sharpe is the final one
    assert s["best_validation_sharpe"] == s["validation"]["model"]["sharpe"]
    entries, _ = backtest([str(tmp_path / "run")], split="test")
    assert entries[0].metrics == s["test"]["model"]


def test_default_rules_leave_the_actions_alone(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.data.splits import rows_of
    from himari.training.assemble import load_trained

    s = trainer(build_plugins(), small_prepared, tmp_path / "run", ["train.epochs=1"]).fit()
    assert "execution" not in s
    assert "execution" in (tmp_path / "run" / "config.yaml").read_text()
    policy = load_trained(tmp_path / "run")
    data = PreparedData(small_prepared)
    ranges = data.split("test")
    np.testing.assert_array_equal(policy.actions(data, ranges),
                                  policy.model.act(policy.features(data), rows_of(ranges)))


def _rewrite_test_split(src, dst) -> None:
    """A copy of the prepared data whose test rows have other prices and features."""
    from himari.data import PreparedData

    shutil.copytree(src, dst)
    (a, b), = PreparedData(dst).split("test")
    rng = np.random.default_rng(1)
    for name in ("open", "close", "high", "low"):
        x = np.load(dst / f"{name}.npy")
        x[a:b] = x[a:b][::-1] * (1 + rng.normal(0, 0.01, b - a))
        np.save(dst / f"{name}.npy", x)
    f = np.load(dst / "features.npy")
    f[a:b] = rng.normal(size=f[a:b].shape).astype(f.dtype)
    np.save(dst / "features.npy", f)


def test_selection_reads_validation_only_and_takes_the_argmax(small_prepared, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.leaderboard import backtest

    plugins = build_plugins()
    t = trainer(plugins, small_prepared, tmp_path / "run", GRID)
    s = t.fit()
    chosen = json.loads((tmp_path / "run" / "execution.json").read_text())
    assert s["execution"] == chosen and chosen["selected"] is True and chosen["split"] == "validation"
    assert len(chosen["grid"]) == 8

    # independently: every combination's validation Sharpe from the restored model's actions
    data = PreparedData(small_prepared)
    policy = load_trained(tmp_path / "run")
    val = data.split("validation")
    table = []
    for k in (4, 1):
        for m in (0, 12):
            for c in (0.0, 0.45):
                rules = ExecutionConfig(decision_interval=k, min_hold=m, confidence=c)
                _, acts = by_hand(policy, data, val, rules, t.env)
                r = evaluate_actions(data.open, data.close, val, acts, t.env, t.bars_per_year)
                table.append(((k, m, c), r["sharpe"], r["n_trades"]))
    assert [(g["decision_interval"], g["min_hold"], g["confidence"]) for g in chosen["grid"]] == [x[0] for x in table]
    assert [g["sharpe"] for g in chosen["grid"]] == pytest.approx([x[1] for x in table], rel=1e-12)
    assert len({round(x[1], 9) for x in table}) > 2  # the grid's rules make a difference
    best = max(table, key=lambda x: (x[1], -x[2], -x[0][0], -x[0][1], -x[0][2]))
    assert (chosen["decision_interval"], chosen["min_hold"], chosen["confidence"]) == best[0]

    # the test split and himari backtest use the choice
    rules = ExecutionConfig(decision_interval=best[0][0], min_hold=best[0][1], confidence=best[0][2])
    assert policy.rules == rules
    test = data.split("test")
    raw, acts = by_hand(policy, data, test, rules, t.env)
    assert s["test"]["model"] == judged_by_hand(
        evaluate_actions(data.open, data.close, test, acts, t.env, t.bars_per_year), own_decisions(raw, test))
    assert backtest([str(tmp_path / "run")], split="test")[0][0].metrics == s["test"]["model"]

    # a damaged choice is an error naming the file, not silently other rules
    shutil.copytree(tmp_path / "run", tmp_path / "damaged")
    for text in ("{not json", json.dumps({**chosen, "min_hold": -3}), json.dumps({"selected": True})):
        (tmp_path / "damaged" / "execution.json").write_text(text)
        with pytest.raises(ConfigError, match="execution.json"):
            load_trained(tmp_path / "damaged")

    # the same run on data whose test split was rewritten chooses the same, scores another test
    _rewrite_test_split(small_prepared, tmp_path / "other")
    s2 = trainer(plugins, tmp_path / "other", tmp_path / "run2", GRID).fit()
    assert s2["execution"] == s["execution"]
    assert s2["validation"] == s["validation"]
    assert s2["test"]["model"] != s["test"]["model"]


@dataclass(frozen=True)
class PlainConfig:
    scale: float = 1.0
    """Unused."""


class Plain(LinearSupervised):
    """A third-party stateless model without action_probabilities."""

    def act(self, features, rows):
        import torch

        return self.network(torch.from_numpy(np.ascontiguousarray(features[rows]))).argmax(-1).numpy()


class Stateful(Plain):
    """A third-party stateful model whose act_sequence has no execution keyword."""

    def act_sequence(self, features, open_, close, ranges, env):
        from himari.data.splits import rows_of

        return self.act(features, rows_of(ranges))


class ThirdParty:
    @hookimpl
    def himari_register_models(self, registry):
        registry.add(ModelSpec(name="plain", summary="no probabilities", config=PlainConfig, factory=Plain))
        registry.add(ModelSpec(name="stateful", summary="no execution keyword", config=PlainConfig, factory=Stateful))


def test_rules_a_model_cannot_follow_are_refused_before_the_run_exists(small_prepared, tmp_path) -> None:
    plugins = build_plugins()
    plugins.register(ThirdParty(), name="third-party")
    common = {"preprocess": "zscore"}
    with pytest.raises(ConfigError, match="model 'plain'.*action_probabilities"):
        trainer(plugins, small_prepared, tmp_path / "a", ["execution.confidence=0.5"], model="plain", **common).fit()
    with pytest.raises(ConfigError, match="model 'plain'"):  # the selection grid tries 0.5 and 0.6
        trainer(plugins, small_prepared, tmp_path / "b", ["execution.select=true"], model="plain", **common).fit()
    with pytest.raises(ConfigError, match="model 'stateful'.*execution= keyword"):
        trainer(plugins, small_prepared, tmp_path / "c", ["execution.min_hold=6"], model="stateful", **common).fit()
    assert not any((tmp_path / n).exists() for n in "abc")
    # rules without confidence work for the stateless model; the stateful one acts under the
    # defaults without the keyword
    s = trainer(plugins, small_prepared, tmp_path / "d", ["train.epochs=1", "execution.decision_interval=4"],
                model="plain", **common).fit()
    assert s["execution"]["decision_interval"] == 4
    assert "test" in trainer(plugins, small_prepared, tmp_path / "e", ["train.epochs=1"], model="stateful",
                             **common).fit()
