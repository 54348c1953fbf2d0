"""The canonical bar frame: validation, repair and the Parquet file every later stage reads.

Readers hand over *raw* frames that still carry where each row came from (``_file``, ``_line``).
This module turns them into the one shape the rest of himari relies on:

- columns ``timestamp`` (UTC, ns), ``symbol``, ``open``, ``high``, ``low``, ``close``,
  ``volume`` (float64) and ``filled`` (bool: the bar was inserted by ``fill_gaps="forward"``);
- sorted by symbol then time, one row per (symbol, timestamp), every timestamp on the grid of one
  interval (gaps are allowed and reported unless filled).

Every defect is either an error that names file, line and column, or a repair that only happens
behind an explicit option and is counted in the import log (and so in the data report).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from himari.data.atomic import atomic_path, atomic_paths
from himari.data.intervals import format_interval, parse_interval
from himari.data.readers import (
    SUPPORTED_RANGE_TEXT,
    blank_symbol_rows,
    is_line_based,
    option_hint,
    outside_supported_range,
)
from himari.errors import DataError

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
CANONICAL_COLUMNS = ("timestamp", "symbol", *VALUE_COLUMNS, "filled")
METADATA_KEY = b"himari"
FORMAT_NAME = "himari-bars"
FORMAT_VERSION = 1

FILL_MAX_FACTOR = 10
"""``fill_gaps="forward"`` may make a symbol's series at most this many times its input rows..."""
FILL_MAX_BARS = 50_000_000
"""... and at most this many bars: beyond, a gap is a wrong timestamp, not missing data."""

GapFill = Literal["none", "forward"]
DuplicatePolicy = Literal["error", "first", "last"]


@dataclass(frozen=True)
class ImportOptions:
    """How strict an import is. The defaults reject every defect that changes values."""

    interval: str | int | None = None
    """Expected bar interval (``5m``); inferred from the data when None."""
    fill_gaps: GapFill = "none"
    """``forward``: insert missing bars as flat bars at the previous close, volume 0, filled=True."""
    duplicates: DuplicatePolicy = "error"
    """Same timestamp, different values: ``error``, or keep the ``first``/``last`` occurrence."""
    drop_invalid: bool = False
    """Drop rows with NaN/inf/non-positive prices, negative volume or high < low (else error)."""
    repair_ohlc: bool = False
    """Clamp high/low so that low <= open, close <= high (else such bars are only reported)."""


@dataclass
class SymbolLog:
    """What the import did to one symbol's rows, for the data report."""

    input_rows: int = 0
    unsorted_rows: int = 0
    exact_duplicates_dropped: int = 0
    conflicting_duplicates_resolved: int = 0
    invalid_rows_dropped: int = 0
    ohlc_repaired: int = 0
    filled_bars: int = 0
    files: list[str] = field(default_factory=list)


@dataclass
class ImportLog:
    """Per-symbol import log plus the sources (path, format, rows, sha256)."""

    interval_seconds: int = 0
    symbols: dict[str, SymbolLog] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_seconds": self.interval_seconds,
            "symbols": {k: asdict(v) for k, v in self.symbols.items()},
            "sources": self.sources,
        }


def ts_ns(col: pd.Series) -> np.ndarray:
    """Timestamps of a UTC datetime column as int64 nanoseconds since the epoch."""
    return np.asarray(col.astype("datetime64[ns, UTC]").array.asi8)


def _where(raw: pd.DataFrame, i: int) -> str:
    """``file: line N`` of a raw row (by position) for error messages."""
    name = str(raw["_file"].iat[i])
    unit = "line" if is_line_based(name) else "row"
    return f"{name}: {unit} {int(raw['_line'].iat[i])}"


