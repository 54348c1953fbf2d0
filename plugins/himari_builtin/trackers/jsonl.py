"""jsonl: every logged metric as one JSON line in the run's ``metrics.jsonl``. Always on.

Lines are ``{"step": N, "name": value, ...}``. On resume the file is cut back to the records
that the checkpoint knew about, so a resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.plugin.api import TrackerSpec, hookimpl


@dataclass(frozen=True)
class JsonlConfig:
    filename: str = "metrics.jsonl"
    """File name inside the run directory."""


class JsonlTracker:
    def __init__(self, config: JsonlConfig) -> None:
        self.config = config
        self._file: Any = None

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None:
        path = Path(run_dir) / self.config.filename
        if resume is not None and path.exists():
            keep = path.read_text(encoding="utf-8").splitlines(keepends=True)[: int(resume["records"])]
            path.write_text("".join(keep), encoding="utf-8")
        elif resume is None:
            path.write_text("", encoding="utf-8")
        self._file = path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@hookimpl
def himari_register_trackers(registry: Any) -> None:
    registry.add(TrackerSpec(name="jsonl", summary="metrics as JSON lines in the run directory (always on)",
                             config=JsonlConfig, factory=JsonlTracker))
