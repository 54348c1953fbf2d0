"""fan: frequency adaptive normalisation, its causal normalising half (seed code A3).

Ye, Deng, Zou and Gui, "Frequency Adaptive Normalization For Non-stationary Time Series
Forecasting", NeurIPS 2024 (arXiv 2409.20371). FAN takes each input window of a series,
computes its real FFT, keeps the K components of largest amplitude (chosen per window: the
"instance-wise" dominant frequencies, the mean's bin included) as the window's non-stationary
part, and feeds the backbone the residual: the window minus the inverse FFT of those K
components. The paper's other half (an MLP predicting the future's dominant components, added
back to a forecast) belongs to a forecasting head and is not part of a preprocessor.

Here each row t and channel (input column) gets the residual's value at the last row of the
trailing window of ``window`` rows ending at t: causal, because that window ends at t. Rows
closer than ``window`` to the start of their run of bars (``filter_ranges``: a segment start or
a train-range start) use the window truncated to that start, an FFT of that shorter length
with the same K (a window of m rows has m // 2 + 1 components; with K of them or fewer
left nothing remains and the residual is 0).

Nothing is fitted: the normalisation is per window. The state is the number of input columns,
so a run's state is refused on data with another feature set. FAN does not rescale: put
``zscore`` after it (``--preprocess fan,zscore``) for standardised inputs.

Speed: the native core computes it (``himari.engine.fan_residuals``): the windows of a run of
bars are one sliding DFT, so each row updates the previous row's spectrum instead of taking an
FFT, and the top K are kept by insertion. On the prepared BTC year (104,816 rows x 60 columns,
window 96, K 3) that is about 0.6 s of one core (docs/preprocessing.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from himari.plugin.api import PreprocessorSpec, hookimpl


@dataclass(frozen=True)
class FANConfig:
    window: int = 96
    """L: rows in each trailing window (the current row is its last); the paper's input length."""
    top_k: int = 3
    """K: frequency components (rFFT bins, the mean included) removed from each window and column."""
    mode: Literal["replace", "append"] = "replace"
    """replace: the residuals in place of the input columns; append: after them (named <column>_fan)."""

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if not 1 <= self.top_k <= self.window // 2:
            raise ValueError(f"top_k must be in 1 .. window // 2 = {self.window // 2}, got {self.top_k}")


class FAN:
    def __init__(self, config: FANConfig) -> None:
        self.config = config
        self.n_features: int | None = None

    def fit(self, data: Any) -> None:
        """Nothing to estimate (the normalisation is per window); checks the train rows and
        records the number of input columns."""
        from himari.plugin.api import DataError, filter_ranges, require_finite

        require_finite("fan", np.asarray(data.features), data, "input feature")
        longest = max((b - a for a, b in filter_ranges(data)), default=0)
        if longest < self.config.window:
            raise DataError(f"fan: the train split's longest run of consecutive bars has {longest} rows, fewer "
                            f"than fan.window={self.config.window}: no full window to normalise over")
        self.n_features = int(data.features.shape[1])

    def transform(self, data: Any) -> np.ndarray:
        from himari.plugin.api import fan_residuals, filter_ranges, require_finite, require_n_features

        require_n_features("fan", self.n_features, data)
        x = np.asarray(data.features)
        require_finite("fan", x, data, "input feature")
        res = fan_residuals(x, filter_ranges(data), self.config.window, self.config.top_k).astype(np.float32)
        if self.config.mode == "replace":
            return res
        return np.concatenate([np.asarray(x, dtype=np.float32), res], axis=1)

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(names) if self.config.mode == "replace" else (*names, *(f"{n}_fan" for n in names))

    def state_dict(self) -> dict[str, Any]:
        return {"n_features": self.n_features}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = state["n_features"]
        if not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
            raise ValueError(f"fan state: n_features must be a positive count, got {n!r}")
        self.n_features = n


@hookimpl
def himari_register_preprocessors(registry: Any) -> None:
    registry.add(PreprocessorSpec(name="fan", code="A3", config=FANConfig, factory=FAN,
                                  summary="frequency adaptive normalisation: remove each trailing window's "
                                          "top-K rFFT components"))


__all__ = ["FAN", "FANConfig"]
