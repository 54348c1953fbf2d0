"""Windows of the train segments and the scalers the generators share.

A window never crosses the end of a segment (a gap in the bars or another symbol), so a
generator never learns a jump that is not in the market. The scalers are fitted on train rows
and saved in the generator's state as plain arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from himari.errors import DataError


def window_starts(segments: tuple[tuple[int, int], ...] | list[tuple[int, int]], window: int,
                  stride: int = 1) -> np.ndarray:
    """Positions ``s`` such that ``[s, s + window)`` lies inside one segment, every ``stride``
    rows of each segment (int64, sorted). Empty when no segment is long enough."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    parts = [np.arange(a, b - window + 1, stride, dtype=np.int64) for a, b in segments if b - a >= window]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def take_windows(array: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """``array[s:s + window]`` for each start: ``[len(starts), window, ...]`` (a copy)."""
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(window, dtype=np.int64)[None, :]
    return np.asarray(array)[idx]


def require_windows(name: str, segments: Any, window: int) -> np.ndarray:
    """The window starts of ``segments``, or a ``DataError`` naming the generator when the train
    split has no run of ``window`` consecutive bars."""
    starts = window_starts(segments, window)
    if len(starts) == 0:
        longest = max((b - a for a, b in segments), default=0)
        raise DataError(f"generator {name!r}: the train split has no {window} consecutive bars (its longest run "
                        f"is {longest}); lower the window or prepare more data")
    return starts


class MinMaxScaler:
    """Per-channel min-max scaling to [0, 1] with the train rows' minimum and maximum (TimeGAN's
    normalisation); ``inverse`` maps generated values back to the channels' units."""

    def __init__(self, eps: float = 1e-7) -> None:
        self.eps = eps
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> MinMaxScaler:
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        self.min, self.max = x.min(axis=0), x.max(axis=0)
        return self

    def _range(self) -> np.ndarray:
        if self.min is None or self.max is None:
            raise RuntimeError("MinMaxScaler: used before fit")
        return self.max - self.min + self.eps

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.min) / self._range()).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) * self._range() + self.min).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "eps": self.eps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        lo, hi = np.asarray(state["min"], np.float64), np.asarray(state["max"], np.float64)
        if lo.ndim != 1 or lo.shape != hi.shape or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("min-max state: min and max must be finite vectors of one length")
        self.min, self.max, self.eps = lo, hi, float(state.get("eps", self.eps))


class QuantileNormal:
    """Each column mapped to a standard normal through its train quantiles (scikit-learn's
    ``QuantileTransformer(output_distribution="normal")``, Tab-DDPM's numerical encoding); the
    state is the quantile table, so a reloaded transformer maps exactly as the fitted one."""

    def __init__(self, n_quantiles: int = 1000, seed: int = 0) -> None:
        self.n_quantiles, self.seed = n_quantiles, seed
        self._qt: Any = None

    def fit(self, x: np.ndarray) -> QuantileNormal:
        from sklearn.preprocessing import QuantileTransformer

        x = np.asarray(x, dtype=np.float64)
        n = min(self.n_quantiles, len(x))
        self._qt = QuantileTransformer(output_distribution="normal", n_quantiles=max(n, 2),
                                       subsample=max(len(x), 10), random_state=self.seed)
        self._qt.fit(x)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self._qt.transform(np.asarray(x, dtype=np.float64)).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return self._qt.inverse_transform(np.asarray(z, dtype=np.float64)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        if self._qt is None:
            raise RuntimeError("QuantileNormal: state before fit")
        return {"quantiles": self._qt.quantiles_, "references": self._qt.references_, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from sklearn.preprocessing import QuantileTransformer

        q = np.asarray(state["quantiles"], dtype=np.float64)
        ref = np.asarray(state["references"], dtype=np.float64)
        if q.ndim != 2 or ref.shape != (q.shape[0],) or not np.isfinite(q).all():
            raise ValueError("quantile state: quantiles must be a finite [n_quantiles, columns] table")
        qt = QuantileTransformer(output_distribution="normal", n_quantiles=q.shape[0])
        qt.quantiles_, qt.references_, qt.n_quantiles_ = q, ref, q.shape[0]
        qt.n_features_in_ = q.shape[1]
        self._qt, self.seed = qt, int(state.get("seed", 0))


def torch_generator(seed: int, device: str = "cpu") -> Any:
    """A torch random generator on ``device`` seeded with ``seed`` (draws made with it are the
    same on every call with the same seed, whatever else the process has drawn)."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed) % (2**63))
    return g


def check_finite(name: str, x: np.ndarray, what: str) -> None:
    """A ``DataError`` naming the generator when ``x`` holds NaN or inf."""
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(f"generator {name!r}: {what} holds {int(bad.sum())} NaN or infinite value(s); "
                        f"choose finite features")
