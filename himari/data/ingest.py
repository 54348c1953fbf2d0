"""Import: files in, one canonical bars Parquet (plus its data report) out.

``load_bars`` does the work in memory; ``import_bars`` adds the atomic writes; ``read_bars``
opens whatever a later stage is given (a himari bars file, or any raw format, imported on the fly
with the default strict options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from himari.data.frame import (
    FORMAT_NAME,
    ImportLog,
    ImportOptions,
    build_canonical,
    read_bars_metadata,
    validate_canonical,
    write_bars,
)
from himari.data.readers import PARQUET_SUFFIXES, read_source
from himari.data.report import DataReport, build_report, report_path_for
from himari.errors import DataError


@dataclass
class LoadedBars:
    """A canonical frame with its interval, import log, report and source records."""

    frame: pd.DataFrame
    interval_seconds: int
    log: ImportLog
    report: DataReport
    sources: list[dict[str, Any]]


def load_bars(paths: Sequence[str | Path], *, format: str = "auto", symbol: str | None = None,
              options: ImportOptions | None = None, import_options: bool = True) -> LoadedBars:
    """Read, validate and merge files (monthly dumps concatenate; symbols stack).

    ``import_options``: whether the calling command offers import's options; errors then say
    ``pass --interval``, else to run ``himari data import`` with it first.
    """
    if not paths:
        raise DataError("no input files given")
    raws, sources = [], []
    for p in paths:
        raw, info = read_source(p, format=format, symbol=symbol, import_options=import_options)
        raws.append(raw)
        sources.append(info)
    frame, log = build_canonical(raws, options, import_options=import_options)
    log.sources = sources
    report = build_report(frame, log.interval_seconds, log)
    return LoadedBars(frame, log.interval_seconds, log, report, sources)


def import_bars(paths: Sequence[str | Path], out: str | Path, *, format: str = "auto",
                symbol: str | None = None, options: ImportOptions | None = None) -> LoadedBars:
    """``himari data import``: load, then write the Parquet and ``<name>.report.json`` atomically.

    Nothing is written when any step fails: both files are written under temporary names in the
    output directory and renamed into place only at the end. An output (or its report) that is
    one of the inputs, a directory, under a file or not named ``.parquet`` is refused before
    anything is read.
    """
    from himari.data.outputs import check_bars_output

    check_bars_output(out, paths)
    out = Path(out)
    loaded = load_bars(paths, format=format, symbol=symbol, options=options)
    extra = {"sources": loaded.sources, "import_log": loaded.log.to_dict(), "report": loaded.report.to_dict()}
    write_bars(loaded.frame, out, loaded.interval_seconds, extra,
               report_file=(report_path_for(out), loaded.report.json_text()))
    return loaded


def read_bars(path: str | Path, *, format: str = "auto", symbol: str | None = None,
              options: ImportOptions | None = None, import_options: bool = True) -> LoadedBars:
    """Open bars for a later stage: a himari bars Parquet as is, anything else via ``load_bars``
    (``import_options`` as there)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    meta = None
    if p.suffix.lower() in PARQUET_SUFFIXES and p.is_file():
        try:
            meta = read_bars_metadata(p)
        except Exception as e:  # not a Parquet file at all
            raise DataError(f"{p}: cannot read Parquet ({e})") from e
    if meta is None or meta.get("format") != FORMAT_NAME:
        return load_bars([p], format=format, symbol=symbol, options=options, import_options=import_options)
    frame = pd.read_parquet(p)
    validate_canonical(frame, str(p))
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
    if symbol is not None:
        frame = frame[frame["symbol"] == symbol].reset_index(drop=True)
        if frame.empty:
            raise DataError(f"{p}: no bars for symbol {symbol!r} (has {', '.join(meta.get('symbols', []))})")
    interval = int(meta["interval_seconds"])
    log = ImportLog(interval_seconds=interval, sources=list(meta.get("sources", [])))
    from himari.data.readers import file_sha256

    sources = [{"path": str(p.resolve()), "name": p.name, "format": "himari-bars", "rows": len(frame),
                "sha256": file_sha256(p)}, *log.sources]
    return LoadedBars(frame, interval, log, build_report(frame, interval, log), sources)


__all__ = ["LoadedBars", "import_bars", "load_bars", "read_bars", "report_path_for"]
