"""The data report: what is in a bars file and what the import had to do to it.

It is printed after every import (rich table) and stored as JSON next to the output, so the
state of the data a model was trained on is never a matter of memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from himari.data.frame import ImportLog, SymbolLog, symbols_of, ts_ns
from himari.data.intervals import format_interval

EXTREME_MOVE_SIGMAS = 10.0
"""A bar's close-to-close log return is 'extreme' beyond this many robust sigmas (1.4826 MAD)."""


@dataclass
class SymbolReport:
    """Facts about one symbol's bars (all counts are bars)."""

    symbol: str
    rows: int
    start: str
    end: str
    span_days: float
    interval: str
    expected_rows: int
    gaps: int
    missing_bars: int
    longest_gap_bars: int
    longest_gap_after: str | None
    duplicates_dropped: int
    conflicting_duplicates_resolved: int
    unsorted_rows: int
    zero_volume_bars: int
    ohlc_inconsistent: int
    ohlc_repaired: int
    invalid_rows_dropped: int
    filled_bars: int
    extreme_moves: int
    largest_move: float
    largest_move_at: str | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class DataReport:
    """Per-symbol reports plus the sources the bars came from."""

    interval: str
    symbols: list[SymbolReport]
    sources: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"interval": self.interval, "symbols": [asdict(s) for s in self.symbols], "sources": self.sources}

    def json_text(self) -> str:
        """The ``<name>.report.json`` file's text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write_json(self, path: str | Path) -> None:
        from himari.data.atomic import write_text_atomic

        write_text_atomic(path, self.json_text())

    def render(self, console: Any = None, title: str = "Data report") -> None:
        """Print the report as a rich table (one column per symbol)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title=title, show_lines=False)
        table.add_column("")
        for s in self.symbols:
            table.add_column(s.symbol, justify="right")

        def row(label: str, fn: Any, warn: Any = None) -> None:
            cells = []
            for s in self.symbols:
                text = str(fn(s))
                if warn is not None and warn(s):
                    text = f"[yellow]{text}[/yellow]"
                cells.append(text)
            table.add_row(label, *cells)

        row("rows", lambda s: f"{s.rows:,}")
        row("span", lambda s: f"{s.start[:16]} .. {s.end[:16]} ({s.span_days:.1f} d)")
        row("interval", lambda s: s.interval)
        row("gaps (missing bars)", lambda s: f"{s.gaps} ({s.missing_bars})", lambda s: s.gaps > 0)
        row("longest gap", lambda s: f"{s.longest_gap_bars} bars after {s.longest_gap_after[:16]}" if s.longest_gap_after else "-")
        row("filled bars", lambda s: s.filled_bars, lambda s: s.filled_bars > 0)
        row("duplicates dropped", lambda s: s.duplicates_dropped + s.conflicting_duplicates_resolved,
            lambda s: s.conflicting_duplicates_resolved > 0)
        row("unsorted rows (sorted)", lambda s: s.unsorted_rows, lambda s: s.unsorted_rows > 0)
        row("invalid rows dropped", lambda s: s.invalid_rows_dropped, lambda s: s.invalid_rows_dropped > 0)
        row("zero-volume bars", lambda s: s.zero_volume_bars, lambda s: s.zero_volume_bars > 0)
        row("OHLC inconsistent", lambda s: s.ohlc_inconsistent, lambda s: s.ohlc_inconsistent > 0)
        row("OHLC repaired", lambda s: s.ohlc_repaired, lambda s: s.ohlc_repaired > 0)
        row(f"extreme moves (>{EXTREME_MOVE_SIGMAS:g} sigma)", lambda s: s.extreme_moves)
        row("largest move", lambda s: f"{s.largest_move:+.4f} at {(s.largest_move_at or '-')[:16]}")
        console.print(table)
        for s in self.symbols:
            for w in s.warnings:
                console.print(f"[yellow]warning[/yellow] {s.symbol}: {w}")


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat().replace("+00:00", "Z")


