"""A seeded synthetic market of 5-minute bars, so every command runs offline on a fresh install.

The generator reproduces the stylised facts that matter to trading models, fully vectorised:

- **regimes** (a semi-Markov chain): ``range`` (driftless, calm), ``trend`` (a drift up or down),
  ``high_vol`` (volatility x2.2 and more frequent jumps), with geometric durations;
- **volatility clustering**: an EGARCH(1,1)-style log variance driven by the shocks' absolute
  value and sign (leverage), computed as a linear AR(1) filter so it needs no Python loop;
- **fat tails and jumps**: Student-t shocks (4 degrees of freedom) plus rare Laplace jumps;
- **intraday seasonality**: volatility and volume peak at the US open (14:30 UTC), volume is lower
  at weekends and rises with the size of the bar's move;
- **consistent OHLC**: open near the previous close, high >= max(open, close), low <= min(...).

Close-to-close returns are martingale-like (the drift is tiny against the noise), so their
autocorrelation is near zero while that of absolute returns is clearly positive. Tests check
these facts (tests/python/data/test_synthetic.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from himari.data.frame import CANONICAL_COLUMNS, write_bars
from himari.data.intervals import format_interval
from himari.data.readers import LATEST_TIME, SUPPORTED_RANGE_TEXT, check_symbol, in_supported_range
from himari.errors import DataError

if TYPE_CHECKING:
    from himari.data.ingest import LoadedBars

REGIMES = ("range", "trend", "high_vol")
BASE_INTERVAL_SECONDS = 300
"""The bar length whose dynamics the generator models (volatility per bar, regimes, seasonality)."""


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthetic market (defaults: BTC-like 5-minute bars)."""

    bars: int = 200_000
    """Number of bars."""
    seed: int = 0
    """Seed of numpy's PCG64 generator: the same seed gives the same bars."""
    interval_seconds: int = 300
    """Bar interval."""
    start: str = "2023-01-01T00:00:00Z"
    """Open time of the first bar (UTC)."""
    symbol: str = "SYNTH"
    """Symbol written into the bars."""
    initial_price: float = 20_000.0
    """First open."""
    bar_vol: float = 0.0015
    """Typical standard deviation of one bar's log return."""
    mean_durations: tuple[float, float, float] = (2500.0, 1500.0, 400.0)
    """Mean length in bars of range, trend and high_vol regimes."""
    vol_multipliers: tuple[float, float, float] = (0.7, 1.0, 2.2)
    """Volatility multiplier per regime."""
    trend_drift: float = 0.03
    """Drift per bar in a trend, in units of bar_vol."""
    egarch_beta: float = 0.985
    """Persistence of the log variance."""
    egarch_alpha: float = 0.10
    """Response of the log variance to the size of the last shock."""
    egarch_gamma: float = -0.03
    """Leverage: response of the log variance to the sign of the last shock."""
    t_dof: float = 4.0
    """Degrees of freedom of the Student-t shocks (fat tails)."""
    jump_rate: float = 0.0003
    """Probability of a jump per bar (x5 in high_vol)."""
    jump_scale: float = 0.008
    """Laplace scale of a jump's log size."""
    base_volume: float = 100.0
    """Typical volume of one bar."""


def _ar1(u: np.ndarray, beta: float) -> np.ndarray:
    """y_t = beta * y_{t-1} + u_t with y_{-1} = 0, through pandas' compiled EWM recursion."""
    x = pd.Series(u / (1.0 - beta))
    return x.ewm(alpha=1.0 - beta, adjust=False).mean().to_numpy(copy=True)


