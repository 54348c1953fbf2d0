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

Speed: all windows of a run of bars are views of one array (``sliding_window_view``), and
``np.fft.rfft`` runs over blocks of them; only the residual's last value is formed, as the sum of
the removed components at that position. On the prepared BTC year (104,816 rows x 60 columns,
window 96, K 3) it takes about 3 s on one core (docs/preprocessing.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from himari.plugin.api import PreprocessorSpec, hookimpl

BLOCK_VALUES = 1 << 19
"""Window values per FFT block (512K float64, 4 MB: small blocks stay in cache, which is faster)."""


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


def _last_value_weights(m: int) -> np.ndarray:
    """w_k with irfft(X, n=m)[m - 1] = Re(sum_k w_k X_k): (c_k / m) e^{2 pi i k (m - 1) / m}, where
    c_k = 1 for the mean and, for even m, the Nyquist bin, else 2 (the conjugate half)."""
    k = np.arange(m // 2 + 1)
    c = np.full(len(k), 2.0)
    c[0] = 1.0
    if m % 2 == 0:
        c[-1] = 1.0
    return c / m * np.exp(2j * np.pi * k * (m - 1) / m)


def residual_last(windows: np.ndarray, top_k: int) -> np.ndarray:
    """``windows [..., m]`` -> ``[...]``: the last value of each window minus that of its K
    largest-amplitude rFFT components (of equal amplitudes, the lower frequency goes first)."""
    m = windows.shape[-1]
    spectrum = np.fft.rfft(windows, axis=-1)
    weights = _last_value_weights(m)
    bins = spectrum.shape[-1]
    if top_k >= bins:
        return windows[..., -1] - (spectrum * weights).real.sum(axis=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    removed = np.zeros(power.shape[:-1])
    for _ in range(top_k):  # K argmax passes: faster than argpartition for a small K
        k = np.argmax(power, axis=-1)[..., None]
        removed += (np.take_along_axis(spectrum, k, axis=-1)[..., 0] * weights[k[..., 0]]).real
        np.put_along_axis(power, k, -1.0, axis=-1)
    return windows[..., -1] - removed


def fan_residuals(x: np.ndarray, pieces: list[tuple[int, int]], window: int, top_k: int) -> np.ndarray:
    """``x [n, F]`` -> float64 ``[n, F]``: each row's residual over its trailing window inside its
    piece (truncated at the piece start); rows outside every piece are 0."""
    from numpy.lib.stride_tricks import sliding_window_view

    n, f = x.shape
    out = np.zeros((n, f))
    block = max(1, BLOCK_VALUES // max(1, f * window))
    for a, b in pieces:
        seg = np.ascontiguousarray(x[a:b], dtype=np.float64)
        for m in range(1, min(window, b - a + 1)):  # rows a .. a + window - 2: truncated windows
            out[a + m - 1] = residual_last(seg[:m].T, top_k)
        if b - a < window:
            continue
        views = sliding_window_view(seg, window, axis=0)  # [b - a - window + 1, F, window]
        first = a + window - 1  # the row of the first full window
        for i in range(0, len(views), block):  # blocks counted from the piece start: causal
            chunk = views[i:i + block]
            out[first + i:first + i + len(chunk)] = residual_last(chunk, top_k)
    return out


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
        from himari.plugin.api import filter_ranges, require_finite, require_n_features

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


__all__ = ["FAN", "FANConfig", "fan_residuals", "residual_last"]
