"""A synthetic set on disk: what ``himari data augment`` writes and ``himari train --augment``
reads.

A set directory holds ``windows.npy`` (float32 ``[n, L, k]``, the generated channels in the
prepared features' units), ``labels.npy`` (int8 ``[n, L]``, SELL/HOLD/BUY, -1 unknown),
optionally ``classes.npy`` (int8 ``[n]``, the condition class each window was generated for),
the fitted generator's state (``generator.json`` and ``generator.npz``), ``report.json`` when the
quality report was asked for, and ``metadata.json``: the provenance (generator, its config, the
seed, the train rows it was fitted on and their time span, the source data's fingerprint and
feature names) and the SHA-256 of every array file.

A run uses a set only when it was made from the same prepared data (same fingerprint, so the
same feature set, labels and bars) and the rows its generator was fitted on, with their labels'
look-ahead, overlap none of the run's validation and test rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import DataError

SET_FORMAT = "himari-synthetic"
SET_VERSION = 1
ARRAY_FILES = {"windows": "windows.npy", "labels": "labels.npy", "classes": "classes.npy"}
STATE_JSON = "generator.json"
STATE_NPZ = "generator.npz"
REPORT_JSON = "report.json"
SET_FILES = ("metadata.json", *ARRAY_FILES.values(), STATE_JSON, STATE_NPZ, REPORT_JSON)
"""Every file a set directory may hold (``--force`` replaces only a directory of these)."""


def data_fingerprint(data: Any) -> str:
    """SHA-256 of what makes a prepared data set itself: its feature names, labeler, interval and
    symbols, and the bytes of its timestamps, features and labels. Two directories prepared
    from the same bars with the same settings share it; a different feature set, labeler, bar
    or value does not. Splits are left out: where a set may be used is checked by rows."""
    h = hashlib.sha256()
    meta = data.metadata
    head = {"feature_names": list(meta["feature_names"]), "labeler": meta["labeler"],
            "interval": meta["interval"], "symbols": meta["symbols"]}
    h.update(json.dumps(head, sort_keys=True).encode())
    for name in ("timestamps", "features", "labels"):
        arr = np.asarray(getattr(data, name))
        h.update(f"{name}{arr.shape}{arr.dtype}".encode())
        step = max(1, (1 << 24) // max(1, arr[:1].nbytes))
        for a in range(0, len(arr), step):
            h.update(np.ascontiguousarray(arr[a:a + step]).tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_arrays(directory: Path, windows: np.ndarray, labels: np.ndarray, classes: np.ndarray | None) -> dict[str, str]:
    """Write the set's arrays into ``directory`` (a temporary directory the caller swaps into
    place); returns each file's SHA-256."""
    arrays = {"windows": np.ascontiguousarray(windows, dtype=np.float32),
              "labels": np.ascontiguousarray(labels, dtype=np.int8)}
    if classes is not None:
        arrays["classes"] = np.ascontiguousarray(classes, dtype=np.int8)
    out = {}
    for name, arr in arrays.items():
        path = directory / ARRAY_FILES[name]
        np.save(path, arr, allow_pickle=False)
        out[name] = file_sha256(path)
    return out


def read_rows_ranges(value: Any, where: str) -> list[tuple[int, int]]:
    if not (isinstance(value, list) and all(isinstance(r, list) and len(r) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in r) and 0 <= r[0] <= r[1] for r in value)):
        raise DataError(f"{where}: damaged synthetic set metadata (train ranges must be [start, stop] rows)")
    return [(int(a), int(b)) for a, b in value]


