"""The series the autoencoders read and their causal windows (NumPy only).

A window belongs to one *piece*: a contiguous run of rows that never reaches into a gap or
another symbol. ``fit`` cuts its train rows into pieces at every train range's boundaries
(``pieces``); ``transform`` reads the runs ``filter_ranges`` gives (cut at each train range's
start too, so the train rows see exactly the windows ``fit`` trained on, while validation and test
continue from the rows before them, as they would live). Row t of a piece gets the rows
``max(start, t - window + 1) .. t``, zero-padded on the left (zero is the train mean of a
standardised series) while the piece is younger than the window.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from himari.plugin.api import ConfigError, DataError
from himari_builtin.preprocessing.conversational_ae.config import BAR_SERIES

NAME = "conversational-ae"


def pieces(segments: Any, splits: dict[str, Any]) -> list[tuple[int, int]]:
    """``segments`` cut at every boundary of every split range: the window domains."""
    cuts = sorted({int(c) for ranges in splits.values() for a, b in ranges for c in (a, b)})
    out: list[tuple[int, int]] = []
    for a, b in segments:
        bounds = [int(a), *(c for c in cuts if a < c < b), int(b)]
        out.extend((x, y) for x, y in pairwise(bounds) if y > x)
    return out


def _trailing_mean(x: np.ndarray, window: int, parts: list[tuple[int, int]]) -> np.ndarray:
    """Mean of the last ``window`` values up to each row, inside its piece (causal)."""
    out = np.zeros_like(x)
    for a, b in parts:
        c = np.concatenate([[0.0], np.cumsum(x[a:b])])
        hi = np.arange(1, b - a + 1)
        lo = np.maximum(hi - window, 0)
        out[a:b] = (c[hi] - c[lo]) / (hi - lo)
    return out


def raw_series(name: str, data: Any, parts: list[tuple[int, int]], window: int) -> np.ndarray:
    """One series over ``data``'s rows (float64), before standardisation.

    ``log-return``: log close-to-close return, 0 at the first row of a piece (its previous bar
    is outside the piece); ``log-price``: log close minus its trailing mean over the window (where
    the price stands against its recent average: a trending, compressible path); ``volume``:
    log(1 + volume) minus its trailing mean over the window (relative volume, so a year-long
    drift in turnover does not shift the input); ``range``:
    log(high / low), the bar's volatility; otherwise the input feature of that name."""
    with np.errstate(all="ignore"):  # a zero or negative price becomes a non-finite value, refused below
        if name == "log-return":
            lc = np.log(np.asarray(data.bars.close, dtype=np.float64))
            out = np.diff(lc, prepend=lc[:1]) if len(lc) else lc
            for a, _ in parts:
                out[a] = 0.0
            return out
        if name == "log-price":
            lc = np.log(np.asarray(data.bars.close, dtype=np.float64))
            if not np.isfinite(lc).all():
                return lc
            return lc - _trailing_mean(lc, window, parts)
        if name == "volume":
            lv = np.log1p(np.asarray(data.bars.volume, dtype=np.float64))
            if not np.isfinite(lv).all():
                return lv
            return lv - _trailing_mean(lv, window, parts)
        if name == "range":
            return np.log(np.asarray(data.bars.high, dtype=np.float64) / np.asarray(data.bars.low, dtype=np.float64))
    names = list(data.feature_names)
    if name not in names:
        raise ConfigError(f"{NAME}: no series {name!r}: use one of {', '.join(BAR_SERIES)} or an input "
                          f"feature ({len(names)} columns: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
    return np.asarray(data.features[:, names.index(name)], dtype=np.float64)


def series_matrix(names: tuple[str, ...], data: Any, parts: list[tuple[int, int]], window: int,
                  what: str) -> np.ndarray:
    """``[n, C]`` raw series of ``data``'s rows; a non-finite value is a DataError naming the
    series and the first prepared row (``what``: which rows, for the message)."""
    cols = [raw_series(n, data, parts, window) for n in names]
    x = np.stack(cols, axis=1) if cols else np.zeros((0, 0))
    bad = ~np.isfinite(x)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, col])
        raise DataError(f"{NAME}: series {names[col]!r} has {len(rows)} NaN or infinite value(s) in the {what} "
                        f"(first at prepared row {int(data.rows[rows[0]])}); clean the data or choose another series")
    return x


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float) -> np.ndarray:
    z = (x - mean) / std
    if clip > 0:
        z = np.clip(z, -clip, clip)
    return z.astype(np.float32)


def windows(z: np.ndarray, parts: list[tuple[int, int]], window: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, C, window]`` trailing windows of every row of ``parts`` (in row order) and a mask of
    the full ones (the row has ``window - 1`` predecessors in its piece)."""
    n, c = z.shape
    out = np.zeros((n, c, window), dtype=np.float32)
    full = np.zeros(n, dtype=bool)
    for a, b in parts:
        padded = np.concatenate([np.zeros((window - 1, c), dtype=np.float32), z[a:b]])
        out[a:b] = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
        full[a + window - 1:b] = True
    return out, full
