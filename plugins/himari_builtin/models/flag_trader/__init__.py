"""FLAG-TRADER: a language-model backbone, adapted by LoRA and shared by a policy head and a value
head, trained online by PPO in the native ``VecTradingEnv`` (Xiong et al. 2025, "FLAG-Trader:
Fusion LLM-Agent with Gradient-based Reinforcement Learning for Financial Trading").

Network (87,957,892 parameters, 2,940,292 trainable, at the defaults and 60 features):

- Input: the env observation of the last ``context_length`` bars, each row the bar's features and
  the 4 account columns (position, unrealised PnL, drawdown, log bars in position), goes through
  a linear embedding ``Linear(F + 4, n_embd)`` into the backbone's ``inputs_embeds``: bars take the
  place of text tokens, so the backbone has no token vocabulary (its ``wte`` is emptied).
- Backbone: the GPT-2 architecture (768-d, 12 layers, 12 heads by default) built from a
  ``GPT2Config`` with learned position embeddings for ``context_length`` positions, or a local
  pretrained Hugging Face GPT-2 directory (``backbone``). Causal self-attention through
  ``scaled_dot_product_attention`` (``attn_implementation="sdpa"``: the fused flash or
  memory-efficient kernels on CUDA).
- LoRA (peft, rank ``lora_rank``) on every attention and MLP projection (``c_attn``, ``c_proj``,
  ``c_fc``; GPT-2's ``Conv1D`` stores weights as ``[in, out]``, hence ``fan_in_fan_out``). The
  backbone's projection matrices are frozen; trainable are the LoRA factors, the position
  embeddings, the LayerNorms, the input embedding and the heads.
- Heads on the last position's hidden state (the decision at the newest bar): a policy head
  ``Linear(n_embd, head_hidden) + GELU + Linear(head_hidden, 3)`` (SELL, HOLD, BUY logits) and a
  value head of the same shape with one output. Orthogonal initialisation as in PPO-LSTM (output
  gains 0.01 for the policy, 1 for the value).

Training: PPO (``himari.training.ppo``) on rollouts of ``EnvRollout`` with windows of
``context_length`` bars. The policy is stateless (the window is its memory), so a minibatch of
whole env sequences ``[T, B, W, D]`` is flattened into ``T * B`` independent windows. Optional:
a supervised warm start at the first rollout of the run (``warm_start_epochs``): class-weighted
cross-entropy of the labels from flat-account windows of the train split, followed by a check of
the warm-started policy's action shares on the validation split (the collapse guard: > 90% of one
action is reported). bf16 autocast on CUDA (rollouts and evaluation here, updates by the
Trainer's AMP); optional gradient checkpointing of the backbone's blocks.

Evaluation: deterministic (arg-max) actions decided sequentially through each split range by a
1-env ``VecTradingEnv`` of the same window, from a flat account (``act_sequence``).
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import ModelSpec, hookimpl
from himari_builtin.models.flag_trader.config import BackboneShape, FlagTraderConfig, backbone_shape, parameter_count
from himari_builtin.models.flag_trader.model import FlagTrader

__all__ = ["RECIPE", "BackboneShape", "FlagTrader", "FlagTraderConfig", "backbone_shape", "build", "himari_register_models",
           "model_spec", "parameter_count"]


RECIPE = {
    "plugins": {"flag-trader": {"n_layer": 2, "n_head": 4, "n_embd": 64, "context_length": 32, "lora_rank": 8,
                                "head_hidden": 64, "env_episodes": 32}},
    "train": {"epochs": 3},
    "methods": ["vec-normalize"],
}
"""The default recipe (docs/model-cards.md): a small FLAG-TRADER (a GPT-2 of 2 blocks, 64 wide, 4
heads, over 32-bar windows; LoRA rank 8; heads 64 wide) trained on 32 episodes of experience
(65,536 env steps) with observations and rewards normalised (ppo-lstm's recipe, the same PPO), 3
validation passes. Small so that one run takes minutes of one CPU core, where the default size
needs hours of a GPU; it was not searched (one configuration, evaluated walk-forward as it is).
``--set recipe=none`` trains the full-size model on the full experience budget."""


def __getattr__(name: str) -> Any:
    """``set_checkpointing`` lives in ``network``, which imports torch: it is imported on first
    use (and left out of ``__all__``), so that loading the plugin (``himari plugins list``) never
    imports torch."""
    if name == "set_checkpointing":
        from himari_builtin.models.flag_trader.network import set_checkpointing

        return set_checkpointing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(config: FlagTraderConfig, ctx: Any) -> FlagTrader:
    """The factory the spec registers (here, so that ``plugins show`` names the plugin's module)."""
    return FlagTrader(config, ctx)


def model_spec(config: type = FlagTraderConfig, recipe: dict[str, Any] | None = RECIPE) -> ModelSpec:
    """The registered spec; tests pass a config subclass with tiny defaults and no recipe."""
    return ModelSpec(
        name="flag-trader",
        summary="GPT-2 backbone with LoRA shared by policy and value heads, trained online by PPO (FLAG-TRADER)",
        config=config,
        factory=build,
        paradigm="online-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
        extras=("torch", "transformers", "peft"),
        recipe=recipe,
    )


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(model_spec())