class SyntheticSet:
    """A synthetic set directory, checked on opening: ``metadata.json`` (the format, the keys the
    readers use), each array's file hash, dtype and shape. Any defect is a ``DataError`` naming
    the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        meta_path = self.path / "metadata.json"
        if not self.path.is_dir():
            what = "a file" if self.path.exists() else "no such directory"
            raise DataError(f"{self.path}: not a synthetic set ({what})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{self.path}: not a synthetic set (no metadata.json); make one with "
                            f"himari data augment") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{meta_path}: cannot read the metadata ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != SET_FORMAT:
            raise DataError(f"{meta_path}: not a himari synthetic set (no \"format\": \"{SET_FORMAT}\")")
        if meta.get("version") != SET_VERSION:
            raise DataError(f"{meta_path}: synthetic set format version {meta.get('version')!r}, this himari reads "
                            f"{SET_VERSION}; make the set again")
        try:
            source = meta["source"]
            self.channels: list[str] = [str(c) for c in meta["channels"]]
            self.window = int(meta["window"])
            self.generator = str(meta["generator"]["name"])
            self.fingerprint = str(source["fingerprint"])
            self.train_ranges = read_rows_ranges(source["train_ranges"], str(meta_path))
            self.lookahead = int(source["lookahead"])
            hashes = dict(meta["files"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{meta_path}: damaged synthetic set metadata (missing or bad {e})") from None
        self.metadata: dict[str, Any] = meta
        self.windows = self._load("windows", hashes, np.float32, 3)
        n, L, k = self.windows.shape
        if L != self.window or k != len(self.channels):
            raise DataError(f"{self.path / ARRAY_FILES['windows']}: holds [{n}, {L}, {k}] windows, the metadata says "
                            f"window {self.window} and {len(self.channels)} channels")
        self.labels = self._load("labels", hashes, np.int8, 2)
        if self.labels.shape != (n, L) or not np.isin(self.labels, (-1, 0, 1, 2)).all():
            raise DataError(f"{self.path / ARRAY_FILES['labels']}: expected [{n}, {L}] labels in -1..2")
        self.classes = self._load("classes", hashes, np.int8, 1) if "classes" in hashes else None
        if self.classes is not None and self.classes.shape != (n,):
            raise DataError(f"{self.path / ARRAY_FILES['classes']}: expected {n} classes")

    def _load(self, name: str, hashes: dict[str, Any], dtype: type, ndim: int) -> np.ndarray:
        path = self.path / ARRAY_FILES[name]
        if name not in hashes:
            raise DataError(f"{self.path / 'metadata.json'}: no hash recorded for {ARRAY_FILES[name]}")
        try:
            digest = file_sha256(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read the synthetic set ({e.strerror or e})") from None
        if digest != hashes[name]:
            raise DataError(f"{path}: its content does not match the hash in metadata.json (modified or damaged); "
                            f"make the set again")
        arr = np.load(path, allow_pickle=False)
        if arr.dtype != np.dtype(dtype) or arr.ndim != ndim:
            raise DataError(f"{path}: holds {arr.dtype} with {arr.ndim} dimensions, expected {np.dtype(dtype)} "
                            f"with {ndim}")
        return arr

    @property
    def set_id(self) -> str:
        """The SHA-256 of the windows file: names this set's content (runs record it)."""
        return str(self.metadata["files"]["windows"])

    def check_source(self, data: Any, fingerprint: str | None = None) -> None:
        """Refuse a set made from another prepared data set (another feature set, labeler or
        bars), naming both."""
        fp = fingerprint or data_fingerprint(data)
        if fp != self.fingerprint:
            made = self.metadata["source"].get("path", "?")
            raise DataError(f"{self.path}: this synthetic set was made from another data set ({made}, fingerprint "
                            f"{self.fingerprint[:12]}); {data.path} has fingerprint {fp[:12]} (other bars, "
                            f"features or labels); make the set again from {data.path}")

    def check_ranges(self, splits: dict[str, list[tuple[int, int]]], where: str = "the run",
                     embargo: int = 0) -> None:
        """Refuse a set whose generator read a validation or test row of ``splits``: the rows it
        was fitted on, extended by the labels' look-ahead (a label at row t reads bars up to
        t + look-ahead, so the rows ``[s, e)`` read up to row ``e - 1 + look-ahead``), or by the
        data's ``embargo`` where that is longer: the rows a run keeps out of training before its
        validation and test rows are kept out of what its synthetic rows were made from too (a
        set made before the data was prepared again with a longer embargo was accepted)."""
        margin = max(self.lookahead, int(embargo), 0)
        for name in ("validation", "test"):
            for a, b in splits.get(name, []):
                for s, e in self.train_ranges:
                    read_to = e + margin
                    if s < b and a < read_to:
                        reach = (f"labels read up to row {e - 1 + max(self.lookahead, 0)}"
                                 + (f", and the data's embargo of {embargo} rows keeps rows up to {read_to - 1} out"
                                    if embargo > self.lookahead else ""))
                        raise DataError(
                            f"{self.path}: its generator was fitted on rows [{s}, {e}) ({reach}), which overlap the "
                            f"{name} rows [{a}, {b}) of {where}; synthetic data may come only from the train "
                            f"period: make the set from this run's train split")

    def rows(self, feature_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every window step as a row of ``feature_names`` (the prepared features, in their order)
        and its label (-1 where unknown): ``(features [n * L, F], labels [n * L])``, window after
        window. A set without one of the features, or without any label, is refused."""
        missing = [f for f in feature_names if f not in self.channels]
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise DataError(f"{self.path}: this synthetic set holds {len(self.channels)} channels, not the "
                            f"{len(feature_names)} features a model trains on (missing {shown}); make it with "
                            f"--features all")
        index = [self.channels.index(f) for f in feature_names]
        x = self.windows.reshape(-1, len(self.channels))[:, index]
        y = self.labels.reshape(-1)
        if not (y >= 0).any():
            raise DataError(f"{self.path}: no synthetic row has a label, so none can train a model (make the set "
                            f"with the generator's labels on)")
        return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


def is_synthetic_set(path: Path) -> bool:
    try:
        meta = json.loads((Path(path) / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == SET_FORMAT
