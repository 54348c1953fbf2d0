"""The tail rules: which rows are crashes and flash crashes (numpy only).

On the train split, ``r_k[t] = log(close[t] / close[t - k])`` within each run of consecutive bars
(NaN for the first k rows of a run). A row is a **flash crash** when ``r_flash <= q_flash`` and
otherwise a **crash** when ``r_crash <= q_crash``, where ``q`` are the train split's quantiles
(``flash_quantile`` of ``r_flash``, ``crash_quantile`` of ``r_crash``); every other row is
**normal**. The two thresholds are kept with the fitted generator, so a generated row is
classified by the same absolute numbers (through its ``ret_<k>`` channels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NORMAL, CRASH, FLASH = 0, 1, 2


def segment_returns(close: np.ndarray, segments: Any, k: int) -> np.ndarray:
    """``log(close[t] / close[t - k])`` inside each ``[a, b)`` segment, NaN for its first k rows."""
    lc = np.log(np.asarray(close, dtype=np.float64))
    out = np.full(len(lc), np.nan)
    for a, b in segments:
        if b - a > k:
            out[a + k:b] = lc[a + k:b] - lc[a:b - k]
    return out


def thresholds(close: np.ndarray, segments: Any, crash_bars: int, crash_q: float, flash_bars: int,
               flash_q: float) -> tuple[float, float]:
    """The crash and flash-crash thresholds (log returns) from the train rows."""
    rc = segment_returns(close, segments, crash_bars)
    rf = segment_returns(close, segments, flash_bars)
    rc, rf = rc[np.isfinite(rc)], rf[np.isfinite(rf)]
    if len(rc) == 0 or len(rf) == 0:
        raise ValueError(f"no train run is longer than {max(crash_bars, flash_bars)} bars")
    return float(np.quantile(rc, crash_q)), float(np.quantile(rf, flash_q))


def classify(r_crash: np.ndarray, r_flash: np.ndarray, crash_at: float, flash_at: float) -> np.ndarray:
    """Class of each row (NaN returns count as not meeting a rule): int8 NORMAL/CRASH/FLASH."""
    r_crash, r_flash = np.asarray(r_crash, np.float64), np.asarray(r_flash, np.float64)
    out = np.full(len(r_crash), NORMAL, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        out[r_crash <= crash_at] = CRASH
        out[r_flash <= flash_at] = FLASH
    return out