def _check_values(raw: pd.DataFrame, options: ImportOptions, log: ImportLog, import_options: bool) -> pd.DataFrame:
    """Reject (or drop, with ``drop_invalid``) rows whose values cannot be prices."""
    bad = np.zeros(len(raw), dtype=bool)
    problems: list[tuple[int, str, str]] = []  # (first position, column, what)
    for col in VALUE_COLUMNS:
        x = raw[col].to_numpy(dtype=np.float64)
        checks = [(~np.isfinite(x), "is NaN or infinite")]
        if col == "volume":
            checks.append((np.isfinite(x) & (x < 0), "volume is negative"))
        else:
            checks.append((np.isfinite(x) & (x <= 0), "price is not positive"))
        for mask, what in checks:
            if mask.any():
                problems.append((int(np.argmax(mask)), col, what))
                bad |= mask
    hl = raw["high"].to_numpy() < raw["low"].to_numpy()
    if hl.any():
        problems.append((int(np.argmax(hl)), "high", "high is below low"))
        bad |= hl
    if not bad.any():
        return raw
    if not options.drop_invalid:
        pos, col, what = min(problems)
        val = float(raw[col].iat[pos])
        extra = int(bad.sum()) - 1
        more = f" ({extra} more invalid rows)" if extra else ""
        detail = f"high={float(raw['high'].iat[pos])!r} < low={float(raw['low'].iat[pos])!r}" if what.startswith("high is") else f"value {val!r}"
        raise DataError(
            f"{_where(raw, pos)}, column '{col}': {what} ({detail}){more}; "
            f"fix the source or {option_hint('--drop-invalid', 'to drop such rows', import_options)}"
        )
    for sym, n in raw.loc[bad, "symbol"].value_counts().items():
        log.symbols[str(sym)].invalid_rows_dropped += int(n)
    return raw.loc[~bad]


def _count_unsorted(raw: pd.DataFrame, log: ImportLog) -> None:
    """Count rows that come before their predecessor in the same file and symbol."""
    ts = ts_ns(raw["timestamp"])
    keys = raw["_file"].astype(str) + "\x00" + raw["symbol"].astype(str)
    same = np.r_[False, keys.to_numpy()[1:] == keys.to_numpy()[:-1]]
    back = same & np.r_[False, ts[1:] < ts[:-1]]
    if back.any():
        for sym, n in raw.loc[back, "symbol"].value_counts().items():
            log.symbols[str(sym)].unsorted_rows += int(n)


def _resolve_duplicates(df: pd.DataFrame, options: ImportOptions, log: ImportLog,
                        import_options: bool) -> pd.DataFrame:
    """Drop exact duplicates (counted); conflicting ones are an error unless a policy is chosen."""
    sym = df["symbol"].to_numpy()
    ts = ts_ns(df["timestamp"])
    same_key = np.r_[False, (sym[1:] == sym[:-1]) & (ts[1:] == ts[:-1])]
    if not same_key.any():
        return df
    vals = df[list(VALUE_COLUMNS)].to_numpy()
    same_vals = np.r_[False, (vals[1:] == vals[:-1]).all(axis=1)]
    exact = same_key & same_vals
    conflict = same_key & ~same_vals
    if conflict.any():
        pos = int(np.argmax(conflict))
        if options.duplicates == "error":
            diff_col = next(c for j, c in enumerate(VALUE_COLUMNS) if vals[pos, j] != vals[pos - 1, j])
            j = VALUE_COLUMNS.index(diff_col)
            stamp = pd.Timestamp(ts[pos], tz="UTC").isoformat()
            raise DataError(
                f"{_where(df, pos - 1)} and {_where(df, pos)}: duplicate timestamp {stamp} "
                f"with different values (column '{diff_col}': {float(vals[pos - 1, j])!r} vs "
                f"{float(vals[pos, j])!r}, {int(conflict.sum())} such rows); "
                f"{option_hint('--duplicates first|last', 'to keep one', import_options)}"
            )
    for s, n in pd.Series(sym[exact]).value_counts().items():
        log.symbols[str(s)].exact_duplicates_dropped += int(n)
    df = df.loc[~exact]
    if conflict.any():
        keep = "first" if options.duplicates == "first" else "last"
        before = len(df)
        counts = df.loc[df.duplicated(["symbol", "timestamp"], keep=keep), "symbol"].value_counts()
        df = df.drop_duplicates(["symbol", "timestamp"], keep=keep)
        for s, n in counts.items():
            log.symbols[str(s)].conflicting_duplicates_resolved += int(n)
        assert before - len(df) == int(counts.sum())
    return df


