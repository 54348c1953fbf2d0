"""Execution rules: trading less than the model would, at policy level, for every model.

A model decides at every bar; costs punish a policy that changes position too often on a small
edge. Three rules turn some of its decisions into HOLD before they reach the market:

- **decision interval** ``k``: decide only at bars ``0, k, 2k, ...`` of a range (counted from the
  range's first row); every other bar is HOLD;
- **minimum holding period** ``m``: after a position change decided at bar t, a decision at
  bar t' that would change the position again is HOLD while ``t' - t < m`` (the position,
  filled at the open of t + 1, is then held at least m bars; 0 and 1 change nothing);
- **confidence threshold** ``c``: a decision is kept only when the top action's probability
  (the model's ``action_probabilities``, the softmax of its action logits or Q values) exceeds
  ``c``; else HOLD (0 disables it).

The interval is checked first, then the confidence, then the holding period. The filter tracks
per env the bar index within the range, the position the executed actions lead to (``long_flat``:
BUY -> 1, SELL -> 0; ``long_short``: BUY -> 1, SELL -> -1; HOLD keeps) and the bars since the last
change. Each range starts flat, with no change yet (the first trade is never held back).

``ExecutionFilter`` steps a batch of envs bar by bar (a stateful model's sequential loop, where
the account the model sees must follow the executed actions); ``apply`` filters the actions of a
stateless model, range by range. Both use the same per-bar rule. ``RolloutExecutionFilter`` is
that rule on torch tensors for online RL's training rollouts (``execution.in_rollouts``): every
env's episode starts and ends on its own, and its rule state restarts with it. The rules are any
object with ``decision_interval``, ``min_hold`` and ``confidence`` (the run config's
``ExecutionConfig``).
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from himari.engine import BUY, HOLD, SELL
from himari.errors import ConfigError
from himari.evaluation.policy import action_problem, decision_mask

Ranges = Sequence[tuple[int, int]]
_DECISIONS: contextvars.ContextVar[np.ndarray | None] = contextvars.ContextVar("himari_decisions", default=None)
"""Where ``ExecutionFilter.step`` counts the raw decisions it sees (``model_actions`` sets it)."""
_NEVER = 1 << 62
"""Bars since the last change at a range start: no change yet, nothing is held back."""


class ExecutionRules(Protocol):
    """What the filter reads of a rules object (``ExecutionConfig`` has these fields)."""

    @property
    def decision_interval(self) -> int: ...

    @property
    def min_hold(self) -> int: ...

    @property
    def confidence(self) -> float: ...


def active(rules: ExecutionRules | None) -> bool:
    """Whether ``rules`` can change any action (the defaults ``k = 1, m <= 1, c = 0`` cannot)."""
    return rules is not None and (rules.decision_interval != 1 or rules.min_hold > 1 or rules.confidence > 0)


def rules_dict(rules: ExecutionRules) -> dict[str, Any]:
    """The three values as plain data (summary.json, execution.json)."""
    return {"decision_interval": int(rules.decision_interval), "min_hold": int(rules.min_hold),
            "confidence": float(rules.confidence)}


def _target(action: int, position: int, mode: str) -> int:
    if action == BUY:
        return 1
    if action == SELL:
        return 0 if mode == "long_flat" else -1
    return position


def _decide(bar: int, action: int, top: float, position: int, since: int, k: int, m: int, c: float,
            mode: str) -> tuple[int, int, int]:
    """One bar of one env: ``(executed action, position after it, bars since the last change at
    the next bar)``. ``top`` is the top action's probability (ignored when ``c`` is 0)."""
    if bar % k or (c > 0 and not top > c):  # not a decision bar, or not confident enough
        action = HOLD
    target = _target(action, position, mode)
    if target != position and since < m:
        action, target = HOLD, position
    if target != position:
        return action, target, 1
    return action, position, since + 1


def _top_probability(probabilities: Any, n: int) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape != (n, 3):
        raise ValueError(f"probabilities: expected shape ({n}, 3), one row of SELL/HOLD/BUY probabilities per "
                         f"action, got {p.shape}")
    return p.max(axis=1)


