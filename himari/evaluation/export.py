"""``himari backtest --export DIR``: every scored strategy's per-bar series, one file each.

``DIR/<slug>.parquet`` (or ``.csv``) holds ``himari.evaluation.series.per_bar`` of one strategy;
``DIR/index.json`` (``"format": "himari-export"``) maps each strategy's name to its file, kind,
costs and metrics (net and gross), with the data and the bars scored. The directory is built
under a temporary name beside ``DIR`` and renamed into place, so a failure leaves nothing; an
existing ``DIR`` is replaced only when it is a previous export holding nothing but its own files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from himari.data.atomic import atomic_directory, output_target
from himari.errors import DataError

EXPORT_FORMAT = "himari-export"
EXPORT_VERSION = 1
INDEX = "index.json"
FORMATS = ("parquet", "csv")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: str, kind: str) -> str:
    """A file-name-safe stem for a strategy: a baseline keeps its name; a run directory becomes
    its last two path parts joined by ``-`` (``runs/flag-trader/20250101-120000`` ->
    ``flag-trader-20250101-120000``), so runs of one model stay apart and readable."""
    if kind == "run":
        parts = Path(os.path.abspath(name)).parts[1:]  # "." and ".." become the directories' names
        name = "-".join(parts[-2:]) or "run"
    text = _UNSAFE.sub("_", name).strip("._-")
    return text or "strategy"


def file_names(strategies: Sequence[tuple[str, str]], fmt: str) -> list[str]:
    """One distinct file name per ``(name, kind)``: slugs that collide get ``-2``, ``-3``, ..."""
    seen: set[str] = {INDEX.lower()}
    out = []
    for name, kind in strategies:
        base, k = slug(name, kind), 1
        stem = base
        while f"{stem}.{fmt}".lower() in seen:  # case-insensitive file systems too
            k += 1
            stem = f"{base}-{k}"
        seen.add(f"{stem}.{fmt}".lower())
        out.append(f"{stem}.{fmt}")
    return out


def _previous_export_files(target: Path) -> set[str] | None:
    """The files a previous export in ``target`` wrote (its index and the files it lists), or
    None when ``target`` holds no readable himari export index."""
    try:
        index = json.loads((target / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("format") != EXPORT_FORMAT:
        return None
    files = {INDEX}
    for entry in (index.get("strategies") or {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            files.add(entry["file"])
    return files


def check_export_dir(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Refuse, before any work, an ``--export`` directory that must not be replaced: one under a
    file, a file, one that is or contains an input (the data, a run) or the working directory,
    a non-empty directory that is not a previous export, or a previous export holding files it
    did not write. Returns the resolved target."""
    target = output_target(path)
    for ancestor in target.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DataError(f"--export {path}: {ancestor} is a file, not a directory")
            break
    for src in inputs:
        s = output_target(src)
        if s == target or target in s.parents:
            raise DataError(f"--export {path}: contains the input {src}; choose a new directory")
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    if cwd is not None and (cwd == target or target in cwd.parents):
        raise DataError(f"--export {path}: is the current directory or contains it; the export directory is "
                        "replaced as a whole, so choose a new subdirectory such as export/")
    if not target.exists():
        return target
    if not target.is_dir():
        raise DataError(f"--export {path}: exists and is not a directory")
    entries = sorted(e.name for e in target.iterdir())
    if not entries:
        return target
    own = _previous_export_files(target)
    if own is None:
        raise DataError(f"--export {path}: exists, is not empty ({len(entries)} entries) and is not a previous "
                        "himari export; choose a new or empty directory")
    extra = [e for e in entries if e not in own]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise DataError(f"--export {path}: a previous export, but it also holds files the export did not write "
                        f"({shown}); move them away or choose another directory")
    return target


def write_export(path: str | os.PathLike[str], strategies: Sequence[dict[str, Any]], context: dict[str, Any],
                 fmt: str = "parquet") -> Path:
    """Write the export atomically. Each strategy is a dict with ``name``, ``kind``, ``table``
    (the ``per_bar`` DataFrame, or a function making it: one table in memory at a time) and the
    JSON-ready ``costs``, ``metrics``, ``gross`` and ``checkpoint``; ``context`` (data,
    selection, bars scored) goes into the index."""
    from himari.evaluation.series import COLUMNS

    if fmt not in FORMATS:
        raise DataError(f"--export-format {fmt!r}: choose one of {', '.join(FORMATS)}")
    names = file_names([(s["name"], s["kind"]) for s in strategies], fmt)
    index: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **context,
                             "columns": list(COLUMNS), "strategies": {}}
    with atomic_directory(path) as tmp:
        for s, file in zip(strategies, names):
            table = s["table"]() if callable(s["table"]) else s["table"]
            if fmt == "parquet":
                table.to_parquet(tmp / file, index=False)
            else:
                table.to_csv(tmp / file, index=False)
            index["strategies"][s["name"]] = {"file": file, "kind": s["kind"], "checkpoint": s.get("checkpoint"),
                                              "costs": s["costs"], "metrics": s["metrics"], "gross": s["gross"]}
        (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return output_target(path)