def _infer_interval(df: pd.DataFrame, options: ImportOptions, import_options: bool) -> int:
    """The bar interval: the most common spacing in every (file, symbol), which must agree."""
    found: dict[str, int] = {}  # one entry per (file, symbol): a file of several symbols may mix intervals too
    symbols_per_file = df.groupby("_file", sort=False)["symbol"].nunique()
    for (fname, sym), g in df.groupby(["_file", "symbol"], sort=False):
        ts = np.unique(ts_ns(g["timestamp"]))
        if len(ts) < 2:
            continue
        d = np.diff(ts) // 1_000_000_000
        vals, counts = np.unique(d, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        mode = int(vals[order[0]])
        found[f"{fname} ({sym})" if symbols_per_file[fname] > 1 else str(fname)] = mode
        if options.interval is None and len(vals) > 1:
            second = int(vals[order[1]])
            if counts[order[1]] >= max(3, 0.2 * len(d)):
                raise DataError(
                    f"{fname}: mixed intervals: {counts[order[0]]} steps of "
                    f"{format_interval(mode)} and {counts[order[1]]} of "
                    f"{format_interval(second)}; "
                    f"{option_hint('--interval', 'if the larger steps are gaps', import_options)}"
                )
    if options.interval is not None:
        want = parse_interval(options.interval)
        for fname, got in found.items():
            if got % want != 0:
                raise DataError(
                    f"{fname}: bars are {format_interval(got)} apart, not a multiple of "
                    f"--interval {format_interval(want)} (mixed intervals)"
                )
            if got != want:
                raise DataError(
                    f"{fname}: bars are mostly {format_interval(got)} apart, "
                    f"but --interval is {format_interval(want)}"
                )
        return want
    if not found:
        raise DataError("cannot infer the interval from fewer than 2 bars; "
                        f"{option_hint('--interval', 'to state it', import_options)}")
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{f}: {format_interval(s)}" for f, s in found.items())
        raise DataError(f"mixed intervals across files or symbols ({listing})")
    return next(iter(found.values()))


def _check_grid(df: pd.DataFrame, interval: int) -> None:
    """Every step within a symbol must be a whole number of intervals (else: mixed intervals)."""
    ts = ts_ns(df["timestamp"])
    sym = df["symbol"].to_numpy()
    step = np.diff(ts)
    same = sym[1:] == sym[:-1]
    off = same & (step % (interval * 1_000_000_000) != 0)
    if off.any():
        i = int(np.argmax(off)) + 1
        prev = pd.Timestamp(ts[i - 1], tz="UTC").isoformat()
        cur = pd.Timestamp(ts[i], tz="UTC").isoformat()
        gap = pd.Timedelta(int(step[i - 1]), unit="ns")
        raise DataError(
            f"{_where(df, i)}, column 'timestamp': bar {cur} is {gap} after the previous bar "
            f"{prev}, not a multiple of the {format_interval(interval)} interval (mixed intervals "
            "or timestamps off the grid)"
        )


def _repair_ohlc(df: pd.DataFrame, options: ImportOptions, log: ImportLog) -> pd.DataFrame:
    """With ``repair_ohlc``, clamp high/low to contain open and close (counted per symbol)."""
    if not options.repair_ohlc:
        return df
    o, h, l, c = (df[k].to_numpy() for k in PRICE_COLUMNS)
    hi = np.maximum.reduce([o, h, c])
    lo = np.minimum.reduce([o, l, c])
    changed = (hi != h) | (lo != l)
    if changed.any():
        df = df.copy()
        df["high"] = hi
        df["low"] = lo
        for s, n in df.loc[changed, "symbol"].value_counts().items():
            log.symbols[str(s)].ohlc_repaired += int(n)
    return df


def _check_fill_size(df: pd.DataFrame, interval: int) -> None:
    """Refuse a fill that would blow the series up (FILL_MAX_FACTOR, FILL_MAX_BARS), naming the
    largest gap: checked by arithmetic before any bar is created."""
    step = interval * 1_000_000_000
    for sym, g in df.groupby("symbol", sort=False):
        ts = ts_ns(g["timestamp"])
        total = int((ts[-1] - ts[0]) // step) + 1
        if total <= min(FILL_MAX_FACTOR * len(g), FILL_MAX_BARS):
            continue
        missing = np.diff(ts) // step - 1
        j = int(np.argmax(missing))
        a = pd.Timestamp(int(ts[j]), tz="UTC").isoformat()
        b = pd.Timestamp(int(ts[j + 1]), tz="UTC").isoformat()
        raise DataError(
            f"{sym}: --fill-gaps forward would turn {len(g):,} bars into {total:,} (at most {FILL_MAX_FACTOR}x "
            f"the input rows and {FILL_MAX_BARS:,} bars are filled); the largest gap is {int(missing[j]):,} "
            f"missing bars between {a} ({_where(g, j)}) and {b} ({_where(g, j + 1)}); check those timestamps "
            "or import without --fill-gaps"
        )


def _fill_forward(df: pd.DataFrame, interval: int, log: ImportLog) -> pd.DataFrame:
    """Insert missing bars as flat bars at the previous close with zero volume, marked filled."""
    _check_fill_size(df, interval)
    parts = []
    step = pd.Timedelta(seconds=interval)
    for sym, g in df.groupby("symbol", sort=False):
        full = pd.date_range(g["timestamp"].iat[0], g["timestamp"].iat[-1], freq=step)
        if len(full) == len(g):
            parts.append(g)
            continue
        r = g.set_index("timestamp").reindex(full)
        filled = r["close"].isna().to_numpy()
        close = r["close"].ffill()
        for col in ("open", "high", "low"):
            r[col] = r[col].where(~filled, close)
        r["close"] = close
        r["volume"] = r["volume"].where(~filled, 0.0)
        r["symbol"] = sym
        r["filled"] = filled
        r["_file"] = r["_file"].where(~filled, "<filled>")
        r["_line"] = r["_line"].where(~filled, 0)
        r.index.name = "timestamp"
        parts.append(r.reset_index())
        log.symbols[str(sym)].filled_bars += int(filled.sum())
    return pd.concat(parts, ignore_index=True)


def build_canonical(raws: Sequence[pd.DataFrame], options: ImportOptions | None = None, *,
                    import_options: bool = True) -> tuple[pd.DataFrame, ImportLog]:
    """Validate, sort, de-duplicate and grid-check raw frames from the readers.

    Returns the canonical frame and the log of everything done to it. Raises ``DataError``
    naming file, line and column for the first defect not covered by an option; its hint names
    the option (``import_options``: the command has import's options) or says to import with it
    first (see ``himari.data.readers.option_hint``).
    """
    options = options or ImportOptions()
    if options.fill_gaps not in ("none", "forward"):
        raise DataError(f"fill_gaps: expected 'none' or 'forward', got {options.fill_gaps!r}")
    if options.duplicates not in ("error", "first", "last"):
        raise DataError(f"duplicates: expected 'error', 'first' or 'last', got {options.duplicates!r}")
    log = ImportLog()
    frames = [r for r in raws if len(r)]
    if not frames:
        raise DataError("no bars: every input is empty")
    raw = pd.concat(frames, ignore_index=True)
    raw["symbol"] = raw["symbol"].astype(str)
    for sym, g in raw.groupby("symbol", sort=False):
        log.symbols[str(sym)] = SymbolLog(input_rows=len(g), files=list(dict.fromkeys(g["_file"].astype(str))))
    raw = _check_values(raw, options, log, import_options)
    if raw.empty:
        raise DataError("no bars left after dropping invalid rows")
    _count_unsorted(raw, log)
    df = raw.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    df = _resolve_duplicates(df, options, log, import_options).reset_index(drop=True)
    interval = _infer_interval(df, options, import_options)
    _check_grid(df, interval)
    df = _repair_ohlc(df, options, log)
    df["filled"] = False
    if options.fill_gaps == "forward":
        df = _fill_forward(df, interval, log)
    log.interval_seconds = interval
    out = df[list(CANONICAL_COLUMNS)].reset_index(drop=True)
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    for col in VALUE_COLUMNS:
        out[col] = out[col].astype(np.float64)
    out["filled"] = out["filled"].astype(bool)
    return out, log


def validate_canonical(df: pd.DataFrame, where: str = "bars") -> None:
    """Cheap re-check of a frame read back from Parquet (someone may have edited the file)."""
    missing = [c for c in CANONICAL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise DataError(f"{where}: no bars")
    vals = df[list(VALUE_COLUMNS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    bad[:, :4] |= vals[:, :4] <= 0
    bad[:, 4] |= vals[:, 4] < 0
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{where}: row {i}, column '{VALUE_COLUMNS[j]}': invalid value {float(vals[i, j])!r}")
    high_below_low = vals[:, VALUE_COLUMNS.index("high")] < vals[:, VALUE_COLUMNS.index("low")]
    if high_below_low.any():  # import refuses it; the range features would go negative
        raise DataError(f"{where}: row {int(np.argmax(high_below_low))}, column 'high': high is below low")
    sym = df["symbol"].to_numpy()
    blank = blank_symbol_rows(df["symbol"])
    if blank is not None:
        raise DataError(f"{where}: row {int(np.argmax(blank))}, column 'symbol': the symbol is missing or blank")
    times = df["timestamp"].astype("datetime64[ns, UTC]")
    # the range import enforces: a file written by an older himari or edited since must not pass
    outside = outside_supported_range(times)
    if outside.any():
        i = int(np.argmax(outside))
        raise DataError(f"{where}: row {i}, column 'timestamp': {times.iat[i].isoformat()} is outside the "
                        f"supported range {SUPPORTED_RANGE_TEXT}")
    ts = ts_ns(df["timestamp"])
    same = sym[1:] == sym[:-1]
    if (same & (ts[1:] <= ts[:-1])).any():
        i = int(np.argmax(same & (ts[1:] <= ts[:-1]))) + 1
        raise DataError(f"{where}: row {i}, column 'timestamp': not sorted or duplicated")


def symbols_of(df: pd.DataFrame) -> list[str]:
    """Symbols in file order (the canonical frame is sorted by symbol)."""
    return [str(s) for s in pd.unique(df["symbol"].to_numpy())]


def write_bars(df: pd.DataFrame, path: str | Path, interval_seconds: int, extra: dict[str, Any] | None = None,
               *, report_file: tuple[str | Path, str] | None = None) -> None:
    """Write the canonical frame as Parquet (atomically) with interval and symbols in its metadata,
    and ``report_file`` (its path and text: the data report beside it) with it: both are written
    before either is moved into place, so a failure (a full disk) leaves neither."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "interval": format_interval(interval_seconds),
        "interval_seconds": interval_seconds,
        "symbols": symbols_of(df),
        **(extra or {}),
    }
    table = pa.Table.from_pandas(df[list(CANONICAL_COLUMNS)], preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[METADATA_KEY] = json.dumps(meta, default=str).encode()
    table = table.replace_schema_metadata(schema_meta)
    if report_file is None:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return
    report_path, report_text = report_file
    with atomic_paths(path, report_path) as (bars_tmp, report_tmp):
        pq.write_table(table, bars_tmp, compression="zstd")
        report_tmp.write_text(report_text, encoding="utf-8")


def read_bars_metadata(path: str | Path) -> dict[str, Any] | None:
    """The himari metadata of a bars Parquet file, or None when it has none."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        return None
    return json.loads(meta[METADATA_KEY])
