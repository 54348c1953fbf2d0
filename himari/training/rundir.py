"""The layout of a run directory, in one place, and the lock that keeps one process in it.

``runs/<model>/<timestamp>/``: ``config.yaml`` (resolved, every default filled),
``metrics.jsonl``, ``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``preprocessing.json``
(fitted preprocessor states) and ``summary.json``; ``.lock`` while a process trains in it.

Two processes writing one run would interleave ``metrics.jsonl`` and overwrite each other's
checkpoints, so training and resuming take an exclusive OS lock (``flock``) on ``.lock``: the
operating system releases it when the holder exits or dies, so a killed run never leaves a
stale lock, and a second process is refused with the holder's PID.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import yaml

from himari.data.atomic import remove_stale_temporaries, write_text_atomic
from himari.errors import ConfigError

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
PREPROCESSING = "preprocessing.json"
SUMMARY = "summary.json"
EXECUTION = "execution.json"
"""The execution rules chosen on validation (``execution.select``); ``himari backtest`` uses them."""
LOCK = ".lock"
LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"


class RunLockedError(ConfigError):
    """Another process is training in this run directory (a usage error: exit code 2)."""


def new_run_dir_path(model: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``root/<model>/<UTC timestamp>``, suffixed ``-2``, ``-3`` ... if taken; not created."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / model / stamp
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{stamp}-{i}")
    return path


def check_run_dir_target(path: Path, *, resume: bool) -> None:
    """Refuse, before anything runs, a ``--run-dir`` that cannot hold a new run (or a run to
    resume): a file, a path under a file, or a non-empty directory for a new run."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == path else f"is under {parent}, which is a file"
            raise ConfigError(f"run directory {path}: {what}")
        if parent.exists():
            break
    if resume:
        if not is_run_dir(path):
            raise ConfigError(f"{path}: not a himari run directory (no {CONFIG}); nothing to resume")
        return
    if not path.exists():
        return
    if not is_run_dir(path):
        # A run killed while writing its config (its first file) left the config's temporary and
        # nothing it could resume from: that temporary, of a process of this host that has died,
        # does not make the directory a run (an evaluation resumed after such a kill starts that
        # run again instead of refusing its directory). A live writer's temporary still counts.
        remove_stale_temporaries(path / CONFIG)
    if any(p.name != LOCK for p in path.iterdir()):
        if is_run_dir(path):
            hint = f"use --resume {path} to continue its run"
        elif (path / "evaluation.yaml").is_file():
            hint = f"it holds an evaluation: himari evaluate --resume {path} continues it"
        else:
            hint = "it holds no run to resume; choose a new directory"
        raise ConfigError(f"{path}: run directory exists and is not empty ({hint})")


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` holding the owner's PID.

    ``acquire`` creates the directory (and its missing parents, remembered so ``remove_created``
    can take them away again when a new run fails before it saved anything)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None
        self.created: list[Path] = []
        """Directories this process created, deepest first."""

    def acquire(self) -> None:
        import fcntl

        missing = [p for p in [self.run_dir, *self.run_dir.parents] if not p.exists()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.created = [p for p in missing if p.is_dir()]
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            self.created = []  # another process owns the directory now
            raise RunLockedError(f"{self.run_dir}: another himari process (PID {holder}) is training in this "
                                 f"run directory; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def remove_created(self) -> None:
        """Undo a new run that failed before saving anything: delete what it wrote in the run
        directory (the directory too when this process created it) and the parents it created,
        where they are empty. A directory that existed (empty) before is left empty."""
        import shutil

        if self._fd is None:
            return  # never held the lock: the directory is not ours to clean
        self.release()
        if self.run_dir in self.created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for p in self.run_dir.iterdir():
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for p in self.created:
            if p != self.run_dir and p.exists():
                try:
                    p.rmdir()
                except OSError:
                    break
        self.created = []


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


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a run directory; a damaged one is a ``ConfigError`` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable {what} ({' '.join(str(e).split())})") from None
