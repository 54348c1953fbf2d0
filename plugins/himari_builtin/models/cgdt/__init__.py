"""CGDT: Critic-Guided Decision Transformer (Wang et al., AAAI 2024, "Critic-Guided Decision
Transformer for Offline Reinforcement Learning"), discrete actions, on the trajectories dataset.

A Decision Transformer (Chen et al. 2021) reads the interleaved tokens ``(R_t, s_t, a_t)`` of a
window of ``context_length`` steps (return-to-go, state, action) with a causal GPT and predicts
a categorical distribution over SELL/HOLD/BUY from each state token. Plain DT imitates whatever
the data did at a given return-to-go, which goes wrong where the return is luck rather than the
action's doing (markets are mostly luck). CGDT adds a critic and a guidance term:

- **Critic**: a separate, smaller causal transformer over the ``(s_t, a_t)`` tokens of the same
  windows that predicts a Gaussian ``N(mu, sigma^2)`` of the return-to-go of ``(history, s_t,
  a_t)``. It has no return-to-go tokens: ``R_t`` is its label, and earlier ones would give it
  away. It is trained first (``critic_steps`` Adam steps on the train windows, Gaussian NLL,
  optionally expectile-weighted with ``critic_expectile``) and then frozen: its parameters never
  require gradients outside that phase, so the Trainer's optimiser never moves them.
- **Policy loss**: ``(NLL(a_data) + c * G) / (1 + c)``, ``G`` the expectile loss (``tau =
  guidance_expectile``) of ``u = (R_t - mu(s_t, a_pred)) / sigma(s_t, a_pred)``, ``c`` warmed up
  linearly from 0 to ``guidance_weight`` over ``guidance_warmup`` optimiser steps. With tau above
  0.5 an action whose critic value falls short of the target is penalised more than one that
  exceeds it, which pulls the policy towards actions the critic rates above the target.
- **The predicted action enters the critic differentiably** (``action_relaxation``):
  ``softmax`` (default) feeds the policy's probabilities through the critic's (linear) action
  embedding, i.e. the expected action embedding: deterministic (resuming stays exact, no extra
  random draws), low variance with three actions, and its gradient is the exact derivative of
  the relaxed critic. ``gumbel-st`` (straight-through Gumbel-softmax) feeds a sampled one-hot
  action forward (the critic only ever saw one-hot actions) and the soft sample's gradient
  backward: in-distribution inputs, at the price of noise.
- **Exact history in the critic**: the guided critic value of step t must see the data's
  actions before t and the predicted action at t. One critic pass does all steps of a window:
  ``L`` query tokens (the relaxed predicted action, at step t's position) are appended after
  the ``2L`` data tokens, and a mask lets query t attend to the data tokens up to ``s_t`` and to
  itself only. A data action token ``a_t`` sees exactly the same, so the critic trained on data
  actions and queried on predicted ones is the same function.

Data: ``himari.data.TrajectoryDataset`` per split. States are the run's (preprocessed,
``zscore`` by default) features of bar t ++ the env's 4 account columns at decision t (from the
behaviour actions up to t-1: no look-ahead); behaviour actions are the labels (``behaviour``)
mixed with ``epsilon`` seeded uniform actions; rewards are the env's own (``replay_actions``:
fee, slippage, mode and the run's reward shaping), less ``benchmark_weight`` times the log return
of holding the asset over the step (acting subtracts the same), times ``reward_scale``; returns-to-go are
discounted with ``gamma`` to the end of the split range. The reward of decision t is known at the
close of bar t+1, i.e. at decision t+1: ``R_{t+1} = (R_t - r_t) / gamma``.

Acting (``act_sequence``) is sequential: a ``VecTradingEnv`` (one env per target,
``random_start=False``) steps through each range from a flat account; the return-to-go token
starts at the target and after each step becomes ``(R - r) / gamma`` with the realised reward
``r`` (clipped to the train returns-to-go's 0.1%..99.9% quantiles, as discounting divides by
gamma at every step). Windows restart every ``context_length // 2`` steps (the context then
holds between half and all of ``context_length`` steps; training windows contain every shorter
prefix, so this is in distribution) and a fixed-size key/value cache makes each step cost three
tokens, with the same shapes at every step, so that on a GPU the step is replayed as a CUDA graph
(``acting_cuda_graph``).

The target return-to-go is chosen on the validation split: when the Trainer evaluates the
validation ranges this model trained with, the actions of every target in ``target_quantiles``
(quantiles of the train returns-to-go) are rolled out together (one env each), scored by the
backtester after costs, and the best-Sharpe target kept in the network buffer ``target_rtg``,
which the checkpoint saves. Any other ranges (test, ``himari backtest``, a restored model) use
the stored target; nothing at row t reads rows after t.
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import ModelSpec, hookimpl
from himari_builtin.models.cgdt.config import CGDTConfig, critic_parameters, parameter_count, policy_parameters
from himari_builtin.models.cgdt.decoding import Decoder, next_return_to_go, rollout_targets, window_start
from himari_builtin.models.cgdt.model import (CGDT, expectile_loss, gaussian_nll, guidance_coefficient,
                                              guidance_coefficient_at)

__all__ = ["CGDT", "RECIPE", "CGDTConfig", "Decoder", "build", "critic_parameters", "expectile_loss", "gaussian_nll",
           "guidance_coefficient", "guidance_coefficient_at", "himari_register_models", "next_return_to_go",
           "parameter_count", "policy_parameters", "rollout_targets", "window_start"]

RECIPE = {
    "plugins": {"cgdt": {"d_model": 64, "n_layers": 2, "n_heads": 4, "context_length": 16, "critic_steps": 400}},
    "train": {"epochs": 3},
}
"""The default recipe (docs/model-cards.md): a small CGDT (64 wide, 2 blocks, 16-step windows, a
400-step critic, 3 epochs) deciding every bar. Small so that a walk-forward search runs on a CPU,
where the default size is too slow to search; of the four configurations searched (this one,
hourly decisions, hourly held a day or more, returns-to-go in excess of holding the asset) it
had the highest mean out-of-sample Sharpe over BTC and ETH, and none traded without collapsed
or static runs. ``--set recipe=none`` trains the full-size model."""


def __getattr__(name: str) -> Any:
    """``build_network`` lives in ``network``, which imports torch: it is imported on first use
    (and left out of ``__all__``), so that loading the plugin (``himari plugins list``) never
    imports torch."""
    if name == "build_network":
        from himari_builtin.models.cgdt.network import build_network

        return build_network
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(config: CGDTConfig, ctx: Any) -> CGDT:
    """The factory the spec registers (here, so that ``plugins show`` names the plugin's module)."""
    return CGDT(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="cgdt",
        summary="Critic-Guided Decision Transformer: return-conditioned GPT policy, Gaussian critic guidance",
        config=CGDTConfig,
        factory=build,
        paradigm="offline-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
        recipe=RECIPE,
    ))
