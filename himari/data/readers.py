"""Readers for the bar formats people actually have, each producing a *raw* frame.

A raw frame has ``timestamp`` (UTC), ``open``, ``high``, ``low``, ``close``, ``volume``,
``symbol`` and two provenance columns, ``_file`` and ``_line``, so that ``himari.data.frame``
can name the file and line of any defect it finds later. Readers only parse: they reject what
they cannot parse (missing columns, unparseable numbers or timestamps, empty or truncated files)
and leave value checks (NaN prices, high < low, duplicates, gaps) to the frame module.

Formats (``format=``):

- ``csv``: generic OHLCV CSV, with or without a header; timestamps as ISO-8601 or unix
  seconds, milliseconds, microseconds or nanoseconds (decided per value by magnitude).
- ``binance``: Binance public-data kline CSV, 12 columns, normally without a header; open time
  in milliseconds (spot before 2025) or microseconds (spot since 2025).
- ``freqtrade``: freqtrade OHLCV caches, ``.feather`` or ``.json`` (list of
  ``[ms, o, h, l, c, v]`` rows, or records).
- ``parquet``: any Parquet file with OHLCV columns (including himari's own bars files).

Gzip (``.gz``) and single-member zip files are read directly; the format is sniffed from the
name and the first line when ``format="auto"``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from himari.errors import DataError

FORMATS = ("auto", "csv", "binance", "freqtrade", "parquet")

BINANCE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
    "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)
_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "time", "date", "datetime", "open_time", "opentime", "ts",
                  "unix", "time_open", "open time", "date_time"),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price"),
    "volume": ("volume", "vol", "v", "base_volume", "volume_base"),
    "symbol": ("symbol", "pair", "ticker", "asset"),
}
_REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
_TEXT_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
"""Names that are read as Parquet (a bars file himari writes is always named .parquet)."""
_STRIP_SUFFIXES = (".gz", ".zip", ".csv", ".txt", ".tsv", ".json", ".feather", ".ftr", ".arrow", ".parquet", ".pq")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, recorded so a prepared data set names exactly what it came from."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def infer_symbol(path: str | Path) -> str:
    """Symbol from a file name: ``BTC_USDT-5m.feather`` and ``BTC-USDT.csv`` -> BTC/USDT,
    ``BTCUSDT-5m-2023-01.zip``, ``btcusdt_5m.csv.gz`` and ``btcusdt_2023.csv`` -> BTCUSDT."""
    name = Path(path).name
    changed = True
    while changed:
        changed = False
        for suf in _STRIP_SUFFIXES:
            if name.lower().endswith(suf):
                name = name[: -len(suf)]
                changed = True
    name = re.sub(r"[-_.]\d+(s|m|min|h|d|w|M|mo)(?![A-Za-z]).*$", "", name)  # an interval and what follows
    name = re.sub(r"([-_.]\d{4}([-_.]\d{1,2}){0,2})+$", "", name)  # a trailing date: 2023, 2023-01, 2023_01_31
    # Only the interval and date parts are dropped: cutting more would give BTC-USD.csv and
    # BTC-EUR.csv one symbol, and their bars would be joined into one series.
    parts = re.split(r"[-_]", name)
    if len(parts) == 2 and all(p.isalnum() and not p.isdigit() for p in parts):
        return "/".join(p.upper() for p in parts)
    return name.upper() or "UNKNOWN"


def _compression(path: Path) -> str | None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"PK\x03\x04":
        return "zip"
    return None


def _open_text(path: Path, compression: str | None) -> io.TextIOBase:
    if compression == "gzip":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if compression == "zip":
        zf = zipfile.ZipFile(path)
        members = [n for n in zf.namelist() if not n.endswith("/")]
        if len(members) != 1:
            raise DataError(f"{path}: a zip must hold exactly one file, found {len(members)}")
        return io.TextIOWrapper(zf.open(members[0]), encoding="utf-8")
    return open(path, encoding="utf-8")


def _first_line(path: Path, compression: str | None) -> str:
    try:
        with _open_text(path, compression) as fh:
            for line in fh:
                if line.strip():
                    return line
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({_describe(e)})") from e
    raise DataError(f"{path}: file is empty")


def _describe(e: BaseException) -> str:
    if isinstance(e, EOFError):
        return f"truncated or corrupt compressed file: {e}"
    if isinstance(e, (zlib.error, gzip.BadGzipFile, zipfile.BadZipFile)):
        return f"corrupt compressed file: {e}"
    return f"{type(e).__name__}: {e}"


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d])


def detect_format(path: str | Path) -> str:
    """Guess the format from the name, then from the first line of text files."""
    p = Path(path)
    name = p.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if base.endswith((".feather", ".ftr", ".arrow", ".json")):
        return "freqtrade"
    comp = _compression(p)
    line = _first_line(p, comp)
    toks = [t.strip().strip('"').lower() for t in line.rstrip("\r\n").split(_delimiter(line))]
    if len(toks) == 12 and (_is_number(toks[0]) or toks[0] == "open_time"):
        return "binance"
    return "csv"


EARLIEST_TIME = pd.Timestamp("1900-01-01", tz="UTC")
"""No bar may open before this (older values are typos or placeholders, and pandas' nanosecond
range ends in 1677, where time arithmetic overflows)."""
LATEST_TIME = pd.Timestamp("2200-01-01", tz="UTC")
"""Every bar must open before this (the nanosecond range ends in 2262)."""
EARLIEST_UNIX_TIME = pd.Timestamp("1971-01-01", tz="UTC")
"""A unix *number* must be at least this: negative values, 0 and small counters (a row index
read as seconds) are not bar times. Older dates can be given as ISO-8601."""


SUPPORTED_RANGE_TEXT = f"{EARLIEST_TIME:%Y-%m-%d} .. {LATEST_TIME - pd.Timedelta(days=1):%Y-%m-%d}"
"""The supported range of bar open times as messages print it."""


def in_supported_range(ts: pd.Timestamp) -> bool:
    """Whether a bar may open at ``ts`` (UTC): the one test behind import, report and synth."""
    return bool(EARLIEST_TIME <= ts < LATEST_TIME)


def option_hint(option: str, purpose: str, import_options: bool = True) -> str:
    """How an error asks for one of import's options (``--interval``, ``--drop-invalid`` ...).

    ``import_options`` says whether the running command has them (``import``, ``report``).
    Commands that read other files with import's strict defaults (``prepare``, ``--data`` of
    a run) do not, so their errors say to import the file with the option first.
    """
    if import_options:
        return f"pass {option} {purpose}"
    return f"run himari data import with {option} {purpose}, then use the bars file it writes"


def is_blank(value: Any) -> bool:
    """A missing (None, NaN, NA) or whitespace-only symbol value."""
    if value is None or (pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)):
        return True
    return not str(value).strip()


def blank_symbol_rows(col: pd.Series) -> np.ndarray | None:
    """The rows of a symbol column whose value is missing or blank, as a boolean mask, or None when
    there is none. The readers and the check of a stored bars file share it; the per-row mask is
    built only on that error path (the distinct values are checked first)."""
    if not any(is_blank(v) for v in pd.unique(col)):
        return None
    return col.isna().to_numpy() | (col.astype(str).str.strip() == "").to_numpy()


def check_symbol(symbol: str | None, option: str = "--symbol") -> None:
    """A symbol given by the user must hold a visible character: a blank one would name no
    series in the reports, the prepared segments or ``--symbol`` filters."""
    if symbol is not None and not str(symbol).strip():
        raise DataError(f"{option}: the symbol is empty; give a name such as BTCUSDT")


def _iso(ts: pd.Timestamp | None) -> str:
    return "out of range" if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_to_timestamp(seconds: float) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(int(seconds), unit="s", tz="UTC")
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return None


def _value(col: pd.Series, i: int) -> Any:
    """The i-th raw value for a message (a plain Python value, not a numpy scalar)."""
    v = col.iloc[i]
    return v.item() if isinstance(v, np.generic) else v


def outside_supported_range(ts: pd.Series) -> np.ndarray:
    """The rows of UTC timestamps (any resolution) outside [EARLIEST_TIME, LATEST_TIME), as a
    boolean mask: the test of a reader's times and of a stored bars file's alike."""
    return ((ts < EARLIEST_TIME) | (ts >= LATEST_TIME)).to_numpy()


def _check_time_range(ts: pd.Series, col: pd.Series, where: str, lines: np.ndarray, unit: str) -> None:
    """Parsed timestamps (UTC, any resolution) must lie in [EARLIEST_TIME, LATEST_TIME)."""
    bad = outside_supported_range(ts)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: {unit} {int(lines[i])}, column 'timestamp': {_value(col, i)!r} is outside the supported "
            f"range {SUPPORTED_RANGE_TEXT}"
        )


def _parse_timestamps(col: pd.Series, where: str, lines: np.ndarray, unit: str = "line") -> pd.Series:
    """Timestamps to UTC ns: datetimes, ISO-8601 strings, or unix s/ms/us/ns by magnitude.

    Values outside 1900-01-01 .. 2199-12-31, and unix numbers before 1971-01-01, are errors
    naming the file, line and column.
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        ts = col.dt.tz_convert("UTC")
        _check_time_range(ts, col, where, lines, unit)
        return ts.astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(col.dtype):
        ts = col.dt.tz_localize("UTC")
        _check_time_range(ts, col, where, lines, unit)
        return ts.astype("datetime64[ns, UTC]")
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            col = num
        else:
            try:
                out = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
            except (ValueError, OverflowError) as e:  # OutOfBoundsDatetime is a ValueError
                raise DataError(f"{where}: column 'timestamp': cannot parse the timestamps ({e})") from e
            bad = out.isna().to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(
                    f"{where}: {unit} {int(lines[i])}, column 'timestamp': cannot parse "
                    f"{col.iloc[i]!r} as ISO-8601 or unix time"
                )
            _check_time_range(out, col, where, lines, unit)
            return out.astype("datetime64[ns, UTC]")
    x = col.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: {unit} {int(lines[i])}, column 'timestamp': missing or not a number")
    ax = np.abs(x)
    factor = np.where(ax < 1e11, 10**9, np.where(ax < 1e14, 10**6, np.where(ax < 1e17, 10**3, 1))).astype(np.int64)
    seconds = x * (factor / 1e9)
    lo, hi = EARLIEST_UNIX_TIME.value / 1e9, LATEST_TIME.value / 1e9
    bad = (seconds < lo) | (seconds >= hi)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: {unit} {int(lines[i])}, column 'timestamp': unix time {_value(col, i)!r} "
            f"({_iso(_seconds_to_timestamp(seconds[i]))}) is outside {EARLIEST_UNIX_TIME:%Y-%m-%d} .. "
            f"{LATEST_TIME - pd.Timedelta(days=1):%Y-%m-%d}; a negative, zero or small number is not a bar time "
            "(write dates before 1971 as ISO-8601)"
        )
    if np.all(x == np.round(x)):
        ns = col.to_numpy().astype(np.int64) * factor
    else:
        ns = np.round(x * factor).astype(np.int64)
    return pd.Series(pd.to_datetime(ns, unit="ns", utc=True), index=col.index).astype("datetime64[ns, UTC]")


