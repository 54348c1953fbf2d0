"""Execution rules (himari.evaluation.execution) against hand-worked tables: the decision
interval, the minimum holding period in both position modes, the confidence threshold, their
order, and the reset at each range start; the bar-by-bar filter and the per-range ``apply``
agree; the run config's ``execution:`` section is validated and round-trips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.evaluation.execution import ExecutionFilter, active, apply, choose

S, H, B = 0, 1, 2


@dataclass(frozen=True)
class Rules:
    decision_interval: int = 1
    min_hold: int = 0
    confidence: float = 0.0


def by_filter(actions, rules, mode="long_flat", probabilities=None):
    f = ExecutionFilter(1, mode, rules)
    return [int(f.step([a], None if probabilities is None else [probabilities[i]])[0])
            for i, a in enumerate(actions)]


def both(actions, rules, mode="long_flat", probabilities=None, ranges=None):
    """The filter (one range) and apply give the same; returns apply's list."""
    n = len(actions)
    out = apply(np.array(actions), None if probabilities is None else np.array(probabilities),
                ranges or [(0, n)], mode, rules).tolist()
    if ranges is None:
        assert by_filter(actions, rules, mode, probabilities) == out
    return out


def test_decision_interval_holds_between_decision_bars() -> None:
    # decide at bars 0, 3, 6 only
    assert both([B, S, B, S, B, S, B, S], Rules(decision_interval=3)) == [B, H, H, S, H, H, B, H]


def test_min_hold_long_flat_by_hand() -> None:
    # bar 0 BUY opens (change at 0); SELL at 1, 2 is < 3 bars later: HOLD; SELL at 3 closes;
    # BUY at 4 is 1 bar after: HOLD; BUY at 6 (3 bars) opens; SELL at 7: HOLD.
    assert both([B, S, S, S, B, H, B, S], Rules(min_hold=3)) == [B, H, H, S, H, H, B, H]
    # BUY while already long changes nothing, so it passes as it is (a no-op)
    assert both([B, B, S, S], Rules(min_hold=3)) == [B, B, H, S]
    # 0 and 1 hold nothing back
    raw = [B, S, B, S, B]
    assert both(raw, Rules(min_hold=1)) == raw and both(raw, Rules(min_hold=0)) == raw


def test_min_hold_depends_on_the_position_mode() -> None:
    raw = [S, B, B, S, S, B]
    # long_short: SELL opens a short (change), BUY 1 bar later held back, BUY at 2 flips, ...
    assert both(raw, Rules(min_hold=2), mode="long_short") == [S, H, B, H, S, H]
    # long_flat: SELL while flat changes nothing, so the BUY at 1 opens at once
    assert both(raw, Rules(min_hold=2), mode="long_flat") == [S, B, B, S, S, B]


def test_confidence_threshold_reads_the_top_probability() -> None:
    probs = [[0.2, 0.2, 0.6],   # BUY at 0.6 > 0.5: kept
             [0.5, 0.3, 0.2],   # SELL at exactly 0.5: not above, HOLD
             [0.3, 0.3, 0.4],   # BUY at 0.4: HOLD
             [0.05, 0.9, 0.05],  # HOLD stays HOLD
             [0.7, 0.1, 0.2]]   # SELL at 0.7: kept
    assert both([B, S, B, H, S], Rules(confidence=0.5), probabilities=probs) == [B, H, H, H, S]
    # off (0): no probabilities needed, nothing changes
    assert both([B, S, B, H, S], Rules()) == [B, S, B, H, S]
    with pytest.raises(ConfigError, match="confidence"):
        apply(np.array([B, S]), None, [(0, 2)], "long_flat", Rules(confidence=0.5))


def test_rules_combine_interval_then_confidence_then_hold() -> None:
    probs = [[0.0, 0.1, 0.9], [0.9, 0.1, 0.0], [0.45, 0.1, 0.45], [0.9, 0.05, 0.05],
             [0.1, 0.1, 0.8], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0]]
    raw = [B, S, S, S, B, S, S]
    # k=2 decides at 0, 2, 4, 6; at 2 the SELL is below 0.6: HOLD; at 4 BUY while long: kept
    # (no change); at 6 SELL: 6 bars after the change at 0 >= m=5: kept
    assert both(raw, Rules(decision_interval=2, min_hold=5, confidence=0.6), probabilities=probs) == \
        [B, H, H, H, B, H, S]
    # with m=7 the SELL at 6 is held back
    assert both(raw, Rules(decision_interval=2, min_hold=7, confidence=0.6), probabilities=probs) == \
        [B, H, H, H, B, H, H]


