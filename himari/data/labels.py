"""Labelers: classes SELL=0 / HOLD=1 / BUY=2 (the env's action encoding) per bar.

Every labeler measures the future the way the env trades: the decision is taken at the close of
bar t and filled at ``open[t+1]``, so forward returns start at ``open[t+1]``; exits are at a later
bar's open (or, for the triple barrier, when a later bar's high/low touches a barrier). A label
is therefore achievable by an agent acting at t.

Labelers are plain functions registered by name in ``LABELERS`` (``register_labeler`` adds more,
e.g. from a plugin). Each returns a ``LabelResult``: int8 labels with ``-1`` where the future is
not known (the last bars, or no volatility estimate yet), the continuous forward measure behind
them, and ``lookahead``: the last bar after t the label reads (``horizon + 1``, because the entry
is at open[t+1]); it is the default (and minimum) embargo between chronological splits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from himari.errors import DataError

SELL, HOLD, BUY = 0, 1, 2
CLASS_NAMES = ("SELL", "HOLD", "BUY")
UNDEFINED = -1


@dataclass
class LabelResult:
    """Labels (int8, -1 = undefined), the forward measure (float32, NaN = undefined), lookahead."""

    labels: np.ndarray
    target: np.ndarray
    lookahead: int
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelerSpec:
    """A registered labeler: name, one-line summary, function and default parameters."""

    name: str
    summary: str
    func: Callable[..., LabelResult]
    defaults: dict[str, Any]
    check: Callable[..., dict[str, Any]] | None = None
    """Validates the full parameter set before any computation (None: the function checks)."""


LABELERS: dict[str, LabelerSpec] = {}


def register_labeler(name: str, summary: str, defaults: dict[str, Any],
                     check: Callable[..., dict[str, Any]] | None = None,
                     ) -> Callable[[Callable[..., LabelResult]], Callable[..., LabelResult]]:
    """Decorator that adds a labeler to ``LABELERS`` (duplicate names are rejected).

    ``check(**params)``, when given, raises ``DataError`` for parameters out of their domain;
    ``prepare`` calls it before reading any data, so a bad value fails at once.
    """

    def deco(func: Callable[..., LabelResult]) -> Callable[..., LabelResult]:
        if name in LABELERS:
            raise DataError(f"labeler {name!r} is already registered")
        LABELERS[name] = LabelerSpec(name, summary, func, dict(defaults), check)
        return func

    return deco


def _forward_log_return(open_: np.ndarray, horizon: int) -> np.ndarray:
    """log(open[t+1+horizon] / open[t+1]); NaN where t+1+horizon is past the end."""
    n = len(open_)
    lo = np.log(open_)
    out = np.full(n, np.nan)
    if n > 1 + horizon:
        out[: n - 1 - horizon] = lo[1 + horizon:] - lo[1: n - horizon]
    return out


def _sigma(close: np.ndarray, window: int) -> np.ndarray:
    """Causal per-bar volatility: std of the last ``window`` close-to-close log returns."""
    r = np.r_[np.nan, np.diff(np.log(close))]
    return pd.Series(r).rolling(window, min_periods=window).std(ddof=0).to_numpy(copy=True)


def _classes(x: np.ndarray, up: np.ndarray | float, down: np.ndarray | float) -> np.ndarray:
    lab = np.full(len(x), HOLD, dtype=np.int8)
    lab[x > up] = BUY
    lab[x < down] = SELL
    lab[np.isnan(x)] = UNDEFINED
    return lab


def _real(name: str, value: Any, *, minimum: float, inclusive: bool) -> float:
    """A finite real parameter >= (or >) ``minimum``: NaN, inf and out-of-domain values are errors
    (a NaN threshold would silently label every bar HOLD)."""
    flag = "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    x = float(value) if ok else float("nan")
    if not np.isfinite(x) or (x < minimum if inclusive else x <= minimum):
        rel = ">=" if inclusive else ">"
        raise DataError(f"label parameter {name} ({flag}): must be a finite number {rel} {minimum:g}, got {value!r}")
    return x


def _integer(name: str, value: Any, *, minimum: int) -> int:
    """An integer parameter >= ``minimum`` (an integral float such as 5.0 is accepted)."""
    flag = "--" + name.replace("_", "-")
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not np.isfinite(float(value)) or float(value) != int(value) or int(value) < minimum:
        raise DataError(f"label parameter {name} ({flag}): must be an integer >= {minimum}, got {value!r}")
    return int(value)


_PARAM_RULES: dict[str, Callable[[str, Any], Any]] = {
    "horizon": lambda n, v: _integer(n, v, minimum=1),
    "threshold": lambda n, v: _real(n, v, minimum=0.0, inclusive=True),
    "take_profit": lambda n, v: _real(n, v, minimum=0.0, inclusive=False),
    "stop_loss": lambda n, v: _real(n, v, minimum=0.0, inclusive=False),
    "z": lambda n, v: _real(n, v, minimum=0.0, inclusive=True),
    "vol_window": lambda n, v: _integer(n, v, minimum=2),
}
"""Domains of the built-in labelers' parameters: horizon >= 1 bar, threshold >= 0, barriers > 0,
z >= 0, a volatility window of >= 2 returns (one return has no spread)."""


def _checked(**params: Any) -> dict[str, Any]:
    """Validate built-in labeler parameters by name; returns them normalised (int / float)."""
    return {k: _PARAM_RULES[k](k, v) for k, v in params.items()}


@register_labeler("forward-return", "BUY/SELL when the log return from open[t+1] over k bars exceeds +/- threshold",
                  {"horizon": 5, "threshold": 0.002}, check=_checked)
def forward_return(open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, *,
                   horizon: int = 5, threshold: float = 0.002) -> LabelResult:
    """Fixed-threshold forward return: enter at open[t+1], exit at open[t+1+horizon]."""
    p = _checked(horizon=horizon, threshold=threshold)
    horizon, threshold = p["horizon"], p["threshold"]
    fr = _forward_log_return(np.asarray(open, np.float64), horizon)
    return LabelResult(_classes(fr, threshold, -threshold), fr.astype(np.float32), horizon + 1,
                       "forward-return", {"horizon": horizon, "threshold": threshold})


@register_labeler("triple-barrier", "take-profit / stop-loss barriers scaled by volatility, time limit k bars",
                  {"horizon": 20, "take_profit": 1.0, "stop_loss": 1.0, "vol_window": 48},
                  check=_checked)
def triple_barrier(open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, *,
                   horizon: int = 20, take_profit: float = 1.0, stop_loss: float = 1.0,
                   vol_window: int = 48) -> LabelResult:
    """Lopez de Prado's triple barrier from the entry at open[t+1].

    Barriers: ``entry * exp(+take_profit * w)`` and ``entry * exp(-stop_loss * w)`` with
    ``w = sigma_t * sqrt(horizon)`` and sigma_t the causal ``vol_window``-bar volatility at t.
    The first bar j in t+1 .. t+horizon whose high (low) touches the upper (lower) barrier gives
    BUY (SELL); when both are touched within one bar the stop-loss is assumed first (the
    pessimistic reading of an OHLC bar). No touch by the time limit: HOLD. The target is the
    log return realised at the exit (barrier level, or open[t+1+horizon] at the time limit).
    """
    p = _checked(horizon=horizon, take_profit=take_profit, stop_loss=stop_loss, vol_window=vol_window)
    horizon, take_profit, stop_loss, vol_window = p["horizon"], p["take_profit"], p["stop_loss"], p["vol_window"]
    o, h, l, c = (np.asarray(a, np.float64) for a in (open, high, low, close))
    n = len(o)
    width = _sigma(c, int(vol_window)) * np.sqrt(horizon)
    labels = np.full(n, UNDEFINED, dtype=np.int8)
    target = np.full(n, np.nan)
    valid_n = n - 1 - horizon  # rows t whose whole window t+1 .. t+1+horizon exists
    if valid_n > 0:
        t = np.arange(valid_n)
        entry = np.log(o[t + 1])
        up = entry + take_profit * width[t]
        dn = entry - stop_loss * width[t]
        decided = np.zeros(valid_n, dtype=bool)
        lab = np.full(valid_n, HOLD, dtype=np.int8)
        tgt = np.log(o[t + 1 + horizon]) - entry
        for j in range(1, horizon + 1):
            hit_dn = ~decided & (np.log(l[t + j]) <= dn)
            hit_up = ~decided & ~hit_dn & (np.log(h[t + j]) >= up)
            lab[hit_dn], tgt[hit_dn] = SELL, (dn - entry)[hit_dn]
            lab[hit_up], tgt[hit_up] = BUY, (up - entry)[hit_up]
            decided |= hit_dn | hit_up
        ok = np.isfinite(width[t])
        labels[:valid_n] = np.where(ok, lab, UNDEFINED)
        target[:valid_n] = np.where(ok, tgt, np.nan)
    return LabelResult(labels, target.astype(np.float32), horizon + 1, "triple-barrier",
                       {"horizon": horizon, "take_profit": take_profit, "stop_loss": stop_loss,
                        "vol_window": int(vol_window)})


@register_labeler("risk-adjusted", "forward return from open[t+1] over k bars in units of causal volatility, +/- z",
                  {"horizon": 5, "z": 0.5, "vol_window": 48}, check=_checked)
def risk_adjusted(open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, *,
                  horizon: int = 5, z: float = 0.5, vol_window: int = 48) -> LabelResult:
    """Forward log return divided by ``sigma_t * sqrt(horizon)``; BUY above +z, SELL below -z."""
    p = _checked(horizon=horizon, z=z, vol_window=vol_window)
    horizon, z, vol_window = p["horizon"], p["z"], p["vol_window"]
    fr = _forward_log_return(np.asarray(open, np.float64), horizon)
    scale = _sigma(np.asarray(close, np.float64), int(vol_window)) * np.sqrt(horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(scale > 0, fr / np.where(scale > 0, scale, 1.0), np.nan)
    return LabelResult(_classes(y, z, -z), y.astype(np.float32), horizon + 1, "risk-adjusted",
                       {"horizon": horizon, "z": z, "vol_window": int(vol_window)})


def check_label_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The labeler's full parameter set (defaults filled in), checked without touching any data:
    an unknown labeler or parameter, or a value out of its domain, is a ``DataError``."""
    if name not in LABELERS:
        raise DataError(f"labeler {name!r} is unknown; choose one of {', '.join(sorted(LABELERS))}")
    spec = LABELERS[name]
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise DataError(f"labeler {name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                        f"it takes {', '.join(spec.defaults)}")
    merged = {**spec.defaults, **params}
    if spec.check is not None:
        merged = {**merged, **spec.check(**merged)}
    return merged


def make_labels(name: str, open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                **params: Any) -> LabelResult:
    """Run a registered labeler by name; unknown parameters are an error, not ignored."""
    merged = check_label_params(name, params)
    return LABELERS[name].func(open, high, low, close, **merged)


def label_distribution(labels: np.ndarray) -> dict[str, int]:
    """Counts per class name over defined labels."""
    lab = np.asarray(labels)
    lab = lab[lab >= 0]
    counts = np.bincount(lab.astype(np.int64), minlength=3)
    return {CLASS_NAMES[i]: int(counts[i]) for i in range(3)}
