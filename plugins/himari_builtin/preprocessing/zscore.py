"""zscore: per-feature standardisation with statistics fitted on the train split only.

``(x - mean) / std`` with the train rows' mean and std (a zero std becomes 1), then clipped to
``[-clip, clip]`` so a regime never seen in training cannot feed a network values hundreds of
standard deviations out. Each row is transformed on its own, so it is causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin import PreprocessorSpec, hookimpl


@dataclass(frozen=True)
class ZScoreConfig:
    clip: float = 10.0
    """Clip standardised values to [-clip, clip]; 0 disables."""
    eps: float = 1e-8
    """Standard deviations below this are treated as 0 (the feature is passed centred)."""


class ZScore:
    def __init__(self, config: ZScoreConfig) -> None:
        self.config = config
        self.mean: Any = None
        self.std: Any = None

    def fit(self, features: Any) -> None:
        import numpy as np

        x = np.asarray(features, dtype=np.float64)
        if len(x) == 0:
            raise ValueError("zscore: cannot fit on an empty train split")
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > self.config.eps, std, 1.0)

    def transform(self, features: Any) -> Any:
        import numpy as np

        if self.mean is None:
            raise RuntimeError("zscore: transform before fit")
        x = np.asarray(features, dtype=np.float64)
        if x.shape[1] != len(self.mean):
            raise ValueError(f"zscore: fitted on {len(self.mean)} features, got {x.shape[1]}")
        z = (x - self.mean) / self.std
        if self.config.clip > 0:
            np.clip(z, -self.config.clip, self.config.clip, out=z)
        return z.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import numpy as np

        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)


@hookimpl
def himari_register_preprocessors(registry: Any) -> None:
    registry.add(PreprocessorSpec(name="zscore", summary="standardise each feature with train-split mean and std",
                                  config=ZScoreConfig, factory=ZScore))
