"""The default feature set: 60 causal, scale-free features per bar, defined in ``FEATURES``.

``FEATURES`` is the one place where a feature is named, described and given its look-back; the
docs table (docs/data.md) is generated from it and a test checks that ``compute_features``
produces exactly these columns in this order.

Rules every feature follows, and that tests enforce:

- **causal**: the value at bar t uses bars 0..t only (rolling windows end at t, exponential
  averages and the EKF run forward). A property test recomputes all features on data truncated at
  random t and requires bit-identical values at t.
- **scale-free**: log returns, ratios, z-scores, bounded oscillators and time encodings, never
  raw prices or volumes, so a model trained on BTC sees the same distribution shapes on ETH.
- **defined warm-up**: feature i is NaN before bar ``FEATURES[i].lookback`` and finite from it
  on; ``WARMUP`` (the largest look-back) is the first bar where all are valid. Ratios whose
  denominator is 0 (a flat window, zero volume) are defined as 0.

All computations are vectorised (numpy and pandas' compiled rolling/EWM kernels); the EKF runs
in the native core (``himari.engine.ekf``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari.errors import DataError


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name, group, first valid bar and a one-line description."""

    name: str
    group: str
    lookback: int
    description: str


def _spec(group: str, rows: list[tuple[str, int, str]]) -> list[FeatureSpec]:
    return [FeatureSpec(name, group, lookback, desc) for name, lookback, desc in rows]


