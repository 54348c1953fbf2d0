"""Which prepared data set a run trained on, recorded in the run (``data.json``) and checked
wherever the run's own data is read again.

A run names its data by path. The path may later hold another data set: ``data prepare --force``
over it, or a bars file edited and prepared again into the cache. Resuming would then finish one
run on two markets (with preprocessing fitted on the first), and a backtest "on the run's data"
would score other bars than the run's summary did. The record is what a prepared set says of
itself (its sources' SHA-256, its rows, features, labels and splits), so checking costs no
hashing, and the same bars prepared again the same way still count as the same set. Runs saved
before the record existed are not checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from himari.errors import DataError

DATA_JSON = "data.json"
"""The record in a run directory."""


COMPARED = ("sources", "num_samples", "feature_names", "labeler", "splits", "embargo")
"""What must match; ``path`` and ``created_at`` are recorded for the message."""


def data_identity(prepared: Any) -> dict[str, Any]:
    """What identifies ``prepared`` (a ``PreparedData``): its sources' names and SHA-256, its
    rows, feature names, labeller, splits and embargo (and its path and preparation time)."""
    meta = prepared.metadata
    sources = [{"name": s.get("name"), "sha256": s.get("sha256")} for s in meta.get("sources") or []
               if isinstance(s, dict)]
    return {"path": str(prepared.path), "created_at": meta.get("created_at"), "sources": sources,
            **{k: meta.get(k) for k in COMPARED if k != "sources"}}


def record_data(run_dir: Path, prepared: Any) -> None:
    from himari.training.rundir import write_json

    write_json(Path(run_dir) / DATA_JSON, data_identity(prepared))


def check_same_data(run_dir: str | Path, prepared: Any, remedy: str) -> None:
    """Refuse ``prepared`` as the data the run in ``run_dir`` trained on when it is another data
    set than the one recorded; ``remedy`` says what to do instead."""
    import json

    from himari.training.rundir import read_json

    path = Path(run_dir) / DATA_JSON
    if not path.exists():
        return
    saved = read_json(path, "record of the run's data")
    now = data_identity(prepared)
    saved = saved if isinstance(saved, dict) else {}
    differ = [k for k in COMPARED if json.loads(json.dumps(now[k])) != saved.get(k)]
    if differ:
        raise DataError(f"{prepared.path}: not the data set the run {run_dir} trained on (its "
                        f"{', '.join(d.replace('_', ' ') for d in differ)} differ; that one was prepared at "
                        f"{saved.get('created_at')}, this one at {now['created_at']}); {remedy}")
