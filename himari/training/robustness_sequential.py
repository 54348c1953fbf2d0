"""Robustness of a stateful policy (``himari robustness`` on ppo-lstm and any model with
``act_sequence`` and ``step_logits``): the attack along the policy's own path.

The policy acts bar by bar through each range of the split exactly as in its sequential
evaluation (``sequential_actions``: a 1-env ``VecTradingEnv`` from a flat account, a fresh
recurrent state, the run's observation filter and execution rules). At every bar the attacker
sees the observation the env shows and the policy's recurrent state so far, takes the action
the policy would choose on that clean observation, and moves the observation's market-feature
columns (the first ``F`` columns; the account-state columns after them never move) inside the
L-infinity ball of radius epsilon to lower that action's log-probability: FGSM (one step) or
PGD (random start, ``pgd_steps`` steps), maximising the cross-entropy of the step's logits
against that action. The random control moves every market feature by +epsilon or -epsilon at
random. The policy then acts on what it saw: its recurrent state advances on the perturbed
observation and its action moves the account, so later bars are attacked on the attacked path.

The flip rate is the share of decision bars whose attacked decision (the arg-max, before
execution rules) differs from the clean run's decision at that bar (a bar without a decision
in the attacked run, after a bankruptcy, counts as HOLD); the Sharpe, return and trades are
those of the attacked run's executed actions, scored by ``evaluate_actions`` as ``himari
backtest`` scores the clean ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.engine import HOLD
from himari.errors import ConfigError


def measure_any(model: Any, name: str, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
                ranges: Sequence[tuple[int, int]], env: Any, rules: Any, epsilons: Sequence[float], pgd_steps: int,
                *, seed: int = 0, bars_per_year: float = 105_120.0) -> dict[str, Any]:
    """``measure_sequential`` for a stateful model with ``step_logits``, else the per-row
    ``himari.evaluation.robustness.measure`` (which refuses what it cannot attack)."""
    from himari.evaluation.robustness import check_attackable, measure

    check_attackable(model, name)
    if pgd_steps < 1:
        raise ConfigError(f"--pgd-steps {pgd_steps}: expected an integer >= 1")
    run = measure_sequential if supported(model) else measure
    return run(model, name, features, open_, close, ranges, env, rules, epsilons, pgd_steps, seed=seed,
               bars_per_year=bars_per_year)


def supported(model: Any) -> bool:
    """Whether the model decides sequentially and exposes its per-step logits."""
    return callable(getattr(model, "act_sequence", None)) and callable(getattr(model, "step_logits", None))


def _decision_rows(ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Offset (in the concatenated ranges) of the first row of each range that takes decisions."""
    starts, offset = [], 0
    for a, b in ranges:
        if b - a >= 2:
            starts.append(offset)
        offset += b - a
    return starts


def attacked_run(model: Any, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
                 ranges: Sequence[tuple[int, int]], env: Any, rules: Any, attack: str | None, epsilon: float,
                 pgd_steps: int, seed: int, record: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(decisions, executed)``: the policy's arg-max decision at each row of the concatenated
    ``ranges`` (HOLD where it takes none) and the executed actions, with every observation
    attacked by ``attack`` (fgsm, pgd, random; None: clean) within ``epsilon`` on its first
    ``features.shape[1]`` columns. ``record``, when given, receives ``(clean obs, seen obs)``
    pairs (NumPy ``[1, D]``) of every step. Call it with the network in eval mode."""
    import torch
    import torch.nn.functional as F

    from himari.evaluation.attacks import linf_attack, random_corner
    from himari.evaluation.execution import active
    from himari.training.rl import sequential_actions

    device = next(model.network.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    n_features = int(features.shape[1])
    total = sum(b - a for a, b in ranges)
    decisions = np.full(total, HOLD, dtype=np.int64)
    first = _decision_rows(ranges)
    at = {"k": -1, "t": 0, "state": None}
    probabilities = rules is not None and active(rules) and rules.confidence > 0

    def step(obs: np.ndarray, starts: np.ndarray) -> Any:
        if bool(np.asarray(starts).any()):
            at["k"], at["t"] = at["k"] + 1, 0
        x = torch.tensor(np.asarray(obs, dtype=np.float32), device=device)
        state = at["state"]
        mask = torch.zeros(x.shape[-1], dtype=torch.bool)
        mask[:n_features] = True
        seen = x
        if attack == "random":
            seen = random_corner(x, epsilon, mask=mask, generator=generator)
        elif attack is not None:
            with torch.no_grad():
                target = model.step_logits(x, starts, state)[0].argmax(-1)

            def loss_fn(z: Any) -> Any:
                return F.cross_entropy(model.step_logits(z, starts, state)[0].float(), target, reduction="sum")

            seen = linf_attack(loss_fn, x, epsilon, attack=attack, steps=pgd_steps, generator=generator, mask=mask)
        with torch.no_grad():
            logits, at["state"] = model.step_logits(seen, starts, state)
        action = logits.argmax(-1).cpu().numpy()
        if record is not None:
            record.append((x.cpu().numpy(), seen.cpu().numpy()))
        decisions[first[at["k"]] + at["t"]] = int(action[0])
        at["t"] += 1
        if probabilities:
            return action, torch.softmax(logits.float(), -1).cpu().numpy()
        return action

    executed = sequential_actions(step, features, open_, close, ranges, env, execution=rules if active(rules) else None)
    return decisions, np.asarray(executed)


def measure_sequential(model: Any, name: str, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
                       ranges: Sequence[tuple[int, int]], env: Any, rules: Any, epsilons: Sequence[float],
                       pgd_steps: int, *, seed: int = 0, bars_per_year: float = 105_120.0) -> dict[str, Any]:
    """``himari.evaluation.robustness.measure`` for a stateful model: the clean scores and one
    entry per (attack, epsilon) with the flip rate and the attacked run's metrics after costs."""
    import torch

    from himari.evaluation.execution import model_actions
    from himari.evaluation.policy import evaluate_actions
    from himari.evaluation.robustness import ATTACKS, decision_mask

    ranges = [(int(a), int(b)) for a, b in ranges]
    decided = decision_mask(ranges)
    model.network.eval()

    def scored(acts: np.ndarray) -> dict[str, Any]:
        m = evaluate_actions(open_, close, ranges, acts, env, bars_per_year)
        return {k: m[k] for k in ("sharpe", "total_return", "n_trades", "max_drawdown", "actions")}

    with torch.no_grad():
        own = np.asarray(model_actions(model, features, open_, close, ranges, env, rules, name))
    clean, executed = attacked_run(model, features, open_, close, ranges, env, rules, None, 0.0, pgd_steps, seed)
    if not np.array_equal(executed.astype(np.int64), own.astype(np.int64)):
        raise ConfigError(f"model {name!r}: stepping its step_logits does not reproduce the actions of its "
                          "act_sequence, so an attack on the logits would not aim at its decisions")
    results = []
    for epsilon in epsilons:
        for attack in ATTACKS:
            acts, executed = attacked_run(model, features, open_, close, ranges, env, rules, attack, epsilon,
                                          pgd_steps, seed)
            flips = float(np.mean(acts[decided] != clean[decided])) if decided.any() else 0.0
            results.append({"attack": attack, "epsilon": float(epsilon), "flip_rate": flips, **scored(executed)})
    return {"clean": scored(own), "results": results}
