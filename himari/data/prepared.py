"""Read side of a prepared directory: memory-mapped arrays plus metadata.

Arrays are opened with ``mmap_mode="c"`` (copy-on-write): pages are shared with the file and
read lazily, nothing is copied up front, and torch can wrap rows without the read-only warning;
writes (which nothing in himari does) would stay private to the process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from himari.data.splits import Ranges, Segment
from himari.errors import DataError


ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "features": np.float32, "labels": np.int8, "targets": np.float32, "open": np.float64, "high": np.float64,
    "low": np.float64, "close": np.float64, "volume": np.float64, "timestamps": np.int64,
}
"""The arrays of a prepared directory (``[N, F]`` features, the rest ``[N]``) and their dtypes."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _MetadataCheck:
    """Checks of a parsed ``metadata.json``: every problem is a ``DataError`` naming the file and
    the key, so a damaged directory fails at once with one line instead of deep inside a run."""

    def __init__(self, meta: dict[str, Any], path: Path) -> None:
        self.meta, self.path = meta, path

    def fail(self, what: str) -> None:
        raise DataError(f"{self.path}: {what}; prepare the data again (himari data prepare --force)")

    def get(self, key: str, ok: Any, expected: str, parent: dict[str, Any] | None = None, where: str = "") -> Any:
        source = self.meta if parent is None else parent
        name = f"{where}{key}"
        if key not in source:
            self.fail(f"missing key '{name}'")
        value = source[key]
        if not ok(value):
            self.fail(f"'{name}' must be {expected}, got {json.dumps(value)[:80]}")
        return value

    def ranges(self, value: Any, n: int, name: str) -> None:
        if not isinstance(value, list) or not all(
                isinstance(r, list) and len(r) == 2 and all(_is_int(x) for x in r) and 0 <= r[0] <= r[1] <= n
                for r in value):
            self.fail(f"'{name}' must be a list of [start, stop] row ranges within 0..{n}")

    def run(self) -> tuple[int, int]:
        """Validate; returns (rows, feature dimension) for the array checks."""
        n = self.get("num_samples", lambda v: _is_int(v) and v > 0, "a positive integer")
        dim = self.get("feature_dim", lambda v: _is_int(v) and v > 0, "a positive integer")
        self.get("num_labeled", lambda v: _is_int(v) and 0 <= v <= n, f"an integer in 0..{n}")
        self.get("feature_names", lambda v: isinstance(v, list) and len(v) == dim and all(isinstance(x, str) for x in v),
                 f"a list of {dim} names")
        self.get("warmup", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
        self.get("embargo", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
        self.get("interval", lambda v: isinstance(v, str), "a string such as '5m'")
        self.get("symbols", lambda v: isinstance(v, list) and v and all(isinstance(x, str) for x in v),
                 "a non-empty list of symbols")
        span = self.get("span", lambda v: isinstance(v, dict), "an object")
        for k in ("start", "end"):
            self.get(k, lambda v: isinstance(v, str), "a time string", span, "span.")
        lab = self.get("labeler", lambda v: isinstance(v, dict), "an object")
        self.get("name", lambda v: isinstance(v, str), "a string", lab, "labeler.")
        self.get("params", lambda v: isinstance(v, dict), "an object", lab, "labeler.")
        self.get("lookahead", lambda v: _is_int(v) and v >= 0, "an integer >= 0", lab, "labeler.")

        def is_dist(v: Any) -> bool:
            return isinstance(v, dict) and all(_is_int(v.get(c)) for c in ("SELL", "HOLD", "BUY"))

        self.get("label_distribution", is_dist, "an object of SELL/HOLD/BUY counts")
        by_split = self.get("label_distribution_by_split", lambda v: isinstance(v, dict), "an object")
        for k in by_split:
            self.get(k, is_dist, "an object of SELL/HOLD/BUY counts", by_split, "label_distribution_by_split.")
        segments = self.get("segments", lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list")
        for i, seg in enumerate(segments):
            if not (isinstance(seg, dict) and set(seg) == {"symbol", "start", "stop", "first"}
                    and isinstance(seg["symbol"], str) and all(_is_int(seg[k]) for k in ("start", "stop", "first"))
                    and 0 <= seg["start"] <= seg["first"] <= seg["stop"] <= n):
                self.fail(f"'segments[{i}]' must be {{symbol, start, first, stop}} with 0 <= start <= first <= stop <= {n}")
        splits = self.get("splits", lambda v: isinstance(v, dict), "an object")
        for name in ("train", "validation", "test"):
            self.ranges(self.get(name, lambda v: True, "", splits, "splits."), n, f"splits.{name}")
        folds = self.get("folds", lambda v: isinstance(v, list), "a list")
        for i, fold in enumerate(folds):
            if not isinstance(fold, dict) or set(fold) != {"train", "test"}:
                self.fail(f"'folds[{i}]' must be an object with 'train' and 'test'")
            for name in ("train", "test"):
                self.ranges(fold[name], n, f"folds[{i}].{name}")
        files = self.get("files", lambda v: isinstance(v, dict), "an object")
        for name in ARRAY_DTYPES:
            self.get(name, lambda v: isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\\" not in v,
                     "a file name inside the directory", files, "files.")
        if "bars_per_year" in self.meta:
            self.get("bars_per_year", lambda v: _is_number(v) and v > 0, "a positive number")
        return n, dim


def _expected_arrays(n: int, dim: int) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """Shape and dtype of each array of a prepared directory with n rows and dim features."""
    return {name: (((n, dim) if name == "features" else (n,)), np.dtype(dtype))
            for name, dtype in ARRAY_DTYPES.items()}


class PreparedData:
    """A prepared directory: ``features``, ``labels``, ``targets``, the bars (``open``,
    ``high``, ``low``, ``close``, ``volume``, ``timestamps``), memory-mapped, and ``metadata``.

    Opening checks ``metadata.json`` (valid JSON, the himari format, every key the readers use,
    with the right types and row ranges inside the arrays) and each array's header (present,
    dtype and shape as the metadata says); any defect is a ``DataError`` naming the file.
    Only the ``.npy`` headers are read, so this stays cheap for large data sets.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from himari.data.pipeline import PREPARED_FORMAT, PREPARED_VERSION

        self.path = Path(path)
        meta_path = self.path / "metadata.json"
        if not self.path.is_dir():
            what = "a file" if self.path.exists() else "no such directory"
            raise DataError(f"{self.path}: not a prepared data directory ({what})")
        if not meta_path.exists():
            raise DataError(f"{self.path}: not a prepared data directory (no metadata.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{meta_path}: cannot read the metadata ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != PREPARED_FORMAT:
            raise DataError(f"{meta_path}: not a himari prepared data set (no \"format\": \"{PREPARED_FORMAT}\")")
        version = meta.get("version")
        if not _is_int(version) or version < 1:
            raise DataError(f"{meta_path}: 'version' must be a positive integer, got {json.dumps(version)}")
        if version > PREPARED_VERSION:
            raise DataError(f"{meta_path}: written by a newer himari (format version {version}, this one reads "
                            f"up to {PREPARED_VERSION}); upgrade himari or prepare the data again")
        if version < PREPARED_VERSION:
            raise DataError(f"{meta_path}: written by an older himari (format version {version}, without the "
                            f"high, low and volume arrays this one reads); prepare the data again "
                            f"(himari data prepare BARS --out {self.path} --force)")
        n, dim = _MetadataCheck(meta, meta_path).run()
        self.metadata: dict[str, Any] = meta
        self._arrays = {name: self._load(name, shape, dtype)
                        for name, (shape, dtype) in _expected_arrays(n, dim).items()}

    def _load(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        p = self.path / self.metadata["files"][name]
        try:
            arr = np.load(p, mmap_mode="c")
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{p}: cannot open ({e})") from e
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != dtype:
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise DataError(f"{p}: holds {got}, but metadata.json describes {dtype} {shape}; "
                            "prepare the data again (himari data prepare --force)")
        return arr

    @property
    def features(self) -> np.ndarray:
        return self._arrays["features"]

    @property
    def labels(self) -> np.ndarray:
        return self._arrays["labels"]

    @property
    def targets(self) -> np.ndarray:
        return self._arrays["targets"]

    @property
    def open(self) -> np.ndarray:
        return self._arrays["open"]

    @property
    def high(self) -> np.ndarray:
        return self._arrays["high"]

    @property
    def low(self) -> np.ndarray:
        return self._arrays["low"]

    @property
    def close(self) -> np.ndarray:
        return self._arrays["close"]

    @property
    def volume(self) -> np.ndarray:
        return self._arrays["volume"]

    @property
    def timestamps(self) -> np.ndarray:
        return self._arrays["timestamps"]

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])

    @property
    def num_samples(self) -> int:
        return int(self.metadata["num_samples"])

    @property
    def lookahead(self) -> int:
        return int(self.metadata["labeler"]["lookahead"])

    @property
    def segments(self) -> list[Segment]:
        return [Segment(**s) for s in self.metadata["segments"]]

    def with_splits(self, splits: Mapping[str, Ranges]) -> PreparedData:
        """A view of this data (the same arrays; nothing copied or written) whose ``split(name)``
        gives ``splits[name]``. A run trained on row ranges of its own (a walk-forward fold, or
        ``splits`` in its config) hands its model and training methods this view, so that data
        built with ``split("train")`` holds the run's train rows, never the data set's default
        ones, which overlap a fold's test block."""
        return self.view(metadata={**self.metadata, "splits": {name: [[int(a), int(b)] for a, b in ranges]
                                                               for name, ranges in splits.items()}})

    def view(self, metadata: dict[str, Any] | None = None, **arrays: np.ndarray) -> PreparedData:
        """This data with ``metadata`` and the named ``arrays`` (``features``, ``labels``, ``open``
        ...) in place of its own, sharing everything else; nothing is read or written."""
        out = object.__new__(PreparedData)
        out.path = self.path
        out.metadata = self.metadata if metadata is None else metadata
        out._arrays = {**self._arrays, **arrays}
        return out

    def split(self, name: str, fold: int | None = None) -> Ranges:
        """Row ranges of ``train``/``validation``/``test``, or of a walk-forward fold's
        ``train``/``test`` when ``fold`` is given."""
        if fold is not None:
            folds = self.metadata.get("folds") or []
            if not 0 <= fold < len(folds):
                raise DataError(f"fold {fold}: this data set has {len(folds)} folds (prepare --folds N)")
            source = folds[fold]
        else:
            source = self.metadata["splits"]
        if name not in source:
            raise DataError(f"split {name!r} is unknown; choose one of {', '.join(source)}")
        return [(int(a), int(b)) for a, b in source[name]]

    def select(self, split: str = "all", start: Any = None, end: Any = None) -> Ranges:
        """The row ranges a scoring command trades: split ``train``/``validation``/``test`` or
        ``all`` (every row after each symbol's feature warm-up), narrowed to the bars that
        opened in ``[start, end)`` (UTC dates or times, either may be None). One range per
        symbol and contiguous block, each traded from flat; blocks of a single bar are left
        out. An empty selection, an unparseable date or ``start >= end`` is a ``DataError``."""
        from himari.data.splits import SELECTIONS, select_ranges, usable_ranges

        if split not in SELECTIONS:
            raise DataError(f"--split {split!r}: choose one of {', '.join(SELECTIONS)}")
        base = None if split == "all" else self.split(split)
        ranges = select_ranges(self.timestamps, self.segments, base, start=start, end=end)
        if not ranges:
            where = "" if split == "all" else f"the {split} split of "
            window = "" if start is None and end is None else \
                f" from {'its start' if start is None else start} to {'its end' if end is None else end}"
            whose = "its bars after the feature warm-up" if base is None else f"the {split} split's bars"
            raise DataError(f"no bars to score in {where}{self.path}{window} (a block needs two bars); {whose} "
                            f"span {self.span_text(usable_ranges(self.segments) if base is None else base)} UTC")
        return ranges

    def span_text(self, ranges: Ranges) -> str:
        """First and last bar open time of ``ranges`` in UTC, ``"A .. B"`` (``"none"`` when empty)."""
        ranges = [(a, b) for a, b in ranges if b > a]
        if not ranges:
            return "none"
        first = min(int(self.timestamps[a]) for a, _ in ranges)
        last = max(int(self.timestamps[b - 1]) for _, b in ranges)
        return f"{utc_text(first)} .. {utc_text(last)}"


def utc_text(ns: int) -> str:
    """A bar time (int64 ns) as ``YYYY-MM-DD HH:MM`` UTC, with seconds when it has any."""
    import pandas as pd

    t = pd.Timestamp(int(ns), tz="UTC")
    return t.strftime("%Y-%m-%d %H:%M:%S" if t.second or t.microsecond or t.nanosecond else "%Y-%m-%d %H:%M")



def render_summary(metadata: dict[str, Any], console: Any = None, title: str = "Prepared data") -> None:
    """Print a prepared directory's metadata as rich tables (sizes, labels per split, splits)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=title, show_header=False)
    t.add_column("")
    t.add_column("")
    lab = metadata["labeler"]
    params = ", ".join(f"{k}={v}" for k, v in lab["params"].items())
    rows = [
        ("symbols", ", ".join(metadata["symbols"])),
        ("span", f"{metadata['span']['start']} .. {metadata['span']['end']}"),
        ("interval", metadata["interval"]),
        ("rows / labelled", f"{metadata['num_samples']:,} / {metadata['num_labeled']:,}"),
        ("features", f"{metadata['feature_dim']} (warm-up {metadata['warmup']} bars)"),
        ("labeler", f"{lab['name']} ({params}); lookahead {lab['lookahead']} bars"),
        ("embargo", f"{metadata['embargo']} bars"),
    ]
    if metadata.get("folds"):
        rows.append(("walk-forward folds", f"{len(metadata['folds'])} ({metadata.get('fold_mode')})"))
    if "seconds" in metadata:
        rows.append(("time", f"{metadata['seconds']:.2f} s"))
    for k, v in rows:
        t.add_row(k, str(v))
    console.print(t)
    # rows: every row of the split (or after each symbol's warm-up); labelled: those with a label,
    # the base of the class percentages (the last bars of a series, and bars without a volatility
    # estimate, have none)
    d = Table(title="Labels", caption="rows: all rows of the split; labelled: rows with a label; "
                                      "class shares are of the labelled rows")
    for col in ("split", "rows", "labelled", "SELL", "HOLD", "BUY"):
        d.add_column(col, justify="right" if col != "split" else "left")
    rows_of = {name: sum(b - a for a, b in ranges) for name, ranges in metadata["splits"].items()}
    by_split = dict(metadata["label_distribution_by_split"])
    by_split["all (after warm-up)"] = metadata["label_distribution"]
    rows_of["all (after warm-up)"] = sum(s["stop"] - s["first"] for s in metadata["segments"])
    for name, dist in by_split.items():
        labelled = sum(dist[c] for c in ("SELL", "HOLD", "BUY"))
        shares = [f"{dist[c]:,} ({100 * dist[c] / labelled:.1f}%)" if labelled else f"{dist[c]:,}"
                  for c in ("SELL", "HOLD", "BUY")]
        d.add_row(name, f"{rows_of.get(name, labelled):,}", f"{labelled:,}", *shares)
    console.print(d)
