"""CQL: Conservative Q-Learning (Kumar et al. 2020, "Conservative Q-Learning for Offline
Reinforcement Learning"), discrete actions, on the transitions dataset.

The state is one bar's features plus the env's 4 account columns (position, unrealised PnL,
drawdown, log1p(bars in position)); the actions are SELL, HOLD, BUY. Two independent Q networks
(``hidden_sizes`` each, ReLU) with target copies updated by Polyak averaging (``tau``); the TD
target is either the clipped double-Q value ``max_a min_i Q'_i(s', a)`` (``target: min``) or the
Double-DQN value ``Q'_i(s', argmax_a Q_i(s', a))`` per head (``target: double-dqn``). The
conservative term ``alpha * (logsumexp_a Q_i(s, a) - Q_i(s, a_data))`` is computed exactly over
the three actions for each head; with ``lagrangian: true`` alpha is learned (as ``log_alpha``) so
that the mean gap settles at ``target_gap`` (the CQL(lagrange) variant). 117,186 parameters at
60 features (117,187 with the Lagrangian alpha).

Data: a ``TransitionDataset`` over each split, built from the run's preprocessed features
(``zscore`` by default: himari's one train-split normaliser), behaviour actions from the labels
(``behaviour``) mixed with ``epsilon`` seeded uniform actions for coverage; rewards and account
columns come from ``replay_actions``, i.e. the native env's reward function with the run's fee,
slippage, mode and reward shaping (the ``env:`` section), so the model optimises what the
backtester measures. ``benchmark_weight`` subtracts that many times the log return of holding the
asset over each step (1: excess returns over buy-and-hold). Rewards are multiplied by
``reward_scale`` (5-minute log returns are ~1e-3).

Acting is sequential because the account state depends on the policy's own earlier actions:
``act_sequence(features, open, close, ranges, env)`` steps a one-env ``VecTradingEnv``
(``random_start=False``, one episode covering each range) on the true prices the Trainer and
``himari backtest`` hand over, taking at each row the greedy action (arg-max of the mean of the
two Q heads) given the row's features and the env's account columns. The action at row t reads
rows ``<= t`` only. The first layer's feature part is computed for all rows in one matrix
product; the per-row work is small NumPy matrix-vector products (about 30 us a row).

Polyak averaging runs at the start of each training ``loss`` call (network in train mode, grad
enabled), i.e. after the previous optimiser step, since the Trainer has no after-step hook; the
first call is a no-op because the targets start as copies.
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import ModelSpec, hookimpl
from himari_builtin.models.cql.config import CQLConfig, parameter_count
from himari_builtin.models.cql.model import CQL, conservative_gap, td_targets

__all__ = ["CQL", "CQLConfig", "RECIPE", "build", "conservative_gap", "himari_register_models", "parameter_count",
           "td_targets"]


def __getattr__(name: str) -> Any:
    """``polyak_`` lives in ``network``, which imports torch: it is imported on first use (and
    left out of ``__all__``), so that loading the plugin (``himari plugins list``) never imports
    torch."""
    if name == "polyak_":
        from himari_builtin.models.cql.network import polyak_

        return polyak_
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


RECIPE = {"execution": {"decision_interval": 12}}
"""The default recipe (docs/model-cards.md): the model's own settings deciding once an hour (every
12 five-minute bars), a position held until the next decision at least. The best mean
walk-forward Sharpe over BTC and ETH 2023 of the configurations searched, though none of them
made the model trade on its own signal in every run: most runs keep one action or one side of
the market."""


def build(config: CQLConfig, ctx: Any) -> CQL:
    """The factory the spec registers (here, so that ``plugins show`` names the plugin's module)."""
    return CQL(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="cql",
        summary="Conservative Q-Learning (discrete, double Q, Polyak targets) on env-reward transitions",
        config=CQLConfig,
        factory=build,
        paradigm="offline-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
        recipe=RECIPE,
    ))
