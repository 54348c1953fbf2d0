"""input-noise: Gaussian noise on the training features, a regulariser for noisy market data.

Uses the ``dataset`` hook point: wraps the train split's dataset so every batch gets fresh
noise of standard deviation ``std`` (in preprocessed units, i.e. standard deviations after
``zscore``) drawn from torch's generator, which checkpoints save, so resumed runs match.
Validation data is left untouched.

``online-augment`` generalises it (its ``noise`` transform is this one, with a probability per
sample, for every paradigm); ``input-noise`` stays as it is, so existing run configs keep
training exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class InputNoiseConfig:
    std: float = 0.05
    """Standard deviation of the noise added to each training feature."""

    def __post_init__(self) -> None:
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {self.std}")


class _Noisy:
    def __init__(self, inner: Any, std: float) -> None:
        self.inner, self.std = inner, std

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, idx: Any) -> Any:
        import torch

        x, *rest = self.inner[idx]
        return (x + self.std * torch.randn_like(x), *rest)


class InputNoise:
    def __init__(self, config: InputNoiseConfig) -> None:
        self.config = config

    def dataset(self, dataset: Any, ctx: Any, split: str) -> Any:
        return _Noisy(dataset, self.config.std) if split == "train" and self.config.std > 0 else dataset


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name="input-noise", summary="Gaussian noise on training features (dataset hook)",
                                    config=InputNoiseConfig, factory=InputNoise, paradigms=("supervised", "sequence")))
