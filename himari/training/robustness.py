"""``himari robustness RUN``: load a trained run and measure its robustness
(``himari.training.robustness_sequential.measure_any``) on a split of the data it was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from himari.errors import ConfigError
from himari.evaluation.robustness import SPLITS, check_attackable
from himari.training.robustness_sequential import measure_any


def robustness(run_dir: str, *, split: str = "validation", epsilons: Sequence[float] = (0.01, 0.05, 0.1),
               pgd_steps: int = 10, seed: int = 0) -> dict[str, Any]:
    """``measure`` for a trained run on a split of the data it was trained on."""
    from pathlib import Path

    from himari.data import PreparedData, resolve_prepared
    from himari.training import rundir
    from himari.training.assemble import load_trained
    from himari.training.leaderboard import scored_bars

    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if pgd_steps < 1:
        raise ConfigError(f"--pgd-steps {pgd_steps}: expected an integer >= 1")
    if not Path(run_dir).is_dir() or not rundir.is_run_dir(Path(run_dir)):
        raise ConfigError(f"{run_dir}: not a himari run directory (no {rundir.CONFIG})")
    policy = load_trained(run_dir)
    check_attackable(policy.model, policy.name)
    prepared = PreparedData(resolve_prepared(policy.run.data))
    ranges = [(int(a), int(b)) for a, b in policy.splits_of(prepared)[split]]
    features = policy.features(prepared)
    env = policy.context.env
    bpy = float(prepared.metadata.get("bars_per_year", 105_120))
    from himari.training.rl import observation_filter

    with observation_filter(policy.observation_filter):  # a stateful policy sees what it saw in training
        out = measure_any(policy.model, policy.name, features, prepared.open, prepared.close, ranges, env, policy.rules,
                      epsilons, pgd_steps, seed=seed, bars_per_year=bpy)
    return {"run": str(run_dir), "model": policy.name, "checkpoint": policy.checkpoint, "data": str(prepared.path),
            "split": split, "costs": env.costs(), "pgd_steps": int(pgd_steps),
            "pgd_step_size": "2.5 * epsilon / pgd_steps", "seed": int(seed),
            **{k: v for k, v in scored_bars(prepared, ranges).items() if k != "ranges"}, **out}
