"""PPO-LSTM's settings and its parameter arithmetic (no torch: ``himari plugins list`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from himari.plugin.api import ParamCount, PPOConfig

ACCOUNT_COLUMNS = 4


@dataclass(frozen=True)
class PPOLSTMConfig(PPOConfig):
    encoder_sizes: tuple[int, ...] = (128, 128)
    """Width of each encoder layer (Linear + ReLU) before the LSTM."""
    lstm_hidden: int = 200
    """LSTM hidden size."""
    cpu_threads: int = 1
    """torch intra-op threads on the CPU from the model's construction on (0: torch's default);
    small recurrent batches run fastest on one, and far faster than on two busy cores."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.encoder_sizes or any(h < 1 for h in self.encoder_sizes) or self.lstm_hidden < 1:
            raise ValueError("encoder_sizes and lstm_hidden must be positive")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")


def parameter_count(config: PPOLSTMConfig, n_features: int) -> ParamCount:
    """Encoder Linears, the LSTM (4 gates: input and hidden weights, two biases), two heads."""
    total, width = 0, n_features + ACCOUNT_COLUMNS
    for h in config.encoder_sizes:
        total += width * h + h
        width = h
    H = config.lstm_hidden
    total += 4 * H * (width + H) + 8 * H
    total += H * 3 + 3 + H + 1
    return ParamCount(total, total)
