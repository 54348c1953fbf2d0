"""FLAG-TRADER's network (torch): the GPT-2 backbone (transformers, imported on use) with peft
LoRA, the bar embedding and the policy and value heads."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn

from himari.plugin.api import init_orthogonal
from himari_builtin.models.flag_trader.config import FlagTraderConfig, backbone_shape
from himari_builtin.models.flag_trader.merged_lora import use_merged_lora

LORA_TARGETS = ("c_attn", "c_proj", "c_fc")
"""GPT-2's attention (qkv and output) and MLP (in and out) projections; ``c_proj`` names both the
attention output and the MLP output projection."""
TRAINABLE_BACKBONE = (".wpe.", ".ln_")
"""Backbone parameters trained next to LoRA: position embeddings and LayerNorms."""


def _gpt2(config: FlagTraderConfig) -> Any:
    """The GPT-2 backbone in float32 with SDPA attention, built or loaded, its token embedding
    emptied (inputs are bar embeddings)."""
    from transformers import GPT2Config, GPT2Model

    # GPT-2's "gelu_new" is the tanh-approximated GELU written as seven elementwise ops;
    # "gelu_pytorch_tanh" is the same function in one fused kernel (a large share of a step's
    # memory traffic at 65k tokens per minibatch otherwise).
    kwargs = {"resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
              "attn_implementation": "sdpa"}
    if config.backbone:
        backbone_shape(config)  # a clear error for a wrong directory or too short position table
        if GPT2Config.from_pretrained(config.backbone).activation_function == "gelu_new":
            kwargs["activation_function"] = "gelu_pytorch_tanh"
        gpt = GPT2Model.from_pretrained(config.backbone, dtype=torch.float32, **kwargs)
    else:
        hf = GPT2Config(n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head,
                        n_positions=config.context_length, vocab_size=1, bos_token_id=0, eos_token_id=0,
                        activation_function="gelu_pytorch_tanh", **kwargs)
        gpt = GPT2Model(hf)
    gpt.wte = torch.nn.Embedding(0, gpt.config.n_embd)
    gpt.config.use_cache = False
    set_checkpointing(gpt, config.gradient_checkpointing)
    return gpt


def set_checkpointing(gpt: Any, on: bool) -> None:
    """Turn activation (gradient) checkpointing of a transformers model's blocks on or off,
    non-reentrant, through whichever name this transformers version has (5.24 renamed
    ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``)."""
    if on:
        enable = getattr(gpt, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            gpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        disable = getattr(gpt, "activation_checkpointing_disable", None) or gpt.gradient_checkpointing_disable
        disable()


def _lora(gpt: Any, config: FlagTraderConfig) -> Any:
    """peft LoRA on ``LORA_TARGETS`` (every other backbone parameter frozen by peft), then the
    position embeddings and LayerNorms made trainable again."""
    import warnings

    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=list(LORA_TARGETS), fan_in_fan_out=True, bias="none")
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(gpt, lora_config)
    for name, p in model.named_parameters():
        if any(key in name for key in TRAINABLE_BACKBONE):
            p.requires_grad_(True)
    for module in model.modules():
        # peft casts a LoRA layer's input to the adapter weights' dtype (float32) before the
        # adapter, and autocast casts it straight back to bf16: two copies of every adapted
        # activation per layer for nothing. Under autocast the adapter runs in bf16 either way.
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
    return model


def head(width: int, hidden: int, out: int, gain: float) -> nn.Module:
    """``Linear(width, out)``, or ``Linear(width, hidden) + GELU + Linear(hidden, out)``, orthogonally
    initialised through ``init_orthogonal`` (gain sqrt(2) for the hidden layer, ``gain`` for the
    output), biases zero."""
    last = nn.Linear(hidden or width, out)
    init_orthogonal(last, gain)
    if hidden == 0:
        return last
    first = nn.Linear(width, hidden)
    init_orthogonal(first, math.sqrt(2))
    return nn.Sequential(first, nn.GELU(), last)


class FlagTraderNetwork(nn.Module):
    """Bar embedding -> LoRA GPT-2 -> policy and value heads on the last position."""

    def __init__(self, config: FlagTraderConfig, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.backbone = _lora(_gpt2(config), config)
        use_merged_lora(self.backbone, ("cuda",) if config.merged_lora else ())
        width = self.backbone.get_base_model().config.n_embd
        self.embed = nn.Linear(obs_dim, width)
        self.policy_head = head(width, config.head_hidden, n_actions, 0.01)
        self.value_head = head(width, config.head_hidden, 1, 1.0)
        self.bf16 = config.bf16

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs [B, W, D]`` (or ``[B, D]``, a window of one bar) -> logits ``[B, A]`` and
        value ``[B]`` from the newest bar's hidden state."""
        hidden = self.hidden(obs)
        return self.policy_head(hidden), self.value_head(hidden)[:, 0]

    def hidden(self, obs: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden state at the newest bar ``[B, width]`` (what both heads read)."""
        if obs.dim() == 2:
            obs = obs[:, None]
        return self.backbone(inputs_embeds=self.embed(obs), use_cache=False).last_hidden_state[:, -1]

    def inference_autocast(self, device: torch.device) -> Any:
        """bf16 autocast on CUDA when configured (rollouts, warm start, evaluation)."""
        if device.type == "cuda" and self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def policy(self, obs: torch.Tensor, starts: Any, state: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
        """``EnvRollout``'s policy function: stateless, so ``starts`` and ``state`` pass through."""
        with self.inference_autocast(obs.device):
            logits, value = self(obs)
        return logits.float(), value.float(), state

    @staticmethod
    def initial_state(n: int, device: Any) -> tuple[Any, ...]:
        return ()
