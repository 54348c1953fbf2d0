"""PPO-LSTM: an actor-critic with an LSTM core, trained online by PPO in the native
``VecTradingEnv`` (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"; the recurrent
variant of CleanRL's ``ppo_atari_lstm``).

Network (289,636 parameters at 60 features): the env observation (60 features + the 4 account
columns: position, unrealised PnL, drawdown, log bars in position) -> Linear(64, 128) + ReLU ->
Linear(128, 128) + ReLU -> LSTM(128, 200) -> a policy head Linear(200, 3) and a value head
Linear(200, 1). Orthogonal initialisation: gain sqrt(2) for the hidden layers, 0.01 for the
policy head, 1 for the value head; LSTM weights orthogonal, biases 0.

Training (``himari.training.rl`` has the reusable parts): N envs on random windows of the train
split roll out ``rollout_steps`` steps with sampled actions, each env carrying its own LSTM state,
zeroed where an episode starts; GAE(gamma, lambda) advantages; then ``update_epochs`` passes of
``n_minibatches`` minibatches of whole env sequences through the clipped surrogate objective,
clipped value loss, entropy bonus and per-minibatch advantage normalisation, with the Trainer's
gradient-norm clipping and a linearly annealed learning rate. A minibatch's sequences go through
the LSTM in one call per segment between episode starts (an exact equivalent of the per-step loop,
tested), not step by step.

Evaluation: deterministic (arg-max) actions, decided sequentially through each split range by a
1-env ``VecTradingEnv`` from a flat account (``act_sequence``), then scored by the backtester.
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import ModelSpec, hookimpl
from himari_builtin.models.ppo_lstm.config import PPOLSTMConfig, parameter_count
from himari_builtin.models.ppo_lstm.model import PPOLSTM

__all__ = ["PPOLSTM", "PPOLSTMConfig", "build", "himari_register_models", "parameter_count"]


RECIPE = {"methods": ["vec-normalize"]}
"""The default recipe (docs/model-cards.md): observations and rewards normalised by running
statistics (SB3's VecNormalize). The best of the configurations searched by walk-forward on BTC
and ETH 2023, though none of them made the model trade on its own signal: it mostly holds one
position per test block."""


def build(config: PPOLSTMConfig, ctx: Any) -> PPOLSTM:
    """The factory the spec registers (here, so that ``plugins show`` names the plugin's module)."""
    return PPOLSTM(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="ppo-lstm",
        summary="PPO actor-critic with an LSTM core, trained online in the native VecTradingEnv",
        config=PPOLSTMConfig,
        factory=build,
        paradigm="online-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
        recipe=RECIPE,
    ))