def _to_float(col: pd.Series, name: str, where: str, lines: np.ndarray, unit: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64)
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy() & col.notna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: {unit} {int(lines[i])}, column '{name}': not a number ({col.iloc[i]!r})")
    return num.to_numpy(dtype=np.float64)


def _map_columns(columns: Sequence[Any], where: str) -> dict[str, str]:
    """Map canonical names to the file's column names through the alias table."""
    lower = {str(c).strip().lower(): c for c in columns}
    mapping: dict[str, str] = {}
    for canon, aliases in _ALIASES.items():
        for a in aliases:
            if a in lower:
                mapping[canon] = lower[a]
                break
        if canon == "volume" and canon not in mapping:
            vol = [c for k, c in lower.items() if k.startswith("volume")]
            if vol:
                mapping[canon] = vol[0]
    missing = [c for c in _REQUIRED if c not in mapping]
    if missing:
        found = ", ".join(repr(str(c)) for c in columns)
        raise DataError(f"{where}: missing column(s) {', '.join(repr(m) for m in missing)} (found: {found})")
    return mapping


def _symbols(col: pd.Series, name: str, where: str, lines: np.ndarray, unit: str,
             import_options: bool) -> np.ndarray:
    """A symbol column as strings; a missing or blank value is an error naming file, line and column
    (it would otherwise become a series of its own, named ``nan`` or nothing)."""
    blank = blank_symbol_rows(col)
    if blank is not None:
        i = int(np.argmax(blank))
        more = int(blank.sum()) - 1
        extra = f" ({more} more such rows)" if more else ""
        raise DataError(f"{where}: {unit} {int(lines[i])}, column '{name}': the symbol is missing or blank{extra}; "
                        f"fill it in, or {option_hint('--symbol', 'to give every row one symbol', import_options)}")
    return col.astype(str).to_numpy()