def _regimes(rng: np.random.Generator, n: int, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Regime index per bar and the trend direction (+1/-1, 0 outside trends)."""
    states, lengths, dirs = [], [], []
    total, state = 0, int(rng.integers(0, 3))
    while total < n:
        length = int(rng.geometric(1.0 / cfg.mean_durations[state]))
        states.append(state)
        lengths.append(length)
        dirs.append(float(rng.choice((-1.0, 1.0))) if state == 1 else 0.0)
        total += length
        state = int(rng.choice([s for s in range(3) if s != state]))
    regime = np.repeat(np.array(states, dtype=np.int8), lengths)[:n]
    direction = np.repeat(np.array(dirs), lengths)[:n]
    return regime, direction


def _start_ns(cfg: SynthConfig, n: int) -> int:
    """The first bar's open time in ns; the first and the last bar must open in the range that
    ``import`` accepts (which also keeps the int64 nanosecond times from overflowing)."""
    try:
        start = pd.Timestamp(cfg.start)
    except (ValueError, TypeError, OverflowError) as e:  # DateParseError, OutOfBoundsDatetime
        raise DataError(f"start (--start): cannot read {cfg.start!r} as a UTC date or time "
                        "(e.g. 2023-01-01 or 2023-01-01T09:30:00Z)") from e
    if start is pd.NaT:
        raise DataError(f"start (--start): cannot read {cfg.start!r} as a UTC date or time")
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    if not in_supported_range(start):
        raise DataError(f"start (--start): {start.isoformat()} is outside the supported range {SUPPORTED_RANGE_TEXT}")
    start = start.as_unit("ns")
    last = start.value + (n - 1) * cfg.interval_seconds * 1_000_000_000  # Python int: cannot overflow
    if last >= LATEST_TIME.value:
        room = (LATEST_TIME.value - start.value - 1) // (cfg.interval_seconds * 1_000_000_000) + 1
        raise DataError(f"bars: {n:,} bars of {format_interval(cfg.interval_seconds)} from {start:%Y-%m-%d} would "
                        f"run past the supported range {SUPPORTED_RANGE_TEXT} (at most {room:,} fit); use fewer "
                        "bars, a shorter interval or an earlier start")
    return int(start.value)


def check_synth_config(cfg: SynthConfig) -> None:
    """Refuse a configuration whose bars ``import`` would refuse, before any bar is generated."""
    if int(cfg.bars) < 2:
        raise DataError(f"bars: need at least 2, got {int(cfg.bars)}")
    if cfg.interval_seconds <= 0:
        raise DataError(f"interval_seconds: must be positive, got {cfg.interval_seconds}")
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed (--seed): must be an integer >= 0, got {seed!r}")
    check_symbol(cfg.symbol)
    _start_ns(cfg, int(cfg.bars))


def synthesize(config: SynthConfig | None = None, *, return_regimes: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Generate canonical bars (the same columns as an import) from a seeded generator."""
    cfg = config or SynthConfig()
    check_synth_config(cfg)
    n = int(cfg.bars)
    rng = np.random.default_rng(cfg.seed)
    regime, direction = _regimes(rng, n, cfg)

    start = _start_ns(cfg, n)
    ts = start + np.arange(n, dtype=np.int64) * cfg.interval_seconds * 1_000_000_000
    # The dynamics are those of 5-minute bars whatever the interval, seasonality included: it
    # follows the bars' times as 5-minute bars, so only the timestamps depend on the interval.
    clock = start + np.arange(n, dtype=np.int64) * BASE_INTERVAL_SECONDS * 1_000_000_000
    sec_of_day = (clock // 1_000_000_000) % 86400
    tod = sec_of_day / 86400.0
    weekday = ((clock // 1_000_000_000) // 86400 + 3) % 7  # 1970-01-01 was a Thursday (3)
    us_open = np.cos(2 * np.pi * (tod - 14.5 / 24))
    season_vol = 1.0 + 0.25 * us_open
    season_volume = (1.0 + 0.5 * us_open) * np.where(weekday >= 5, 0.6, 1.0)

    dof = cfg.t_dof
    z = rng.standard_t(dof, size=n) / np.sqrt(dof / (dof - 2.0))
    mean_abs = np.mean(np.abs(rng.standard_t(dof, size=20_000) / np.sqrt(dof / (dof - 2.0))))
    u = np.zeros(n)
    u[1:] = cfg.egarch_alpha * (np.abs(z[:-1]) - mean_abs) + cfg.egarch_gamma * z[:-1]
    h = _ar1(u, cfg.egarch_beta)
    h = h - 0.5 * np.var(h)  # keep E[exp(h)] near 1 so bar_vol stays the typical scale
    vol_mult = np.asarray(cfg.vol_multipliers)[regime]
    sigma = cfg.bar_vol * np.exp(h / 2) * vol_mult * season_vol

    jump_p = np.where(regime == 2, 5 * cfg.jump_rate, cfg.jump_rate)
    jumps = np.where(rng.random(n) < jump_p, rng.laplace(0.0, cfg.jump_scale, n), 0.0)
    drift = direction * cfg.trend_drift * cfg.bar_vol
    r = drift + sigma * z + jumps - 0.5 * sigma**2
    r[0] = 0.0

    log_close = np.log(cfg.initial_price) + np.cumsum(r)
    close = np.exp(log_close)
    # open: the previous close moved by a small part of this bar's return (the first trade)
    gap_share = np.clip(rng.normal(0.0, 0.08, n), -0.3, 0.3)
    prev_close = np.r_[cfg.initial_price, close[:-1]]
    open_ = prev_close * np.exp(gap_share * r)
    body_hi = np.maximum(open_, close)
    body_lo = np.minimum(open_, close)
    high = body_hi * np.exp(np.abs(rng.normal(0.0, 0.6, n)) * sigma)
    low = body_lo * np.exp(-np.abs(rng.normal(0.0, 0.6, n)) * sigma)
    activity = 1.0 + 1.5 * np.abs(r) / np.maximum(sigma, 1e-12)
    regime_volume = np.where(regime == 2, 1.8, np.where(regime == 1, 1.2, 1.0))
    volume = cfg.base_volume * season_volume * regime_volume * activity * np.exp(rng.normal(-0.125, 0.5, n))

    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(ts, unit="ns", utc=True),
        "symbol": cfg.symbol,
        "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "filled": np.zeros(n, dtype=bool),
    })[list(CANONICAL_COLUMNS)]
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
    if return_regimes:
        return frame, regime
    return frame


def write_synthetic(out: str | Path, config: SynthConfig | None = None) -> pd.DataFrame:
    """``himari data synth``: generate and write a bars Parquet (atomically) plus its report."""
    from himari.data.outputs import check_bars_output
    from himari.data.report import build_report, report_path_for

    check_bars_output(out)
    cfg = config or SynthConfig()
    frame = synthesize(cfg)
    assert isinstance(frame, pd.DataFrame)
    report = build_report(frame, cfg.interval_seconds)
    write_bars(frame, out, cfg.interval_seconds, {"synthetic": asdict(cfg), "sources": [], "report": report.to_dict()},
               report_file=(report_path_for(out), report.json_text()))
    return frame


def load_synthetic(config: SynthConfig | None = None) -> LoadedBars:
    """Synthetic bars in memory, shaped like an import (``prepare`` takes it directly)."""
    from himari.data.frame import ImportLog
    from himari.data.ingest import LoadedBars
    from himari.data.report import build_report

    cfg = config or SynthConfig()
    frame = synthesize(cfg)
    assert isinstance(frame, pd.DataFrame)
    source = {"path": None, "name": f"synthetic(bars={cfg.bars}, seed={cfg.seed})", "sha256": None,
              "format": "synthetic", "config": asdict(cfg)}
    log = ImportLog(interval_seconds=cfg.interval_seconds, sources=[source])
    return LoadedBars(frame, cfg.interval_seconds, log, build_report(frame, cfg.interval_seconds, log), [source])
