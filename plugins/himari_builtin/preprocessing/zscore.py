"""zscore: per-feature standardisation with statistics fitted on the train split only.

``(x - mean) / std`` with the train rows' mean and std (a zero std becomes 1), then clipped to
``[-clip, clip]`` so a regime never seen in training cannot feed a network values hundreds of
standard deviations out. Each row is transformed on its own, so it is causal. This is himari's
one train-split normaliser: every built-in model that wants standardised inputs lists it as its
default preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin.api import PreprocessorSpec, hookimpl


@dataclass(frozen=True)
class ZScoreConfig:
    clip: float = 10.0
    """Clip standardised values to [-clip, clip]; 0 disables."""
    eps: float = 1e-8
    """Standard deviations below this are treated as 0 (the feature is passed centred)."""

    def __post_init__(self) -> None:
        if self.clip < 0 or self.eps < 0:
            raise ValueError("clip and eps must be >= 0")


class ZScore:
    def __init__(self, config: ZScoreConfig) -> None:
        self.config = config
        self.mean: Any = None
        self.std: Any = None

    def fit(self, data: Any) -> None:
        """Mean and std of each column over the train rows (``data`` holds those rows only)."""
        from himari.plugin.api import fit_zscore

        self.mean, self.std = fit_zscore(data.features, self.config.eps)

    def transform(self, data: Any) -> Any:
        from himari.plugin.api import apply_zscore

        if self.mean is None:
            raise RuntimeError("zscore: transform before fit")
        return apply_zscore(data.features, self.mean, self.std, self.config.clip)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import numpy as np

        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.ndim != 1 or mean.shape != std.shape or not (np.isfinite(mean).all() and (std > 0).all()):
            raise ValueError("zscore state: mean and std must be finite vectors of one length, std > 0")
        self.mean, self.std = mean, std


@hookimpl
def himari_register_preprocessors(registry: Any) -> None:
    registry.add(PreprocessorSpec(name="zscore", summary="standardise each feature with train-split mean and std",
                                  config=ZScoreConfig, factory=ZScore))
