"""The conversational autoencoders' settings (no torch: ``himari plugins list`` reads them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

BAR_SERIES = ("log-return", "log-price", "volume", "range")
"""Series computed from the bars; any other name is an input feature column."""


@dataclass(frozen=True)
class ConversationalAEConfig:
    target: str = "log-price"
    """Series to denoise: log-price (log close against its trailing mean), log-return, volume, range or a feature."""
    contexts: tuple[str, ...] = ("volume", "range")
    """One autoencoder per context series, conditioning the target (at least two partners)."""
    window: int = 32
    """Rows of the trailing window each encoder sees (row t and the window - 1 before it)."""
    hidden: int = 64
    """Width of the hidden layer of each encoder and decoder."""
    latent: int = 4
    """Bottleneck width: what an autoencoder must squeeze the window through (below 2 x window)."""
    epochs: int = 20
    """Most conversation rounds (passes over the train windows)."""
    patience: int = 3
    """Stop after this many rounds without a better held-out objective (0: run every round)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Windows per step."""
    agreement_weight: float = 1.0
    """Weight of a listener's distance to the speaker's target reconstruction (0: independent autoencoders)."""
    holdout: float = 0.1
    """Fraction of the train windows, the latest, held out to pick the round and report the errors."""
    clip: float = 10.0
    """Clip the standardised series to [-clip, clip] (an extreme bar cannot dominate); 0 disables."""
    disagreement: bool = True
    """Append the partners' disagreement (their spread at row t) as a second column."""
    seed: int = 0
    """Seed of the weights and the shuffling (the run's seed leaves the denoised column as it is)."""

    def __post_init__(self) -> None:
        if not self.target or not isinstance(self.target, str):
            raise ValueError("target must name a series")
        if len(self.contexts) < 2 or len(set(self.contexts)) != len(self.contexts):
            raise ValueError(f"contexts must name at least two different series, got {list(self.contexts)}")
        if self.target in self.contexts:
            raise ValueError(f"contexts must differ from the target {self.target!r}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if self.hidden < 1 or not 1 <= self.latent < 2 * self.window:
            raise ValueError(f"hidden must be >= 1 and latent in [1, 2 x window), got {self.hidden}, {self.latent}")
        if self.epochs < 1 or self.patience < 0 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1, patience >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (math.isfinite(self.agreement_weight) and self.agreement_weight >= 0):
            raise ValueError(f"agreement_weight must be >= 0, got {self.agreement_weight}")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise ValueError(f"clip must be >= 0, got {self.clip}")

    @property
    def series(self) -> tuple[str, ...]:
        """Target first, then the contexts: the channels of a window."""
        return (self.target, *self.contexts)
