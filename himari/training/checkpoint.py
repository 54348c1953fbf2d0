"""Checkpoints: written atomically, verified by a content hash, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain containers (no pickled classes), so loading one can
never run code, and a file from anything other than a himari run is refused with a clear
error instead of a stack trace.

- **Integrity.** The payload carries ``content_hash``, a BLAKE2b digest of every key, tensor
  (dtype, shape and bytes) and plain value in it. ``load_checkpoint`` recomputes it: a file with
  flipped bytes that still unpickles is refused instead of loading changed weights. Anything
  that fails to unpickle (empty, truncated, random bytes) is a ``CheckpointError`` naming the
  file, whatever torch raised.
- **Atomicity.** The payload is serialised in memory, then written to a temporary file in the
  same directory, flushed to disk and ``os.replace``-d over the target
  (``himari.data.atomic.atomic_path``): a process killed mid-write, or a full disk, leaves the
  previous checkpoint intact. A full disk is reported as such, with the path.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from himari.data.atomic import atomic_path
from himari.errors import DiskFullError, HimariError

FORMAT = "himari-checkpoint"
VERSION = 2
"""2: with ``content_hash``. Version 1 files (no hash) are refused with a message saying so."""


class CheckpointError(HimariError, ValueError):
    """A checkpoint is missing, corrupt, foreign, or from another model."""


def content_hash(payload: Any) -> str:
    """BLAKE2b of a nested structure of dicts, lists, tuples, tensors and plain values, in a
    canonical order (dict keys sorted), each item tagged with its type so ``1`` and ``"1"``
    differ. Tensors contribute dtype, shape and their bytes (bfloat16 read as 16-bit ints)."""
    import torch

    h = hashlib.blake2b(digest_size=32)

    def feed(tag: bytes, data: bytes) -> None:
        h.update(tag)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            feed(b"T", f"{t.dtype}|{tuple(t.shape)}".encode())
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.view(torch.int16)
            elif t.is_complex() or t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                t = t.view(torch.uint8)
            feed(b"D", t.numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            feed(b"{", str(len(x)).encode())
            for k in sorted(x, key=lambda k: (type(k).__name__, str(k))):
                walk(k)
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            feed(b"[" if isinstance(x, list) else b"(", str(len(x)).encode())
            for v in x:
                walk(v)
        elif isinstance(x, (bytes, bytearray)):
            feed(b"B", bytes(x))
        else:
            feed(type(x).__name__.encode(), repr(x).encode())

    walk(payload)
    return h.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (a new temporary file)."""
    with open(path, "wb") as f:
        f.write(data)


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain containers) atomically with its content hash."""
    import torch

    path = Path(path)
    body = {"format": FORMAT, "version": VERSION, **payload}
    body["content_hash"] = content_hash({k: v for k, v in body.items() if k != "content_hash"})
    buffer = io.BytesIO()
    torch.save(body, buffer)
    try:
        with atomic_path(path) as tmp:
            _write_bytes(tmp, buffer.getbuffer())
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(e.errno, f"no space left on device writing {path} "
                                         f"({len(buffer.getbuffer()) / 2**20:.1f} MiB); the previous "
                                         f"checkpoint, if any, is intact") from None
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], *, model: str | None = None) -> dict[str, Any]:
    """Read and verify a checkpoint written by ``save_checkpoint``; ``model`` checks it belongs to
    that model. Every way a file can be wrong is a ``CheckpointError`` naming it."""
    import pickle

    import torch

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load, it holds objects other than tensors and plain "
                              f"data (not a himari checkpoint?): {_first_line(e)}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a himari checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')!r}, this himari "
                              f"reads version {VERSION} (version 1 files carry no content hash)")
    stored = payload.get("content_hash")
    try:
        actual = content_hash({k: v for k, v in payload.items() if k != "content_hash"})
    except Exception as e:  # noqa: BLE001 - a damaged tensor can fail to materialise
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(stored, str) or stored != actual:
        raise CheckpointError(f"{path}: corrupt checkpoint: its content does not match its hash "
                              f"(the file was modified or damaged after it was written)")
    if model is not None and payload.get("model") != model:
        raise CheckpointError(f"{path}: checkpoint of model {payload.get('model')!r}, expected {model!r}")
    return payload


def load_network_state(network: Any, payload: dict[str, Any], path: str | os.PathLike[str],
                       method_modules: Any = None) -> None:
    """Load the checkpoint's weights into ``network`` (and the training methods' own modules into
    ``method_modules``); weights of another shape or set of layers (a checkpoint of another
    configuration) are a ``CheckpointError`` naming the file."""
    try:
        network.load_state_dict(payload["network"])
        if method_modules is not None:
            method_modules.load_state_dict(payload.get("method_modules", {}))
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its weights do not fit this model ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
