"""Standardisation with statistics of the train split only: the one implementation, used by the
``zscore`` preprocessor (every built-in model's default) and the gymnasium env's prepared-data
markets. Blocked float64 accumulation, so millions of rows need no float64 copy."""

from __future__ import annotations

import numpy as np

BLOCK = 65536


def fit_zscore(features: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) standard deviation of ``features`` (the train rows), a
    standard deviation at or below ``eps`` becoming 1 (the column is passed centred)."""
    x = np.asarray(features)
    n = len(x)
    if n == 0:
        raise ValueError("cannot fit standardisation statistics on no rows (an empty train split)")
    mean = sum(x[i:i + BLOCK].sum(axis=0, dtype=np.float64) for i in range(0, n, BLOCK)) / n
    ss = sum(np.square(x[i:i + BLOCK].astype(np.float64) - mean).sum(axis=0) for i in range(0, n, BLOCK))
    std = np.sqrt(ss / n)
    return mean, np.where(std > eps, std, 1.0)


def apply_zscore(features: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float = 0.0) -> np.ndarray:
    """``(x - mean) / std`` row by row (causal), clipped to ``[-clip, clip]`` when ``clip > 0``;
    float32."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != len(mean):
        raise ValueError(f"standardisation fitted on {len(mean)} columns, got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    for i in range(0, len(x), BLOCK):
        z = (x[i:i + BLOCK].astype(np.float64) - mean) / std
        if clip > 0:
            np.clip(z, -clip, clip, out=z)
        out[i:i + BLOCK] = z
    return out
