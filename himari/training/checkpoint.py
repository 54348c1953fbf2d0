"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain containers (no pickled classes), so loading one can
never run code, and a file from anything other than a himari run is refused with a clear
error instead of a stack trace. Writes go to a temporary file in the same directory, are
flushed to disk, then ``os.replace``-d over the target: a process killed mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from himari.errors import HimariError

FORMAT = "himari-checkpoint"
VERSION = 1


class CheckpointError(HimariError, ValueError):
    """A checkpoint is missing, corrupt, foreign, or from another model."""


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], *, model: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; ``model`` checks it belongs to that model."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load, it holds objects other than tensors and plain "
                              f"data (not a himari checkpoint?): {str(e).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a himari checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')}, "
                              f"this himari reads version {VERSION}")
    if model is not None and payload.get("model") != model:
        raise CheckpointError(f"{path}: checkpoint of model {payload.get('model')!r}, expected {model!r}")
    return payload
