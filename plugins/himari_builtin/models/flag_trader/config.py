"""FLAG-TRADER's settings, the backbone's shape and the parameter arithmetic (no torch:
``himari plugins list`` reads it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from himari.plugin.api import ParamCount, PPOConfig

ACCOUNT_COLUMNS = 4


@dataclass(frozen=True)
class FlagTraderConfig(PPOConfig):
    backbone: str = ""
    """Local pretrained Hugging Face GPT-2 directory; empty: a GPT-2 built from n_layer/n_head/n_embd."""
    context_length: int = 256
    """Bars per observation window (the sequence the backbone reads; its position embeddings)."""
    n_layer: int = 12
    """Transformer blocks of a built backbone (ignored with backbone)."""
    n_head: int = 12
    """Attention heads of a built backbone (ignored with backbone)."""
    n_embd: int = 768
    """Hidden width of a built backbone (ignored with backbone)."""
    lora_rank: int = 16
    """LoRA rank of every adapted projection."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch input."""
    merged_lora: bool = False
    """On CUDA, compute each adapted projection of a training forward pass as one product with the
    merged weight W + (lora_alpha/lora_rank) A^T B^T instead of peft's frozen product plus adapter
    branch: the same function and gradients, without the full-size adapter outputs that peft
    scales and adds. Off until its speed is measured on a GPU. Inference and the CPU keep peft's
    path."""
    head_hidden: int = 192
    """Hidden width of the policy and value heads; 0: linear heads."""
    dropout: float = 0.0
    """Backbone dropout (residual, embedding, attention); 0 keeps PPO's ratio exact."""
    gradient_checkpointing: bool = False
    """Recompute the backbone blocks' activations in the backward pass (less memory, ~30% slower)."""
    bf16: bool = True
    """bf16 autocast of rollouts, warm start and evaluation on CUDA (updates follow train.amp)."""
    rollout_cuda_graph: bool = True
    """On CUDA, replay each policy call of the rollouts and of the bar-by-bar evaluation from a
    captured CUDA graph (the same kernels, launched at once) instead of launching its ~600 kernels
    one by one from Python."""
    warm_start_epochs: int = 0
    """Supervised passes over the train split's labelled windows before the first rollout; 0: none."""
    warm_start_lr: float = 1e-4
    """Learning rate of the warm start (its own AdamW over the trainable parameters)."""
    warm_start_batch_size: int = 64
    """Windows per warm-start step and per evaluation forward pass."""
    cpu_threads: int = 1
    """torch intra-op threads while rolling out, warm-starting and acting on the CPU (0: torch's
    default); the tiny CPU configs run fastest on one, and far faster than on two busy cores."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("context_length", "n_layer", "n_head", "n_embd", "lora_rank", "warm_start_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.backbone and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.head_hidden < 0 or self.warm_start_epochs < 0:
            raise ValueError("head_hidden and warm_start_epochs must be >= 0")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.lora_dropout < 1.0):
            raise ValueError("dropout and lora_dropout must be in [0, 1)")
        if self.lora_alpha <= 0 or self.warm_start_lr <= 0:
            raise ValueError("lora_alpha and warm_start_lr must be > 0")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")


# --------------------------------------------------------------------------- parameter counts


class BackboneShape(NamedTuple):
    width: int
    layers: int
    inner: int
    positions: int


def backbone_shape(config: FlagTraderConfig) -> BackboneShape:
    """Width, depth, MLP width and position count of the backbone the config builds or loads:
    from the config, or from the pretrained directory's ``config.json`` (no torch needed)."""
    if not config.backbone:
        return BackboneShape(config.n_embd, config.n_layer, 4 * config.n_embd, config.context_length)
    from himari.plugin.api import ConfigError

    path = Path(config.backbone) / "config.json"
    if not path.is_file():
        raise ConfigError(f"flag-trader.backbone: {config.backbone!r} is not a Hugging Face model directory "
                          f"(no config.json)")
    hf = json.loads(path.read_text(encoding="utf-8"))
    if hf.get("model_type") != "gpt2":
        raise ConfigError(f"flag-trader.backbone: {config.backbone!r} is a {hf.get('model_type')!r} model; "
                          f"only the GPT-2 architecture is supported")
    width = int(hf.get("n_embd", 768))
    positions = int(hf.get("n_positions", 1024))
    if config.context_length > positions:
        raise ConfigError(f"flag-trader.context_length ({config.context_length}) exceeds the backbone's "
                          f"{positions} position embeddings")
    return BackboneShape(width, int(hf.get("n_layer", 12)), int(hf.get("n_inner") or 4 * width), positions)


def _head_count(width: int, hidden: int, out: int) -> int:
    return width * out + out if hidden == 0 else width * hidden + hidden + hidden * out + out


def parameter_count(config: FlagTraderConfig, n_features: int) -> ParamCount:
    """Exact arithmetic of the network: frozen projection matrices of each block (qkv, attention
    output, MLP in and out, with biases); trainable LoRA factors (``r x (in + out)`` per adapted
    projection), position embeddings, LayerNorms (two per block and the final one), the input
    embedding and both heads. The emptied token embedding holds nothing."""
    d, layers, inner, positions = backbone_shape(config)
    frozen = layers * ((d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d))
    lora = layers * config.lora_rank * ((d + 3 * d) + (d + d) + (d + inner) + (inner + d))
    norms = layers * 2 * (2 * d) + 2 * d
    embed = (n_features + ACCOUNT_COLUMNS) * d + d
    heads = _head_count(d, config.head_hidden, 3) + _head_count(d, config.head_hidden, 1)
    trainable = lora + positions * d + norms + embed + heads
    return ParamCount(frozen + trainable, trainable)