def _check_mode(mode: str) -> None:
    if mode not in ("long_flat", "long_short"):
        raise ValueError(f"mode: expected long_flat or long_short, got {mode!r}")


def _no_probabilities() -> ConfigError:
    return ConfigError("execution.confidence > 0 needs the model's action probabilities, and none were given")


def _values(rules: ExecutionRules) -> tuple[int, int, float]:
    k, m, c = rules.decision_interval, rules.min_hold, rules.confidence
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"decision_interval must be an integer >= 1, got {k!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
        raise ValueError(f"min_hold must be an integer >= 0, got {m!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c < 1:
        raise ValueError(f"confidence must be a number in [0, 1), got {c!r}")
    return int(k), int(m), float(c)


def record_decisions(raw_actions: Any) -> None:
    """Count ``raw_actions`` (the policy's own decisions, before the rules) toward the decision
    mix that ``model_actions(decision_counts=)`` is collecting, if one is: what an
    ``ExecutionFilter`` does at each step, for decisions that passed through one built with
    ``count_decisions=False``."""
    counts = _DECISIONS.get()
    if counts is not None:
        counts += np.bincount(np.asarray(raw_actions).reshape(-1).astype(np.int64), minlength=3)[:3]


class ExecutionFilter:
    """The rules over ``n`` envs stepping together through one range from a flat account: call
    ``step`` once per bar, from the range's first row."""

    def __init__(self, n: int, mode: str, rules: ExecutionRules, *, count_decisions: bool = True) -> None:
        """``count_decisions=False``: the raw decisions of these envs are not counted toward the
        policy's own decision mix (candidates rolled out to choose among, say); count the chosen
        one's with ``record_decisions``."""
        _check_mode(mode)
        self.n, self.mode = int(n), mode
        self.count_decisions = bool(count_decisions)
        self.k, self.m, self.c = _values(rules)
        self.bar = 0
        self.position = [0] * self.n
        self.since = [_NEVER] * self.n

    def step(self, raw_actions: Any, probabilities: Any = None) -> np.ndarray:
        """The executed actions ``[n]`` (int8) of this bar, from the model's ``raw_actions [n]``
        and, when the confidence rule is on, its ``probabilities [n, 3]``."""
        raw = np.asarray(raw_actions).reshape(-1)
        if len(raw) != self.n:
            raise ValueError(f"raw_actions: expected {self.n} actions, got {len(raw)}")
        if self.count_decisions:
            record_decisions(raw)
        if self.c > 0 and probabilities is None:
            raise _no_probabilities()
        top = _top_probability(probabilities, self.n) if self.c > 0 else np.zeros(self.n)
        out = np.empty(self.n, dtype=np.int8)
        for i in range(self.n):
            out[i], self.position[i], self.since[i] = _decide(self.bar, int(raw[i]), float(top[i]), self.position[i],
                                                              self.since[i], self.k, self.m, self.c, self.mode)
        self.bar += 1
        return out


class RolloutExecutionFilter:
    """The rules over ``n`` envs of a training rollout, on torch tensors of the envs' device
    (no host read a step, so a GPU rollout stays asynchronous).

    The same per-bar rule as ``_decide``, vectorised over envs. Each env's bar index, position
    and bars since the last change restart (bar 0, flat, no change yet) where ``restart`` marks
    a new episode, as an evaluation range starts flat: the policy trains under exactly the
    execution it is evaluated with."""

    def __init__(self, n: int, mode: str, rules: ExecutionRules, device: Any = "cpu") -> None:
        import torch

        _check_mode(mode)
        self.k, self.m, self.c = _values(rules)
        self.sell_target = 0 if mode == "long_flat" else -1
        self.bar = torch.zeros(int(n), dtype=torch.long, device=device)
        self.position = torch.zeros_like(self.bar)
        self.since = torch.full_like(self.bar, _NEVER)

    @property
    def needs_probabilities(self) -> bool:
        """Whether ``step`` needs the top action's probability (the confidence rule is on)."""
        return self.c > 0

    def step(self, raw_actions: Any, top_probability: Any = None) -> Any:
        """The executed actions (``long``, the shape of ``raw_actions [n]``) of this step, from
        the sampled ``raw_actions`` and, with the confidence rule, the top action's probability
        ``[n]`` of each env's policy."""
        import torch

        raw = raw_actions.long()
        hold = self.bar % self.k != 0
        if self.c > 0:
            if top_probability is None:
                raise _no_probabilities()
            hold = hold | ~(top_probability > self.c)
        action = torch.where(hold, torch.full_like(raw, HOLD), raw)
        target = torch.where(action == BUY, torch.ones_like(raw),
                             torch.where(action == SELL, torch.full_like(raw, self.sell_target), self.position))
        blocked = (target != self.position) & (self.since < self.m)
        action = torch.where(blocked, torch.full_like(raw, HOLD), action)
        changed = (target != self.position) & ~blocked
        self.since = torch.where(changed, torch.ones_like(self.since), self.since + 1)
        self.position = torch.where(changed, target, self.position)
        self.bar = self.bar + 1
        return action

    def restart(self, new_episode: Any) -> None:
        """Restart the rule state of the envs where ``new_episode [n]`` (bool) is set: their next
        step is bar 0 of an episode that starts flat."""
        import torch

        self.bar = torch.where(new_episode, torch.zeros_like(self.bar), self.bar)
        self.position = torch.where(new_episode, torch.zeros_like(self.position), self.position)
        self.since = torch.where(new_episode, torch.full_like(self.since, _NEVER), self.since)


def apply(actions: Any, probabilities: Any, ranges: Ranges, mode: str, rules: ExecutionRules) -> np.ndarray:
    """The executed actions of a stateless model: ``actions`` (one per row of the concatenated
    ``ranges``) filtered range by range, each from a flat account; ``probabilities [n, 3]`` (or
    None when the confidence rule is off)."""
    _check_mode(mode)
    raw = np.asarray(actions)
    n = sum(b - a for a, b in ranges)
    if raw.ndim != 1 or len(raw) != n:
        raise ValueError(f"actions: expected one action per row of the ranges ({n}), got shape {raw.shape}")
    k, m, c = _values(rules)
    if not active(rules):
        return raw.astype(np.int8, copy=True)
    if c > 0 and probabilities is None:
        raise _no_probabilities()
    top = _top_probability(probabilities, n).tolist() if c > 0 else [0.0] * n
    acts = raw.astype(np.int64).tolist()
    out = np.empty(n, dtype=np.int8)
    offset = 0
    for a, b in ranges:
        position, since = 0, _NEVER
        for bar in range(b - a):
            i = offset + bar
            out[i], position, since = _decide(bar, acts[i], top[i], position, since, k, m, c, mode)
        offset += b - a
    return out


# ------------------------------------------------------------------ models


def accepts_execution(model: Any) -> bool:
    """Whether the model's ``act_sequence`` takes the ``execution`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(model.act_sequence).parameters
    except (TypeError, ValueError):
        return False
    return "execution" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_support(model: Any, name: str, rules: Iterable[ExecutionRules]) -> None:
    """Refuse rules the model cannot follow, naming it: a stateful model (``act_sequence``)
    whose ``act_sequence`` has no ``execution`` keyword, or a stateless model without
    ``action_probabilities`` asked for a confidence threshold."""
    rules = [r for r in rules if active(r)]
    if not rules:
        return
    if callable(getattr(model, "act_sequence", None)):
        if not accepts_execution(model):
            raise ConfigError(f"model {name!r}: its act_sequence takes no execution= keyword, so it cannot follow "
                              "execution rules (decision_interval, min_hold, confidence); drop the execution settings")
        return
    if any(r.confidence > 0 for r in rules) and not callable(getattr(model, "action_probabilities", None)):
        raise ConfigError(f"model {name!r} gives no action probabilities (action_probabilities), so "
                          "execution.confidence must be 0 (and execution.grid_confidence only 0)")


def model_actions(model: Any, features: Any, open_: Any, close: Any, ranges: Ranges, env: Any,
                  rules: ExecutionRules | None, name: str = "model",
                  decision_counts: np.ndarray | None = None) -> np.ndarray:
    """The executed actions of ``model`` on the concatenated ``ranges``: a stateful model's
    ``act_sequence`` (given ``execution=rules`` only when the rules can change an action, so a
    model without the keyword still acts under the defaults), else ``act`` filtered by ``apply``.
    Call it in eval mode under ``torch.no_grad()``.

    ``decision_counts`` (int64 ``[3]``), when given, is increased by the counts of SELL, HOLD and
    BUY the model itself decided, before the rules turned some into HOLD: whether a model has
    collapsed onto one action is a question about its decisions, not about the HOLDs a decision
    interval or a holding period imposes. A stateful model's decisions are counted where they
    pass through an ``ExecutionFilter``; one that filters otherwise counts its executed actions."""
    from himari.data.splits import rows_of

    on = active(rules)
    if on:
        check_support(model, name, [rules])  # type: ignore[list-item]
    if callable(getattr(model, "act_sequence", None)):
        extra = {"execution": rules} if on else {}
        seen = np.zeros(3, dtype=np.int64)
        token = _DECISIONS.set(seen if on and decision_counts is not None else None)
        try:
            out = checked_actions(model.act_sequence(features, open_, close, ranges, env, **extra),
                                  sum(int(b) - int(a) for a, b in ranges), name, "act_sequence")
        finally:
            _DECISIONS.reset(token)
        if decision_counts is not None:
            decision_counts += seen if seen.any() else _counts(out, ranges)
        return out
    rows = rows_of(list(ranges))
    raw = checked_actions(model.act(features, rows), len(rows), name, "act")
    if decision_counts is not None:
        decision_counts += _counts(raw, ranges)
    if not on:
        return raw
    assert rules is not None
    probs = model.action_probabilities(features, rows) if rules.confidence > 0 else None
    return apply(raw, probs, ranges, env.mode, rules)


def checked_actions(actions: Any, n: int, name: str, call: str) -> np.ndarray:
    """A model's ``act``/``act_sequence`` output as the backtester takes it (``action_problem``);
    anything else is refused naming the model."""
    from himari.errors import TrainingError

    a = np.asarray(actions)
    problem = action_problem(a, n)
    if problem:
        raise TrainingError(f"model {name!r}: {call} returned {problem}")
    return a


def _counts(actions: np.ndarray, ranges: Ranges) -> np.ndarray:
    """SELL, HOLD, BUY counts over the decisions (every row of a range but its last, which decides nothing)."""
    return np.bincount(np.asarray(actions)[decision_mask(ranges)].astype(np.int64), minlength=3)[:3]


# --------------------------------------------------------------- selection


def grid(decision_intervals: Iterable[int], min_holds: Iterable[int], confidences: Iterable[float]
         ) -> list[tuple[int, int, float]]:
    """Every combination, in order (interval, then holding period, then confidence)."""
    return [(int(k), int(m), float(c)) for k, m, c in itertools.product(decision_intervals, min_holds, confidences)]


def choose(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The best row of a scored grid (rows with ``decision_interval``, ``min_hold``,
    ``confidence``, ``sharpe``, ``n_trades``): the highest Sharpe (a non-finite one ranks last),
    ties broken by fewer trades, then the simplest rules (smaller k, then m, then c)."""
    if not scores:
        raise ValueError("choose: the grid is empty")

    def key(row: dict[str, Any]) -> tuple[float, float, int, int, float]:
        s = float(row["sharpe"])
        return (-(s if math.isfinite(s) else -math.inf), float(row["n_trades"]), int(row["decision_interval"]),
                int(row["min_hold"]), float(row["confidence"]))

    return min(scores, key=key)


def score_grid(combos: list[tuple[int, int, float]], score: Callable[[int, int, float], dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """``score(k, m, c)`` (the metrics of the policy under those rules) of every combination,
    as rows of the rules with their ``sharpe`` and ``n_trades``."""
    rows = []
    for k, m, c in combos:
        metrics = score(k, m, c)
        rows.append({"decision_interval": k, "min_hold": m, "confidence": c,
                     "sharpe": float(metrics["sharpe"]), "n_trades": float(metrics["n_trades"])})
    return rows
