"""Atomic file and directory writes.

An import or prepare that fails half-way must leave nothing behind (and must not clobber a good
previous output), so every output is first written to a temporary name in the *same* directory
(``os.replace`` is only atomic within one file system) and then moved into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _default_mode(directory: bool) -> int:
    """Permissions a normal open()/mkdir() would give under the current umask (mkstemp and
    mkdtemp create private 0600/0700 entries, which would surprise users sharing outputs)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode(False))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a small text file atomically (reports, metadata)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place when the block succeeds.

    An existing directory at ``path`` is replaced only after the new one is complete: it is
    renamed aside, the new one renamed in, and the old one deleted. A failure inside the block
    removes the temporary directory and leaves ``path`` untouched.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        from himari.errors import DataError

        raise DataError(f"{target}: exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, _default_mode(True))
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
