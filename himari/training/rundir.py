"""The layout of a run directory, in one place.

``runs/<model>/<timestamp>/``: ``config.yaml`` (resolved, every default filled),
``metrics.jsonl``, ``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``preprocessing.json``
(fitted preprocessor states) and ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
PREPROCESSING = "preprocessing.json"
SUMMARY = "summary.json"
LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"


def new_run_dir(model: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``root/<model>/<UTC timestamp>``, suffixed ``-2``, ``-3`` ... if taken."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / model / stamp
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{stamp}-{i}")
    path.mkdir(parents=True)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_plain) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def _plain(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(v)


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / CONFIG).is_file()