def symbol_report(df: pd.DataFrame, symbol: str, interval_seconds: int, log: SymbolLog | None = None) -> SymbolReport:
    """Report on one symbol's canonical bars."""
    log = log or SymbolLog()
    ts = ts_ns(df["timestamp"])
    o, h, l, c, v = (df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
    step = interval_seconds * 1_000_000_000
    d = np.diff(ts) // step
    gap_mask = d > 1
    missing = int((d[gap_mask] - 1).sum())
    longest = int(d.max() - 1) if gap_mask.any() else 0
    longest_after = _iso(ts[int(np.argmax(d))]) if gap_mask.any() else None
    r = np.diff(np.log(c))
    if len(r):
        mad = float(np.median(np.abs(r - np.median(r)))) * 1.4826
        thr = EXTREME_MOVE_SIGMAS * mad if mad > 0 else np.inf
        extreme = int((np.abs(r) > thr).sum())
        k = int(np.argmax(np.abs(r)))
        largest, largest_at = float(r[k]), _iso(ts[k + 1])
    else:
        extreme, largest, largest_at = 0, 0.0, None
    inconsistent = int(((h < np.maximum(o, c)) | (l > np.minimum(o, c))).sum())
    zero_vol = int((v == 0).sum())
    filled = int(df["filled"].sum()) if "filled" in df else 0
    warnings = []
    if gap_mask.any() and filled == 0:
        warnings.append(f"{int(gap_mask.sum())} gap(s), {missing} missing bars (not filled; --fill-gaps forward fills them)")
    if inconsistent:
        warnings.append(f"{inconsistent} bars with high < max(open, close) or low > min(open, close) (--repair-ohlc clamps them)")
    if log.unsorted_rows:
        warnings.append(f"input was not sorted by time; {log.unsorted_rows} rows were out of order and have been sorted")
    if log.conflicting_duplicates_resolved:
        warnings.append(f"{log.conflicting_duplicates_resolved} conflicting duplicate timestamps resolved by policy")
    if log.invalid_rows_dropped:
        warnings.append(f"{log.invalid_rows_dropped} invalid rows dropped (--drop-invalid)")
    if filled:
        warnings.append(f"{filled} bars inserted by --fill-gaps forward (column 'filled' marks them)")
    return SymbolReport(
        symbol=symbol, rows=len(df), start=_iso(ts[0]), end=_iso(ts[-1]),
        span_days=float((ts[-1] - ts[0]) / 86400e9), interval=format_interval(interval_seconds),
        expected_rows=int((ts[-1] - ts[0]) // step + 1), gaps=int(gap_mask.sum()), missing_bars=missing,
        longest_gap_bars=longest, longest_gap_after=longest_after,
        duplicates_dropped=log.exact_duplicates_dropped,
        conflicting_duplicates_resolved=log.conflicting_duplicates_resolved,
        unsorted_rows=log.unsorted_rows, zero_volume_bars=zero_vol, ohlc_inconsistent=inconsistent,
        ohlc_repaired=log.ohlc_repaired, invalid_rows_dropped=log.invalid_rows_dropped, filled_bars=filled,
        extreme_moves=extreme, largest_move=largest, largest_move_at=largest_at, warnings=warnings,
    )


def build_report(df: pd.DataFrame, interval_seconds: int, log: ImportLog | None = None) -> DataReport:
    """Report on a canonical frame (all symbols)."""
    log = log or ImportLog(interval_seconds=interval_seconds)
    reports = []
    for sym in symbols_of(df):
        part = df[df["symbol"] == sym]
        reports.append(symbol_report(part, sym, interval_seconds, log.symbols.get(sym)))
    return DataReport(interval=format_interval(interval_seconds), symbols=reports, sources=list(log.sources))


def report_path_for(out: str | Path) -> Path:
    """``bars.parquet`` -> ``bars.report.json`` (stored next to the output)."""
    p = Path(out)
    stem = p.name[: -len(".parquet")] if p.name.endswith(".parquet") else p.name
    return p.with_name(stem + ".report.json")