FEATURES: tuple[FeatureSpec, ...] = tuple(
    _spec("returns", [
        ("ret_1", 1, "log return of the close over 1 bar"),
        ("ret_3", 3, "log return of the close over 3 bars"),
        ("ret_6", 6, "log return of the close over 6 bars"),
        ("ret_12", 12, "log return of the close over 12 bars (1 hour at 5m)"),
        ("ret_24", 24, "log return of the close over 24 bars"),
        ("ret_48", 48, "log return of the close over 48 bars"),
        ("ret_96", 96, "log return of the close over 96 bars"),
        ("ret_288", 288, "log return of the close over 288 bars (1 day at 5m)"),
    ])
    + _spec("return shape", [
        ("ret_1_z", 48, "1-bar log return divided by its 48-bar realised volatility"),
        ("skew_288", 288, "skewness of 1-bar log returns over 288 bars"),
        ("kurt_288", 288, "excess kurtosis of 1-bar log returns over 288 bars"),
    ])
    + _spec("volatility", [
        ("rv_12", 12, "realised volatility: std of 1-bar log returns over 12 bars"),
        ("rv_48", 48, "std of 1-bar log returns over 48 bars"),
        ("rv_288", 288, "std of 1-bar log returns over 288 bars"),
        ("rv_1440", 1440, "std of 1-bar log returns over 1440 bars (5 days at 5m)"),
        ("rv_ratio_12_288", 288, "rv_12 / rv_288: short against long volatility"),
        ("parkinson_48", 47, "Parkinson high-low volatility estimate over 48 bars"),
        ("downside_vol_48", 48, "root mean square of negative 1-bar log returns over 48 bars"),
    ])
    + _spec("range and gap", [
        ("hl_range", 0, "log(high / low) of the bar"),
        ("body", 0, "log(close / open) of the bar"),
        ("upper_wick", 0, "log(high / max(open, close))"),
        ("lower_wick", 0, "log(min(open, close) / low)"),
        ("close_location", 0, "where the close sits in the bar's range, -1 at the low to +1 at the high"),
        ("gap", 1, "log(open / previous close)"),
        ("range_z_48", 47, "z-score of hl_range against the last 48 bars"),
    ])
    + _spec("volume", [
        ("vol_z_12", 11, "z-score of volume against the last 12 bars"),
        ("vol_z_48", 47, "z-score of volume against the last 48 bars"),
        ("vol_z_288", 287, "z-score of volume against the last 288 bars"),
        ("vol_rel_1", 287, "log1p(volume / mean volume of the last 288 bars)"),
        ("vol_rel_12", 287, "log1p(mean volume of 12 bars / mean volume of 288 bars)"),
        ("signed_vol_48", 48, "sum(sign(return) * volume) / sum(volume) over 48 bars"),
    ])
    + _spec("oscillators", [
        ("rsi_14", 70, "Wilder RSI over 14 bars, rescaled to [-1, 1]"),
        ("rsi_48", 240, "Wilder RSI over 48 bars, rescaled to [-1, 1]"),
        ("stoch_k_14", 13, "stochastic %K over 14 bars, rescaled to [-1, 1]"),
        ("macd", 130, "MACD as a ratio: EMA12(close) / EMA26(close) - 1"),
        ("macd_signal", 175, "EMA9 of macd"),
        ("macd_hist", 175, "macd - macd_signal"),
        ("efficiency_ratio_48", 48, "Kaufman efficiency: |48-bar return| / sum of |1-bar returns|"),
    ])
    + _spec("bands and trend", [
        ("bb_pos_20", 19, "Bollinger position: (close - SMA20) / (2 std20)"),
        ("bb_width_20", 19, "Bollinger width: 4 std20 / SMA20"),
        ("bb_pos_96", 95, "Bollinger position over 96 bars"),
        ("sma_dist_20", 19, "log(close / SMA20)"),
        ("sma_dist_50", 49, "log(close / SMA50)"),
        ("sma_dist_200", 199, "log(close / SMA200)"),
        ("ema_slope_48", 252, "log change of EMA48(close) over the last 12 bars"),
    ])
    + _spec("ATR", [
        ("atr_14", 70, "Wilder average true range over 14 bars, as a log ratio to the close"),
        ("atr_48", 240, "Wilder average true range over 48 bars, as a log ratio"),
    ])
    + _spec("calendar", [
        ("tod_sin", 0, "sin of the time of day (UTC, bar open)"),
        ("tod_cos", 0, "cos of the time of day"),
        ("dow_sin", 0, "sin of the position in the week (Monday 00:00 = 0)"),
        ("dow_cos", 0, "cos of the position in the week"),
    ])
    + _spec("EKF (native)", [
        ("ekf_level_gap", 288, "log close minus the EKF's filtered level"),
        ("ekf_velocity", 288, "EKF level velocity (log price per bar)"),
        ("ekf_acceleration", 288, "EKF level acceleration (log price per bar^2)"),
        ("ekf_log_vol", 288, "log of the EKF per-bar volatility (log_variance / 2), clipped to [-15, -1]"),
        ("ekf_trend_snr", 288, "ekf_velocity / ekf_vol: drift against noise"),
    ])
    + _spec("drawdown", [
        ("drawdown_288", 287, "log(close / highest high of the last 288 bars), <= 0"),
        ("drawdown_1440", 1439, "log(close / highest high of the last 1440 bars), <= 0"),
        ("runup_288", 287, "log(close / lowest low of the last 288 bars), >= 0"),
        ("up_fraction_48", 48, "fraction of the last 48 bars that closed up"),
    ])
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_DIM = len(FEATURES)
WARMUP = max(f.lookback for f in FEATURES)
"""First bar (0-based, from the start of a series) where every feature is valid."""


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0, NaN where either is NaN (so warm-up stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(b != 0, a / np.where(b != 0, b, 1.0), 0.0)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, q)


def _roll(x: np.ndarray, w: int) -> pd.api.typing.Rolling:
    return pd.Series(x).rolling(w, min_periods=w)


def _ewm(x: np.ndarray, *, alpha: float | None = None, span: float | None = None) -> np.ndarray:
    s = pd.Series(x)
    e = s.ewm(alpha=alpha, adjust=False) if alpha is not None else s.ewm(span=span, adjust=False)
    return e.mean().to_numpy(copy=True)


def _np(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=np.float64, copy=True)


def compute_features(open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                     volume: np.ndarray, timestamps_ns: np.ndarray, *, ekf_params: object | None = None) -> np.ndarray:
    """All 60 features of one contiguous series, float64 ``[T, 60]`` in ``FEATURE_NAMES`` order.

    The result is a Fortran-ordered view (columns are contiguous); copy with
    ``np.ascontiguousarray`` where row-major layout matters.

    Values before each feature's look-back are NaN. Prices must be finite and positive (the
    canonical frame guarantees it).
    """
    o, h, l, c, v = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume))
    t_ns = np.asarray(timestamps_ns, dtype=np.int64)
    n = len(c)
    if not (len(o) == len(h) == len(l) == len(v) == len(t_ns) == n):
        raise DataError("features: open, high, low, close, volume and timestamps must have equal length")
    if n == 0:
        return np.zeros((0, FEATURE_DIM))
    f: dict[str, np.ndarray] = {}
    logc = np.log(c)
    r = logc - _shift(logc, 1)  # r[0] is NaN
    r0 = np.nan_to_num(r, nan=0.0)  # for recursions that need a start value

    for k in (1, 3, 6, 12, 24, 48, 96, 288):
        f[f"ret_{k}"] = logc - _shift(logc, k)

    rv = {w: _np(_roll(r, w).std(ddof=0)) for w in (12, 48, 288, 1440)}
    f["ret_1_z"] = _div(r, rv[48])
    rr = _roll(r, 288)
    # a window of equal returns has no skew or kurtosis: 0 here, whatever pandas' version gives
    # (NaN in pandas 3, -3 for the kurtosis in some 2.x releases)
    flat = _np(rr.max()) == _np(rr.min())
    for name, vals in (("skew_288", _np(rr.skew())), ("kurt_288", _np(rr.kurt()))):
        vals[288:][~np.isfinite(vals[288:]) | flat[288:]] = 0.0
        f[name] = vals
    for w in (12, 48, 288, 1440):
        f[f"rv_{w}"] = rv[w]
    f["rv_ratio_12_288"] = _div(rv[12], rv[288])
    hl = np.log(h / l)
    f["parkinson_48"] = np.sqrt(_np(_roll(hl**2, 48).mean()) / (4.0 * np.log(2.0)))
    f["downside_vol_48"] = np.sqrt(_np(_roll(np.minimum(r, 0.0) ** 2, 48).mean()))

    body_hi, body_lo = np.maximum(o, c), np.minimum(o, c)
    f["hl_range"] = hl
    f["body"] = np.log(c / o)
    f["upper_wick"] = np.log(h / body_hi)
    f["lower_wick"] = np.log(body_lo / l)
    f["close_location"] = _div(2 * c - h - l, h - l)
    f["gap"] = np.log(o) - _shift(logc, 1)
    f["range_z_48"] = _div(hl - _np(_roll(hl, 48).mean()), _np(_roll(hl, 48).std(ddof=0)))

    for w in (12, 48, 288):
        f[f"vol_z_{w}"] = _div(v - _np(_roll(v, w).mean()), _np(_roll(v, w).std(ddof=0)))
    vmean288 = _np(_roll(v, 288).mean())
    f["vol_rel_1"] = np.log1p(_div(v, vmean288))
    f["vol_rel_12"] = np.log1p(_div(_np(_roll(v, 12).mean()), vmean288))
    f["signed_vol_48"] = _div(_np(_roll(np.sign(r) * v, 48).sum()), _np(_roll(np.where(np.isnan(r), np.nan, v), 48).sum()))

    gain, loss = np.maximum(r0, 0.0), np.maximum(-r0, 0.0)
    for w in (14, 48):
        g, lo_ = _ewm(gain, alpha=1.0 / w), _ewm(loss, alpha=1.0 / w)
        f[f"rsi_{w}"] = _div(g - lo_, g + lo_)
    ll14, hh14 = _np(_roll(l, 14).min()), _np(_roll(h, 14).max())
    f["stoch_k_14"] = _div(2 * c - ll14 - hh14, hh14 - ll14)
    macd = _ewm(c, span=12) / _ewm(c, span=26) - 1.0
    signal = _ewm(macd, span=9)
    f["macd"], f["macd_signal"], f["macd_hist"] = macd, signal, macd - signal
    f["efficiency_ratio_48"] = _div(np.abs(f["ret_48"]), _np(_roll(np.abs(r), 48).sum()))

    for w in (20, 96):
        sma, sd = _np(_roll(c, w).mean()), _np(_roll(c, w).std(ddof=0))
        f[f"bb_pos_{w}"] = _div(c - sma, 2 * sd)
        if w == 20:
            f["bb_width_20"] = _div(4 * sd, sma)
    for w in (20, 50, 200):
        f[f"sma_dist_{w}"] = logc - np.log(_np(_roll(c, w).mean()))
    ema48 = np.log(_ewm(c, span=48))
    f["ema_slope_48"] = ema48 - _shift(ema48, 12)

    prev_c = np.r_[c[0], c[:-1]]
    tr = np.log(np.maximum(h, prev_c) / np.minimum(l, prev_c))
    tr[0] = hl[0]
    f["atr_14"], f["atr_48"] = _ewm(tr, alpha=1 / 14), _ewm(tr, alpha=1 / 48)

    secs = t_ns // 1_000_000_000
    tod = (secs % 86400) / 86400.0
    week = (((secs // 86400) + 3) % 7 + tod) / 7.0  # 1970-01-01 was a Thursday: Monday = 0
    f["tod_sin"], f["tod_cos"] = np.sin(2 * np.pi * tod), np.cos(2 * np.pi * tod)
    f["dow_sin"], f["dow_cos"] = np.sin(2 * np.pi * week), np.cos(2 * np.pi * week)

    from himari import engine

    states = np.asarray(engine.ekf(c) if ekf_params is None else engine.ekf(c, ekf_params), dtype=np.float64)
    # the EKF's log variance can overshoot far above any real level on a jump (a 12% bar once
    # sent it to +30), so the feature is clipped to per-bar volatilities of 3e-7 .. 37%
    ekf_log_vol = np.clip(states[:, 3] / 2.0, -15.0, -1.0)
    ekf_vol = np.exp(ekf_log_vol)
    f["ekf_level_gap"] = logc - states[:, 0]
    f["ekf_velocity"] = states[:, 1]
    f["ekf_acceleration"] = states[:, 2]
    f["ekf_log_vol"] = ekf_log_vol
    f["ekf_trend_snr"] = _div(states[:, 1], ekf_vol)

    f["drawdown_288"] = logc - np.log(_np(_roll(h, 288).max()))
    f["drawdown_1440"] = logc - np.log(_np(_roll(h, 1440).max()))
    f["runup_288"] = logc - np.log(_np(_roll(l, 288).min()))
    f["up_fraction_48"] = _np(_roll(np.where(np.isnan(r), np.nan, (r > 0).astype(np.float64)), 48).mean())

    if set(f) != set(FEATURE_NAMES):  # pragma: no cover - guards the one-place definition
        raise AssertionError(f"feature mismatch: {sorted(set(f) ^ set(FEATURE_NAMES))}")
    cols = np.empty((FEATURE_DIM, n), dtype=np.float64)  # column-major: fast column writes
    for j, spec in enumerate(FEATURES):
        cols[j] = f[spec.name]
        cols[j, : min(spec.lookback, n)] = np.nan
    return cols.T


def features_frame(bars: pd.DataFrame, *, ekf_params: object | None = None) -> pd.DataFrame:
    """Features of one symbol's canonical bars as a DataFrame indexed like ``bars``."""
    from himari.data.frame import ts_ns

    vals = compute_features(*(bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume")),
                            ts_ns(bars["timestamp"]), ekf_params=ekf_params)
    return pd.DataFrame(vals, columns=list(FEATURE_NAMES), index=bars.index)


def feature_table_markdown() -> str:
    """The docs table of every feature (docs/data.md embeds it between markers)."""
    lines = ["| # | name | group | first valid bar | description |", "| --- | --- | --- | --- | --- |"]
    for i, s in enumerate(FEATURES):
        lines.append(f"| {i} | `{s.name}` | {s.group} | {s.lookback} | {s.description} |")
    return "\n".join(lines) + "\n"
