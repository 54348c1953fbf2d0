"""BaselineMLP's settings and its parameter arithmetic (no torch: ``himari plugins list`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from himari.plugin.api import ParamCount


@dataclass(frozen=True)
class BaselineMLPConfig:
    hidden_sizes: tuple[int, ...] = (128, 64)
    """Width of each hidden layer (Linear + BatchNorm + ReLU + Dropout)."""
    dropout: float = 0.1
    """Dropout probability after each hidden layer."""
    loss: Literal["cross-entropy", "class-weighted", "focal"] = "class-weighted"
    """cross-entropy, class-weighted (inverse train class frequency) or focal."""
    focal_gamma: float = 2.0
    """Focusing exponent of the focal loss (0 gives cross-entropy)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy losses."""
    eval_batch_size: int = 16384
    """Rows per forward pass when acting."""

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.focal_gamma < 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("focal_gamma must be >= 0 and label_smoothing in [0, 1)")
        if self.eval_batch_size < 1:  # acting steps through the rows eval_batch_size at a time
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")


def parameter_count(config: BaselineMLPConfig, n_features: int) -> ParamCount:
    """Weights and biases of each Linear plus the BatchNorm scale and shift (running statistics
    are buffers, not parameters)."""
    total, width = 0, n_features
    for h in config.hidden_sizes:
        total += width * h + h + 2 * h
        width = h
    total += width * 3 + 3
    return ParamCount(total, total)