def _finish(df: pd.DataFrame, mapping: dict[str, str], path: Path, symbol: str | None,
            lines: np.ndarray, unit: str, import_options: bool) -> pd.DataFrame:
    """Common tail of every reader: typed columns, symbol, provenance."""
    where = str(path)
    out = pd.DataFrame(index=df.index)
    out["timestamp"] = _parse_timestamps(df[mapping["timestamp"]], where, lines, unit)
    for c in ("open", "high", "low", "close", "volume"):
        out[c] = _to_float(df[mapping[c]], c, where, lines, unit)
    if symbol is not None:
        out["symbol"] = symbol
    elif "symbol" in mapping:
        out["symbol"] = _symbols(df[mapping["symbol"]], mapping["symbol"], where, lines, unit, import_options)
    else:
        out["symbol"] = infer_symbol(path)
    out["_file"] = path.name
    out["_line"] = lines
    return out.reset_index(drop=True)


def _read_csv(path: Path, fmt: str, symbol: str | None, import_options: bool) -> pd.DataFrame:
    comp = _compression(path)
    line = _first_line(path, comp)
    sep = _delimiter(line)
    toks = [t.strip().strip('"') for t in line.rstrip("\r\n").split(sep)]
    has_header = not all(_is_number(t) for t in toks[:1]) if toks else False
    if fmt == "binance":
        if len(toks) != 12:
            raise DataError(f"{path}: line 1: expected the 12 Binance kline columns, found {len(toks)}")
        names: list[str] | None = list(BINANCE_COLUMNS)
        header: int | None = 0 if has_header else None
    elif has_header:
        names, header = None, 0
    else:
        if len(toks) < 6:
            raise DataError(
                f"{path}: line 1: no header and {len(toks)} columns; expected at least "
                "timestamp, open, high, low, close, volume"
            )
        names = ["timestamp", "open", "high", "low", "close", "volume"] + [f"extra_{i}" for i in range(len(toks) - 6)]
        header = None
    try:
        df = pd.read_csv(path, sep=sep, header=header, names=names, compression=comp,
                         skip_blank_lines=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: file is empty") from e
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: malformed CSV ({str(e).strip()})") from e
    except (EOFError, OSError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({_describe(e)})") from e
    offset = 2 if header == 0 else 1
    lines = np.arange(len(df), dtype=np.int64) + offset
    blank = df.isna().all(axis=1).to_numpy()
    if blank.any():
        # trailing blank lines are harmless; a blank line inside the data is a defect
        last = len(blank) - int(np.argmax(~blank[::-1])) if (~blank).any() else 0
        inner = blank[:last]
        if inner.any():
            raise DataError(f"{path}: line {int(lines[int(np.argmax(inner))])}: empty row")
        df, lines = df.iloc[:last], lines[:last]
    if df.empty:
        raise DataError(f"{path}: no data rows")
    if fmt == "binance":
        mapping = {c: c for c in _REQUIRED}
        mapping["timestamp"] = "open_time"
    else:
        mapping = _map_columns(df.columns, str(path))
    return _finish(df, mapping, path, symbol, lines, "line", import_options)


def _read_freqtrade(path: Path, symbol: str | None, import_options: bool) -> pd.DataFrame:
    name = path.name.lower()
    base = name[:-3] if name.endswith(".gz") else name
    try:
        if base.endswith(".json"):
            comp = _compression(path)
            with _open_text(path, comp) as fh:
                text = fh.read()
            if not text.strip():
                raise DataError(f"{path}: file is empty")
            data = json.loads(text)
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a JSON list of candles, got {type(data).__name__}")
            if data and isinstance(data[0], dict):
                df = pd.DataFrame.from_records(data)
            else:
                widths = {len(r) for r in data[:1000] if isinstance(r, list)}
                if data and (not widths or min(widths) < 6):
                    raise DataError(f"{path}: expected candles [time, open, high, low, close, volume]")
                df = pd.DataFrame([r[:6] for r in data], columns=["date", "open", "high", "low", "close", "volume"])
        else:
            df = pd.read_feather(path)
    except DataError:
        raise
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except Exception as e:  # pyarrow raises several types for corrupt or truncated files
        raise DataError(f"{path}: cannot read freqtrade cache ({_describe(e)})") from e
    if df.empty:
        raise DataError(f"{path}: no data rows")
    df = df.reset_index(drop=True)
    lines = np.arange(1, len(df) + 1, dtype=np.int64)
    return _finish(df, _map_columns(df.columns, str(path)), path, symbol, lines, "row", import_options)


def _read_parquet(path: Path, symbol: str | None, import_options: bool) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as e:
        raise DataError(f"{path}: cannot read Parquet ({_describe(e)})") from e
    if isinstance(df.index, pd.DatetimeIndex):
        named = {str(c).strip().lower() for c in df.columns}
        if df.index.name is None and not named & set(_ALIASES["timestamp"]):
            df.index.name = "timestamp"  # pandas writes a resampled frame's index unnamed: it is the time
        if df.index.name in df.columns:
            raise DataError(f"{path}: both the index and a column are named {df.index.name!r}; "
                            "rename one so the time is unambiguous")
        df = df.reset_index()
    if df.empty:
        raise DataError(f"{path}: no data rows")
    df = df.reset_index(drop=True)
    lines = np.arange(1, len(df) + 1, dtype=np.int64)
    return _finish(df, _map_columns(df.columns, str(path)), path, symbol, lines, "row", import_options)


def read_source(path: str | Path, format: str = "auto", symbol: str | None = None, *,
                import_options: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read one file into a raw frame; returns it with a source record (path, format, rows, sha256).

    ``import_options``: whether the running command has import's options, which decides how an
    error phrases its hint (see ``option_hint``).
    """
    p = Path(path)
    if format not in FORMATS:
        raise DataError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    check_symbol(symbol)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty")
    fmt = detect_format(p) if format == "auto" else format
    if fmt in ("csv", "binance"):
        raw = _read_csv(p, fmt, symbol, import_options)
    elif fmt == "freqtrade":
        raw = _read_freqtrade(p, symbol, import_options)
    else:
        raw = _read_parquet(p, symbol, import_options)
    info = {"path": str(p.resolve()), "name": p.name, "format": fmt, "rows": len(raw), "sha256": file_sha256(p)}
    return raw, info


def is_line_based(file_name: str) -> bool:
    """Whether positions in this file are text lines (CSV) rather than record numbers."""
    n = file_name.lower()
    for suf in (".gz", ".zip"):
        if n.endswith(suf):
            n = n[: -len(suf)]
    return n.endswith(_TEXT_SUFFIXES) or not n.endswith((".json", ".feather", ".ftr", ".arrow", ".parquet", ".pq"))
