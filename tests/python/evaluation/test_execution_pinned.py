"""Execution rules (``himari.evaluation.execution``) pinned against hand-worked cases the
suite left open: the confidence threshold reads the top action's probability (not the
probability of the action taken, nor the top of SELL and BUY alone), and rules out of range are
refused instead of silently holding everything or dividing by zero; a stateful model's decisions
are counted before the rules turn some into HOLD. Each test names the wrong implementation it
catches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from himari.evaluation.execution import ExecutionFilter, apply, model_actions

S, H, B = 0, 1, 2


@dataclass(frozen=True)
class Rules:
    decision_interval: int = 1
    min_hold: int = 0
    confidence: float = 0.0


def by_filter(actions: list[int], probabilities: list[list[float]], rules: Rules, mode: str) -> list[int]:
    """The bar-by-bar filter over one env."""
    f = ExecutionFilter(1, mode, rules)
    return [int(f.step([a], [p])[0]) for a, p in zip(actions, probabilities)]


def by_apply(actions: list[int], probabilities: list[list[float]], rules: Rules, mode: str) -> list[int]:
    """The per-range filter over one range."""
    return apply(np.array(actions), np.array(probabilities), [(0, len(actions))], mode, rules).tolist()


@pytest.mark.parametrize("run", [by_filter, by_apply])
@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_confidence_reads_the_top_probability_of_the_row(run, mode: str) -> None:
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
    assert run(raw, probs, Rules(confidence=0.5), mode) == [B, S, H, B, H, S]


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
    rules = Rules(decision_interval=1, min_hold=0, confidence=0.0)
    raw = [B, S, B, H]
    f = ExecutionFilter(1, "long_short", rules)
    assert [int(f.step([a])[0]) for a in raw] == raw
    assert apply(np.array(raw), None, [(0, 4)], "long_short", rules).tolist() == raw


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