def test_each_range_starts_from_bar_zero_flat_and_unheld() -> None:
    # bar index restarts: ranges of 3 rows, k=2 decides at rows 0 and 2 of each
    assert both([B, S, S, B, S, S], Rules(decision_interval=2), ranges=[(0, 3), (10, 13)]) == [B, H, S, B, H, S]
    # position restarts flat: the SELL opening range 2 changes nothing (so it passes and the
    # hold clock is not started); the BUY after it opens at once
    assert both([B, H, S, B], Rules(min_hold=5), ranges=[(0, 2), (5, 7)]) == [B, H, S, B]
    # the hold clock restarts: a BUY 1 bar into range 2 is not held back by range 1's trade
    assert both([H, B, B, S], Rules(min_hold=3), ranges=[(0, 2), (5, 7)]) == [H, B, B, H]


def test_the_filter_over_many_envs_equals_apply_per_env() -> None:
    rng = np.random.default_rng(0)
    n, g = 200, 4
    acts = rng.integers(0, 3, (g, n))
    probs = rng.dirichlet(np.ones(3), (g, n))
    for mode in ("long_flat", "long_short"):
        rules = Rules(decision_interval=3, min_hold=7, confidence=0.45)
        f = ExecutionFilter(g, mode, rules)
        stepped = np.stack([f.step(acts[:, t], probs[:, t]) for t in range(n)], axis=1)
        for i in range(g):
            np.testing.assert_array_equal(stepped[i], apply(acts[i], probs[i], [(0, n)], mode, rules))
        assert (stepped != acts).any()


def test_active_only_when_a_rule_can_change_an_action() -> None:
    assert not active(None) and not active(Rules()) and not active(Rules(min_hold=1))
    assert active(Rules(decision_interval=2)) and active(Rules(min_hold=2)) and active(Rules(confidence=0.1))


def test_choose_by_sharpe_then_fewest_trades_then_simplest() -> None:
    def row(k, m, c, s, t):
        return {"decision_interval": k, "min_hold": m, "confidence": c, "sharpe": s, "n_trades": t}

    rows = [row(1, 0, 0.0, 1.0, 50), row(3, 0, 0.0, 2.0, 40), row(6, 0, 0.0, 2.0, 30), row(12, 0, 0.0, float("nan"), 1)]
    assert choose(rows)["decision_interval"] == 6  # best Sharpe, fewer trades of the two
    rows = [row(6, 24, 0.5, 2.0, 30), row(6, 6, 0.5, 2.0, 30), row(6, 6, 0.0, 2.0, 30)]
    assert (choose(rows)["min_hold"], choose(rows)["confidence"]) == (6, 0.0)
    rows = [row(12, 0, 0.0, 2.0, 30), row(3, 24, 0.6, 2.0, 30)]  # a full tie: the smaller interval first
    assert choose(rows)["decision_interval"] == 3


def test_run_config_execution_section(tmp_path) -> None:
    from himari.plugin.manager import build_plugins
    from himari.training.config import ExecutionConfig, load_run_config, merge_run_config
    from himari.training.rundir import write_yaml

    plugins = build_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp"},
                           sets=["recipe=none", "execution.min_hold=6", "execution.grid_confidence=[0.0, 0.55]"])
    assert run.execution == ExecutionConfig(min_hold=6, grid_confidence=(0.0, 0.55))
    d = run.to_dict()
    assert d["execution"]["min_hold"] == 6 and d["execution"]["select"] is False
    (tmp_path / "r").mkdir()
    write_yaml(tmp_path / "r" / "config.yaml", d)
    assert load_run_config(tmp_path / "r", plugins).execution == run.execution
    for bad, key in (("execution.decision_interval=0", "decision_interval"), ("execution.min_hold=-1", "min_hold"),
                     ("execution.confidence=1.0", "confidence"), ("execution.grid_min_hold=[]", "grid_min_hold"),
                     ("execution.grid_confidence=[0.5, 2]", "grid_confidence"),
                     ("execution.decision_interval=1.5", "decision_interval"), ("execution.speed=2", "speed")):
        with pytest.raises(ConfigError, match=f"execution.*{key}"):
            merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp"}, sets=[bad])
