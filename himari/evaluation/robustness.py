"""Robustness of a trained policy to small input perturbations (``himari robustness``).

For each epsilon, each decision row's preprocessed features are perturbed inside the L-infinity
ball of that radius three ways: FGSM and PGD (``himari.evaluation.attacks``) attacking the
policy's own decision (they maximise the cross-entropy of its action logits against the action
it takes on the clean row), and a random corner of the ball (every feature moved by +epsilon or
-epsilon at random: the same norm, no aim) as the control. Reported per attack and epsilon: the
flip rate (the share of decisions whose action changes, before execution rules) and the Sharpe,
return and trades of the perturbed actions after costs, scored by ``evaluate_actions`` under the
run's execution rules exactly as ``himari backtest`` scores the clean ones.

A stateless policy (it decides each row from that row's features, ``act``, and exposes its
logits, ``action_logits``, like ``baseline-mlp``) is attacked row by row here. A stateful model
(``act_sequence``: its decision also reads the account state or recurrent state along the path)
is attacked along its own path, bar by bar, when it exposes its per-step logits
(``step_logits``, like ``ppo-lstm``): ``himari.training.robustness_sequential``. Other
stateful models (``cql``, ``cgdt``, ``flag-trader``) are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.errors import ConfigError

ATTACKS = ("fgsm", "pgd", "random")
SPLITS = ("validation", "test")
CHUNK = 8192
"""Rows attacked per forward and backward pass."""


def parse_epsilons(text: str) -> list[float]:
    """``"0.01,0.05"`` -> ``[0.01, 0.05]``: finite numbers > 0, each once, in the given order."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--eps {text!r}: expected comma-separated numbers > 0 such as 0.01,0.05,0.1") from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--eps {text!r}: every epsilon must be a finite number > 0, got {part}")
        if value in values:
            raise ConfigError(f"--eps {text!r}: {part} is given more than once")
        values.append(value)
    return values


def check_attackable(model: Any, name: str) -> None:
    """Refuse a model this per-row attack cannot test, saying why."""
    if callable(getattr(model, "act_sequence", None)):
        if callable(getattr(model, "step_logits", None)):
            return
        raise ConfigError(f"model {name!r} decides sequentially (its actions depend on the account state or on "
                          "recurrent state along the path) and does not expose its per-step logits (step_logits), "
                          "so its decisions cannot be attacked along its path; himari robustness tests stateless "
                          "models such as baseline-mlp and stateful ones with step_logits such as ppo-lstm")
    if not callable(getattr(model, "action_logits", None)):
        raise ConfigError(f"model {name!r} does not expose its action logits (action_logits), so its decisions "
                          "cannot be attacked through their gradient")


def _logits(model: Any, x: Any, actions: Any) -> Any:
    return model.action_logits((x, actions)).float()


def clean_decisions(model: Any, name: str, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The model's actions at ``rows`` (``act``), checked against the arg-max of its logits so
    the attack aims at the decision the model really takes."""
    import torch

    from himari.evaluation.execution import checked_actions

    actions = checked_actions(model.act(features, rows), len(rows), name, "act").astype(np.int64)
    device = next(model.network.parameters()).device
    for start in range(0, len(rows), CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(features[rows[start:start + CHUNK]], dtype=np.float32)).to(device)
        a = torch.from_numpy(actions[start:start + CHUNK]).to(device)
        with torch.no_grad():
            top = _logits(model, x, a).argmax(-1).cpu().numpy()
        if not np.array_equal(top, actions[start:start + CHUNK]):
            raise ConfigError(f"model {name!r}: the arg-max of its action_logits is not the action it takes, so "
                              "an attack on the logits would not aim at its decisions")
    return actions


def perturb(model: Any, features: np.ndarray, rows: np.ndarray, actions: np.ndarray, attack: str, epsilon: float,
            pgd_steps: int, seed: int) -> np.ndarray:
    """``features[rows]`` perturbed by ``attack`` (fgsm, pgd or random) within ``epsilon``:
    float32 ``[len(rows), F]``. PGD's random starts and the random corners come from a
    generator seeded with ``seed``."""
    import torch
    import torch.nn.functional as F

    from himari.evaluation.attacks import linf_attack, random_corner

    device = next(model.network.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    out = np.empty((len(rows), features.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(features[rows[start:start + CHUNK]], dtype=np.float32)).to(device)
        a = torch.from_numpy(actions[start:start + CHUNK]).to(device)
        if attack == "random":
            x_adv = random_corner(x, epsilon, generator=generator)
        else:
            def loss_fn(z: Any, a: Any = a) -> Any:
                return F.cross_entropy(_logits(model, z, a), a, reduction="sum")

            x_adv = linf_attack(loss_fn, x, epsilon, attack=attack, steps=pgd_steps, generator=generator)
        out[start:start + CHUNK] = x_adv.cpu().numpy()
    return out


def decision_mask(ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """True on every row of the concatenated ranges but the last of each (it takes no decision)."""
    parts = [np.r_[np.ones(max(b - a - 1, 0), dtype=bool), [False] * min(b - a, 1)] for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def measure(model: Any, name: str, features: np.ndarray, open_: np.ndarray, close: np.ndarray,
            ranges: Sequence[tuple[int, int]], env: Any, rules: Any, epsilons: Sequence[float], pgd_steps: int,
            *, seed: int = 0, bars_per_year: float = 105_120.0) -> dict[str, Any]:
    """The clean scores and one entry per (attack, epsilon): flip rate, and the perturbed
    actions' metrics after costs (``evaluate_actions``) under the execution ``rules``."""
    import torch

    from himari.data.splits import rows_of
    from himari.evaluation.execution import checked_actions, model_actions
    from himari.evaluation.policy import evaluate_actions

    check_attackable(model, name)
    if callable(getattr(model, "act_sequence", None)):
        raise ConfigError(f"model {name!r} decides sequentially: attack it along its path "
                          "(himari.training.robustness_sequential.measure_sequential)")
    if pgd_steps < 1:
        raise ConfigError(f"--pgd-steps {pgd_steps}: expected an integer >= 1")
    ranges = [(int(a), int(b)) for a, b in ranges]
    rows = rows_of(ranges)
    decided = decision_mask(ranges)
    model.network.eval()

    def scored(feats: np.ndarray) -> dict[str, Any]:
        with torch.no_grad():
            acts = model_actions(model, feats, open_, close, ranges, env, rules, name)
        m = evaluate_actions(open_, close, ranges, acts, env, bars_per_year)
        return {k: m[k] for k in ("sharpe", "total_return", "n_trades", "max_drawdown", "actions")}

    clean = clean_decisions(model, name, features, rows)
    results = []
    for epsilon in epsilons:
        for attack in ATTACKS:
            x_adv = perturb(model, features, rows, clean, attack, epsilon, pgd_steps, seed)
            feats = np.array(features, dtype=np.float32, copy=True)
            feats[rows] = x_adv
            with torch.no_grad():
                acts = checked_actions(model.act(feats, rows), len(rows), name, "act").astype(np.int64)
            flips = float(np.mean(acts[decided] != clean[decided])) if decided.any() else 0.0
            results.append({"attack": attack, "epsilon": float(epsilon), "flip_rate": flips, **scored(feats)})
    return {"clean": scored(np.asarray(features)), "results": results}
