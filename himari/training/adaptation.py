"""Adaptation at evaluation (``himari backtest RUN --adapt-bars N``): a trained run's training methods
that define ``adapt(model, ctx)`` (maml's inner loop) fine-tune a copy of its model on the first N
bars of each evaluation range, and the model then acts on the bars after them.

What the adaptation may read: the labels of the rows ``[a, a + N - lookahead)`` of a range ``[a, b)``,
the rows whose label (which reads prices up to ``t + lookahead``) is known by the close of bar
``a + N - 1``, and the model's input features of those rows; an online-RL model, the bars
``[a, a + N)`` themselves (``ctx.splits["adapt_bars"]``: rollouts over them read their prices and
features, and the run's frozen observation filter). Nothing at or after bar ``a + N``
reaches the adapted weights, so scoring ``[a + N, b)`` is out of sample. Each range starts again
from the trained weights (and BatchNorm statistics), with torch seeded by the run's seed, so a
backtest is reproducible.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from himari.errors import ConfigError


def adapting_methods(policy: Any) -> list[tuple[str, Any]]:
    """The run's training methods with an ``adapt`` hook, built from its saved configs; a run
    without any is refused (``ConfigError`` naming the run)."""
    from himari.plugin.extras import require_spec

    methods = []
    for name in policy.run.methods:
        spec = policy.plugins.training_methods().get(name)
        require_spec(spec)
        method = spec.factory(policy.run.plugin_configs[name])
        if callable(getattr(method, "adapt", None)):
            methods.append((name, method))
    if not methods:
        raise ConfigError(f"--adapt-bars: {policy.run_dir} was trained without a training method that adapts at "
                          "evaluation (such as maml)")
    return methods


def check_adapt_bars(n: int, ranges: list[tuple[int, int]], lookahead: int) -> None:
    """Refuse an ``--adapt-bars`` that leaves no bar to score in some range, or no labelled bar to adapt on."""
    if n < 1:
        raise ConfigError(f"--adapt-bars {n}: expected a number of bars >= 1")
    short = min(b - a for a, b in ranges)
    if n > short - 2:  # the backtest of what remains needs 2 bars: a decision, and the bar it trades at
        raise ConfigError(f"--adapt-bars {n}: a scored range has only {short} bars; adapt on at most {short - 2} so "
                          "that at least 2 remain to score")
    if n <= lookahead:
        raise ConfigError(f"--adapt-bars {n}: must exceed the labels' lookahead of {lookahead} bars (a label of "
                          f"the first bars must be known by the end of the adaptation bars)")


def scored_ranges(n: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The bars after the adaptation bars of each range."""
    return [(a + n, b) for a, b in ranges]


def adapted_actions(policy: Any, prepared: Any, ranges: list[tuple[int, int]], n: int) -> np.ndarray:
    """One action per bar of ``scored_ranges(n, ranges)``: per range, the model adapted on the range's
    first ``n`` bars (module docstring), acting on the rest; the trained weights are put back after."""
    import torch

    from himari.plugin.api import TrainContext

    methods = adapting_methods(policy)
    features = policy.features(prepared)
    network = policy.model.network
    trained = copy.deepcopy(network.state_dict())
    own_labels = getattr(policy.run, "labels", None)
    out = []
    try:
        for a, b in ranges:
            data = prepared
            if own_labels is not None:  # the run's own labels, none reading past the adaptation bars
                from himari.training.relabel import relabelled

                data = relabelled(prepared, own_labels, {"adapt": [(a, a + n)]})
            # an online-RL model adapts on rollouts over the bars and reads no label
            lookahead = 0 if callable(getattr(policy.model, "rollout", None)) else int(data.lookahead)
            check_adapt_bars(n, [(a, b)], lookahead)
            labels = np.asarray(data.labels)
            splits = {"adapt": [(a, a + n - lookahead)], "adapt_bars": [(a, a + n)]}
            ctx = TrainContext(data=data.with_splits(splits), features=features, labels=labels, splits=splits,
                               env=policy.context.env, model=policy.context, device="cpu",
                               seed=policy.run.train.seed, observation_filter=policy.observation_filter)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(policy.run.train.seed)
                for _, method in methods:
                    method.adapt(policy.model, ctx)
            out.append(policy.actions(prepared, [(a + n, b)]))
            network.load_state_dict(trained)
    finally:
        network.load_state_dict(trained)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int8)
