"""Execution rules (himari.evaluation.execution) against hand-worked tables: the decision
interval, the minimum holding period in both position modes, the confidence threshold, their
order, and the reset at each range start; the bar-by-bar filter and the per-range ``apply``
agree; the run config's ``execution:`` section is validated and round-trips; rules out of range
are refused; a stateful model's decisions are counted before the rules turn some into HOLD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.evaluation.execution import (
    ExecutionFilter,
    active,
    apply,
    choose,
    model_actions,
)

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


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_confidence_reads_the_top_probability_of_the_row(mode: str) -> None:
    """Catches a confidence rule that reads the probability of the action taken, or the larger
    of SELL and BUY only (ignoring HOLD), instead of the top action's probability: the two agree
    for an argmax policy but not for a sampled one, whose action need not be the top.

    c = 0.5, SELL/HOLD/BUY probabilities per bar (top in brackets), raw action, kept?
      0: 0.10 [0.60] 0.30  BUY   top 0.60 > 0.5: BUY (flat -> long)
      1: 0.20 [0.55] 0.25  SELL  top 0.55 > 0.5: SELL (long -> flat / short)
      2: 0.30 [0.40] 0.30  BUY   top 0.40:       HOLD
      3: 0.05 [0.90] 0.05  BUY   top 0.90 > 0.5: BUY
      4: [0.50] 0.30 0.20  SELL  top exactly 0.5, not above: HOLD
      5: 0.30 0.10 [0.60]  SELL  top 0.60 > 0.5: SELL
    The action taken has probability 0.30, 0.20, 0.30, 0.05, 0.50, 0.30: none above 0.5."""
    probs = [[0.10, 0.60, 0.30], [0.20, 0.55, 0.25], [0.30, 0.40, 0.30],
             [0.05, 0.90, 0.05], [0.50, 0.30, 0.20], [0.30, 0.10, 0.60]]
    raw = [B, S, B, B, S, S]
    assert both(raw, Rules(confidence=0.5), mode, probs) == [B, S, H, B, H, S]  # filter and apply


@pytest.mark.parametrize(("rules", "field"), [
    (Rules(decision_interval=0), "decision_interval"),
    (Rules(min_hold=-1), "min_hold"),
    (Rules(confidence=1.0), "confidence"),
    (Rules(confidence=-0.1), "confidence"),
])
def test_rules_out_of_range_are_refused(rules: Rules, field: str) -> None:
    """Catches bounds checks off by one: an interval of 0 (every bar ``bar % 0``), a negative
    holding period, or a confidence of 1, which no probability can exceed, so that every action
    would silently become HOLD."""
    with pytest.raises(ValueError, match=field):
        ExecutionFilter(1, "long_flat", rules)
    with pytest.raises(ValueError, match=field):
        apply(np.array([B, S, B]), np.full((3, 3), 1 / 3), [(0, 3)], "long_flat", rules)


def test_the_bounds_themselves_are_accepted() -> None:
    """Catches bounds checks that refuse the edge values the rules allow: an interval of 1, a
    holding period of 0 and a confidence of 0 (the defaults, which change nothing).

    Raw BUY, SELL, BUY, HOLD: kept as they are by both filters."""
    raw = [B, S, B, H]
    assert both(raw, Rules(decision_interval=1, min_hold=0, confidence=0.0), "long_short") == raw


class _Env:
    mode = "long_flat"


class _StatefulAlternator:
    """A stateful model that decides BUY, SELL, BUY, ... on every row of a range but its last
    (HOLD there), through an ``ExecutionFilter`` when given rules."""

    def act_sequence(self, features, open_, close, ranges, env, execution=None) -> np.ndarray:
        out = []
        for a, b in ranges:
            rules = None if execution is None else ExecutionFilter(1, env.mode, execution)
            for t in range(b - a - 1):
                raw = B if t % 2 == 0 else S
                out.append(raw if rules is None else int(rules.step([raw])[0]))
            out.append(H)
        return np.array(out, dtype=np.int8)


def test_a_stateful_models_decisions_are_counted_before_the_rules() -> None:
    """Catches the filter counting the executed actions (after the decision interval turned
    some into HOLD) instead of the model's own decisions, which would read a decision interval's
    HOLDs as the model's and flag a healthy model as collapsed onto HOLD.

    One range of 6 rows, decision interval 2. The model decides at rows 0-4:
    BUY, SELL, BUY, SELL, BUY; executed: BUY, HOLD, BUY, HOLD, BUY, and HOLD on the last row.
    Its decisions: 2 SELL, 0 HOLD, 3 BUY (executed mix: 0 SELL, 3 HOLD, 3 BUY)."""
    counts = np.zeros(3, dtype=np.int64)
    out = model_actions(_StatefulAlternator(), None, None, None, [(0, 6)], _Env(), Rules(decision_interval=2),
                        decision_counts=counts)
    assert out.tolist() == [B, H, B, H, B, H]
    assert counts.tolist() == [2, 0, 3]
