"""Read side of a prepared directory: memory-mapped arrays plus metadata.

Arrays are opened with ``mmap_mode="c"`` (copy-on-write): pages are shared with the file and
read lazily, nothing is copied up front, and torch can wrap rows without the read-only warning;
writes (which nothing in himari does) would stay private to the process.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from himari.data.splits import Ranges, Segment
from himari.errors import DataError


class PreparedData:
    """A prepared directory: ``features``, ``labels``, ``targets``, ``open``, ``close``,
    ``timestamps`` (memory-mapped) and ``metadata``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        meta_path = self.path / "metadata.json"
        if not meta_path.exists():
            raise DataError(f"{self.path}: not a prepared data directory (no metadata.json)")
        self.metadata: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        from himari.data.pipeline import PREPARED_FORMAT

        if self.metadata.get("format") != PREPARED_FORMAT:
            raise DataError(f"{meta_path}: not a himari prepared data set")

    def _load(self, name: str) -> np.ndarray:
        p = self.path / self.metadata["files"][name]
        try:
            return np.load(p, mmap_mode="c")
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: cannot open ({e})") from e

    @cached_property
    def features(self) -> np.ndarray:
        return self._load("features")

    @cached_property
    def labels(self) -> np.ndarray:
        return self._load("labels")

    @cached_property
    def targets(self) -> np.ndarray:
        return self._load("targets")

    @cached_property
    def open(self) -> np.ndarray:
        return self._load("open")

    @cached_property
    def close(self) -> np.ndarray:
        return self._load("close")

    @cached_property
    def timestamps(self) -> np.ndarray:
        return self._load("timestamps")

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

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std fitted on the train split only."""
        n = self.metadata["normalization"]
        return np.asarray(n["mean"], np.float32), np.asarray(n["std"], np.float32)


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
    d = Table(title="Labels")
    for col in ("split", "rows", "SELL", "HOLD", "BUY"):
        d.add_column(col, justify="right" if col != "split" else "left")
    by_split = dict(metadata["label_distribution_by_split"])
    by_split["all (after warm-up)"] = metadata["label_distribution"]
    for name, dist in by_split.items():
        total = sum(dist.values()) or 1
        ranges = metadata["splits"].get(name)
        n = sum(b - a for a, b in ranges) if ranges is not None else total
        d.add_row(name, f"{n:,}", *(f"{dist[c]:,} ({100 * dist[c] / total:.1f}%)" for c in ("SELL", "HOLD", "BUY")))
    console.print(d)
