"""The market shared by all envs of a VecTradingEnv."""

from __future__ import annotations

from typing import Any

import numpy as np

from himari.engine import args
from himari.engine._native import _core
from himari.engine.arrays import as_host_array
from himari.engine.device import check_device, device_index

_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
"""float64 magnitudes from here up round to inf in float32 (float32's largest value plus half an
ulp; the tie rounds to the even neighbour, inf)."""


def _check_float32_range(features: Any) -> None:
    """Refuse float64 features that are finite but would become inf when stored as float32.

    The native side refuses NaN and inf in what it is given, but it checks before narrowing to
    float32, so 1e39 would silently become inf. Min/max first (no temporary array); only when
    those are out of range (or NaN) is the first offending element searched for, block-wise.
    """
    if not isinstance(features, np.ndarray) or features.dtype != np.float64 or features.ndim != 2 or features.size == 0:
        return
    lo, hi = features.min(), features.max()
    if -_FLOAT32_OVERFLOW < lo and hi < _FLOAT32_OVERFLOW:
        return
    block = max(1, (1 << 20) // max(1, features.shape[1]))
    for start in range(0, features.shape[0], block):
        chunk = features[start: start + block]
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(chunk) & (np.abs(chunk) >= _FLOAT32_OVERFLOW)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            from himari.errors import InvalidArgumentError

            raise InvalidArgumentError(
                f"features: row {start + int(i)}, column {int(j)}: {float(chunk[i, j])!r} is finite but too large "
                f"for float32, in which features are stored (largest {float(np.finfo(np.float32).max):.8g}); "
                "rescale the feature"
            )


class Market:
    """Prices and causal features of one instrument, copied once into native memory.

    ``open`` and ``close`` are 1-D float32/float64 arrays of equal length ``T >= 2`` (finite,
    > 0; stored as float64). ``features`` is ``[T, F]`` float32/float64 (finite, and within
    float32's range, since they are stored as float32) or ``None``. ``warmup`` is the first bar
    an episode may start at, usually the warm-up of the feature set. Every env of every VecTradingEnv built on it shares this one copy.

    ``device="cuda"`` (or ``"cuda:N"``) also copies the market to that GPU once; envs built on it
    then run there (the host copy stays, for evaluation and reports).
    """

    def __init__(
        self,
        open: Any,
        close: Any,
        features: Any = None,
        *,
        warmup: int = 0,
        device: str = "cpu",
    ) -> None:
        self.device = check_device(device)
        warmup = args.integer("warmup", warmup)
        host_features = None if features is None else as_host_array(features)
        _check_float32_range(host_features)
        self._native = _core.Market(as_host_array(open), as_host_array(close), host_features)
        self.warmup = warmup
        self._device_native = None
        if self.device != "cpu":
            self._device_native = _core.DeviceMarket(self._native, device_index(self.device))

    @property
    def device_index(self) -> int | None:
        """The CUDA device ordinal, or None for a CPU market."""
        return None if self._device_native is None else int(self._device_native.device)

    @property
    def n_bars(self) -> int:
        return int(self._native.n_bars)

    @property
    def n_features(self) -> int:
        return int(self._native.n_features)

    @property
    def open(self) -> np.ndarray:
        """Read-only float64 view of the open prices."""
        return self._native.open

    @property
    def close(self) -> np.ndarray:
        """Read-only float64 view of the close prices."""
        return self._native.close

    @property
    def features(self) -> np.ndarray:
        """Read-only float32 view ``[T, F]`` of the features."""
        return self._native.features

    def __deepcopy__(self, memo: dict[int, Any]) -> Market:
        """The market itself: it cannot change after construction (read-only views), and envs
        built on copies would each hold the whole market again. gymnasium deep-copies an env's
        keyword arguments when it re-creates the env from its spec (``check_env`` does)."""
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its arrays, so an env factory holding a market can cross processes
        (gymnasium's ``AsyncVectorEnv``); it is rebuilt on the same device."""
        return (_rebuild, (np.array(self.open), np.array(self.close),
                           np.array(self.features) if self.n_features else None, self.warmup, self.device))

    def __repr__(self) -> str:
        return f"Market(n_bars={self.n_bars}, n_features={self.n_features}, warmup={self.warmup}, device='{self.device}')"


def _rebuild(open_: np.ndarray, close: np.ndarray, features: np.ndarray | None, warmup: int, device: str) -> Market:
    return Market(open_, close, features, warmup=warmup, device=device)
