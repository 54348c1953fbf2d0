"""Tab-DDPM's settings and the tail rules' classes (no torch: ``himari plugins show`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TAIL_CLASSES = ("normal", "crash", "flash-crash")
LABEL_CLASSES = ("SELL", "HOLD", "BUY")


def class_names(condition: str) -> tuple[str, ...]:
    return TAIL_CLASSES if condition == "tail" else LABEL_CLASSES


def parse_mix(text: str, names: tuple[str, ...]) -> dict[str, float] | None:
    """``balanced`` (equal shares), ``train`` (None: the train split's shares) or
    ``name=share,...`` over ``names`` (shares >= 0, normalised to sum to 1; unnamed classes get 0)."""
    text = text.strip()
    if text == "balanced":
        return {n: 1.0 / len(names) for n in names}
    if text == "train":
        return None
    shares = {n: 0.0 for n in names}
    given: set[str] = set()
    for part in text.split(","):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in names:
            raise ValueError(f"mix {text!r}: expected balanced, train or NAME=SHARE,... with NAME one of "
                             f"{', '.join(names)}")
        if name in given:  # the last share would win without a word
            raise ValueError(f"mix {text!r}: {name} is given twice")
        given.add(name)
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"mix {text!r}: {value!r} is not a number") from None
        if not share >= 0 or share == float("inf"):
            raise ValueError(f"mix {text!r}: shares must be finite and >= 0")
        shares[name] = share
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"mix {text!r}: at least one share must be > 0")
    return {n: v / total for n, v in shares.items()}


@dataclass(frozen=True)
class TabDDPMConfig:
    window: int = 1
    """Rows per generated sample: 1 generates feature rows, more generates flattened short windows."""
    condition: Literal["tail", "label"] = "tail"
    """The class each sample is generated for: tail (normal, crash, flash-crash by the rules below) or label
    (SELL, HOLD, BUY); the other one is generated as a categorical column."""
    mix: str = "balanced"
    """Class mix to generate: balanced (equal shares: oversamples the rare classes), train (the train split's
    shares) or NAME=SHARE,... such as crash=0.4,flash-crash=0.4,normal=0.2."""
    timesteps: int = 1000
    """Diffusion steps T (cosine noise schedule)."""
    layers: tuple[int, ...] = (256, 512, 512, 256)
    """Widths of the denoiser MLP's hidden layers."""
    dim_t: int = 128
    """Width of the timestep and class embeddings (and of the input projection)."""
    dropout: float = 0.0
    """Dropout after each hidden layer."""
    steps: int = 30_000
    """Optimiser steps (the paper's default budget)."""
    batch_size: int = 4096
    """Rows per step."""
    lr: float = 0.002
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    crash_bars: int = 288
    """Tail rule: a row is a crash when its log return over this many bars (288 = 1 day at 5m) is at or below
    the train split's crash_quantile."""
    crash_quantile: float = 0.02
    """Tail rule: quantile of the train split's crash_bars return that marks a crash."""
    flash_bars: int = 3
    """Tail rule: a row is a flash crash when its log return over this many bars is at or below the train
    split's flash_quantile (a flash crash also meeting the crash rule counts as a flash crash)."""
    flash_quantile: float = 0.005
    """Tail rule: quantile of the train split's flash_bars return that marks a flash crash."""
    n_quantiles: int = 1000
    """Quantiles of the quantile transform of each numerical column."""
    sample_batch: int = 8192
    """Rows denoised together when sampling."""
    cuda_graphs: bool = True
    """On a GPU, record the training step once as a CUDA graph and replay it (the same arithmetic, one launch
    instead of dozens: the denoiser is small enough that the GPU waits on Python otherwise); no effect on the CPU."""

    def __post_init__(self) -> None:
        for name in ("window", "timesteps", "dim_t", "steps", "batch_size", "crash_bars", "flash_bars",
                     "n_quantiles", "sample_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {self.timesteps}")
        if self.n_quantiles < 2:  # a quantile transform maps between at least two quantiles
            raise ValueError(f"n_quantiles must be >= 2, got {self.n_quantiles}")
        if not self.layers or any(w < 1 for w in self.layers):
            raise ValueError(f"layers must be positive widths, got {self.layers}")
        if self.dim_t % 2:
            raise ValueError(f"dim_t must be even (sine and cosine halves), got {self.dim_t}")
        if not (0 <= self.dropout < 1 and self.lr > 0 and self.weight_decay >= 0):
            raise ValueError("dropout must be in [0, 1), lr > 0 and weight_decay >= 0")
        for name in ("crash_quantile", "flash_quantile"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {getattr(self, name)}")
        parse_mix(self.mix, class_names(self.condition))
