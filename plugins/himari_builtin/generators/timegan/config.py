"""TimeGAN's settings (no torch: ``himari plugins list`` and ``show`` read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TimeGANConfig:
    window: int = 24
    """Steps of each window (the sequence length the five networks are trained on)."""
    hidden: int = 24
    """Width of every recurrent network and of the latent space (the paper: 24)."""
    layers: int = 3
    """Recurrent layers of embedder, recovery, generator and discriminator; the supervisor has one fewer."""
    cell: Literal["gru", "lstm"] = "gru"
    """Recurrent cell."""
    iterations: int = 50_000
    """Optimiser steps of each of the three phases (the paper: 50,000; lower it on a CPU)."""
    batch_size: int = 128
    """Windows per step."""
    lr: float = 1e-3
    """Adam learning rate of every network."""
    gamma: float = 1.0
    """Weight of the adversarial loss on the generator's latent output (before the supervisor)."""
    d_threshold: float = 0.15
    """The discriminator is updated in the joint phase only while its loss exceeds this."""
    labels: bool = True
    """Generate the SELL/HOLD/BUY label of each step with the features (one-hot channels decoded by arg-max),
    so the windows can train a classifier (himari train --augment)."""
    sample_batch: int = 4096
    """Windows generated per forward pass when sampling."""
    cuda_graphs: bool = True
    """On a GPU, record each phase's step once as a CUDA graph and replay it (the same arithmetic, one launch
    instead of hundreds: the small networks leave the GPU waiting on Python otherwise); no effect on the CPU."""

    def __post_init__(self) -> None:
        for name in ("window", "hidden", "layers", "iterations", "batch_size", "sample_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 (the supervisor learns the step from t to t+1), got {self.window}")
        if self.layers < 2:
            raise ValueError(f"layers must be >= 2 (the supervisor has layers - 1), got {self.layers}")
        if not (self.lr > 0 and self.gamma >= 0 and self.d_threshold >= 0):
            raise ValueError("lr must be > 0, gamma and d_threshold >= 0")
