"""Atomic file and directory writes.

An import or prepare that fails half-way must leave nothing behind (and must not clobber a good
previous output), so every output is first written to a temporary name in the *same* directory
(``os.replace`` is only atomic within one file system) and then moved into place.

Temporary names are ``.<output name>.<host>-<pid>.<random>.tmp`` (``.old`` for a previous output
directory moved aside): ``<host>`` is a short hash of this machine's host name and ``<pid>`` the
writing process. A process killed outright (SIGKILL, power loss) cannot clean up, so the next
write to the same output removes that output's temporaries whose process is no longer running on
this host. A PID rather than an age decides, because a large prepare can legitimately run for
minutes and an age limit would either delete a live writer's files or keep a dead one's for
hours; temporaries of another host (a shared network directory) are never touched, since its PIDs
cannot be checked from here. SIGTERM and SIGHUP are turned into ``SystemExit`` while a temporary
exists (main thread only, and only where no other handler is installed), so the ordinary cleanup
runs for them as it does for exceptions and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from himari.errors import DataError, DiskFullError

_HOST_TAG = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _default_mode(directory: bool) -> int:
    """Permissions a normal open()/mkdir() would give under the current umask (mkstemp and
    mkdtemp create private 0600/0700 entries, which would surprise users sharing outputs)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def output_target(path: str | os.PathLike[str]) -> Path:
    """The absolute, symlink-resolved output path: ``.`` or ``a/..`` get their real name, so
    temporaries are named after the real directory and created next to it."""
    return Path(path).expanduser().resolve()


def ensure_parent(target: Path) -> None:
    """Create ``target``'s parent directories, or fail with a ``DataError`` naming the culprit
    (a file where a directory is needed, no permission) instead of a raw ``OSError``."""
    for ancestor in (target.parent, *target.parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DataError(f"{target}: {ancestor} is a file, not a directory")
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{target}: cannot create the directory {target.parent} ({e.strerror or e})") from e


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{_HOST_TAG}-{os.getpid()}."


def _temp_pattern(target: Path) -> re.Pattern[str]:
    # the random part of mkstemp/mkdtemp names is [a-z0-9_]; it never holds '.' or '-', so the
    # temporaries of another output ("a.b" next to "a") never match
    return re.compile(rf"\.{re.escape(target.name)}\.([0-9a-f]{{8}})-(\d+)\.[a-z0-9_]+\.(?:tmp|old)")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process we could have been; leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries of output ``path`` left by processes of this host that have died.

    Only names of this output's own pattern are considered; returns what was removed.
    """
    target = output_target(path)
    pattern = _temp_pattern(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or m.group(1) != _HOST_TAG or _pid_alive(int(m.group(2))):
            continue
        p = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class _Deferral(threading.local):
    depth = 0
    pending: int | None = None


_deferral = _Deferral()
"""While ``depth`` > 0 a stop signal is recorded in ``pending`` and acted on when it drops to 0."""


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    if _deferral.depth:  # inside a commit: finish it first (_stop_signals_deferred)
        _deferral.pending = signum
        return
    # a second signal while the cleanup runs must not interrupt it
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def stop_signals() -> list[int]:
    """SIGTERM and SIGHUP, those of the two this platform has: the stops of a scheduler,
    ``timeout`` or a closed terminal."""
    return [sig for sig in (getattr(signal, name, None) for name in ("SIGTERM", "SIGHUP")) if sig is not None]


@contextlib.contextmanager
def stop_signals_handled(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (a scheduler's, ``timeout``'s or a closed
    terminal's stop, whose default kills the process on the spot) call ``handler``, which raises
    so that cleanups run. Only signals left at their default are taken over (a handler the caller
    installed stays), only in the main thread (Python delivers signals there alone), and the
    previous handlers are restored afterwards."""
    saved: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in stop_signals():
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(sig) is signal.SIG_DFL:
                    signal.signal(sig, handler)
                    saved[sig] = signal.SIG_DFL
    try:
        yield
    finally:
        for sig, previous in saved.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, previous)  # type: ignore[arg-type]


def _termination_raises() -> contextlib.AbstractContextManager[None]:
    """While the block runs, SIGTERM/SIGHUP raise SystemExit (so ``except BaseException``
    cleanups run) where they would otherwise kill the process."""
    return stop_signals_handled(_exit_on_signal)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an existing device, pipe or socket (``/dev/null``, ``/dev/stdout``,
    a FIFO): a stream to write into, not a file to replace."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _full_disk(e: OSError, targets: list[Path]) -> OSError:
    """A full disk or quota names the outputs being written (the bare OSError named nothing)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(e, DiskFullError):
        names = " and ".join(str(t) for t in targets)
        return DiskFullError(e.errno, f"no space left on device writing {names}; nothing was written there")
    return e


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    A ``path`` that is a stream (``/dev/null``, ``/dev/stdout``, a FIFO) is yielded as it is and
    written into: replacing it would turn ``/dev/null`` into a regular file."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Temporaries for files that belong together (bars and their report), in two phases: the
    block writes them all and each is made durable (fsync), and only then are they renamed onto
    their targets, so a failure up to that point (a full disk, reported by the write or the
    fsync) leaves none of them. A stream among ``paths`` is yielded as it is (``atomic_path``)."""
    streams = [is_stream(p) for p in paths]
    targets = [Path(p) if stream else output_target(p) for p, stream in zip(paths, streams)]
    for target, stream in zip(targets, streams):
        if not stream and target.is_dir():
            raise DataError(f"{target}: is a directory; expected a file name")
        if not stream:
            ensure_parent(target)
    with _termination_raises():
        tmps: list[Path] = []
        try:
            for target, stream in zip(targets, streams):
                if stream:
                    tmps.append(target)
                    continue
                remove_stale_temporaries(target)
                fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
                os.close(fd)
                tmps.append(Path(tmp_name))
            files = [(tmp, target) for tmp, target, stream in zip(tmps, targets, streams) if not stream]
            try:
                yield tuple(tmps)
                for tmp, _ in files:
                    _fsync_file(tmp)  # make the bytes durable before the renames publish them
            except OSError as e:
                full = _full_disk(e, [t for _, t in files])
                if full is e:
                    raise
                raise full from e
            with _stop_signals_deferred():  # the renames: all of them, then a stop takes effect
                for tmp, target in files:
                    os.chmod(tmp, _default_mode(False))
                    os.replace(tmp, target)
        except BaseException:
            for tmp, stream in zip(tmps, streams):
                if not stream:
                    tmp.unlink(missing_ok=True)
            raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a small text file atomically (reports, metadata)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """A SIGTERM or SIGHUP that arrives while the block runs is acted on after it: the swap of a
    directory and the removal of the one it replaced complete together (a stop between them
    reported a failure with the new output in place and the old one half-deleted beside it).
    The handler records the signal rather than the signal being masked: Python runs handlers in
    the main thread whichever thread receives the signal, and masking would have to block it in
    every thread (torch's too). A stop is acted on even when the block failed: it then replaces
    the error (which stays attached as its context), as it would have without the deferral."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if not _deferral.depth and _deferral.pending is not None:
            pending, _deferral.pending = _deferral.pending, None
            _exit_on_signal(pending, None)


def _swap_in(tmp: Path, target: Path, replace: bool = True) -> None:
    """Rename ``tmp`` onto ``target``; a previous ``target`` is moved aside first and put back
    if the rename fails, then deleted. Stop signals wait until all of it is done. Without
    ``replace`` the rename itself refuses a non-empty ``target`` (atomically: a directory renamed
    onto a non-empty one fails), which another process may have written since the checks."""
    with _stop_signals_deferred():
        if not replace:
            try:
                os.rename(tmp, target)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise DataError(f"{target}: another process wrote an output there while this one ran; it was left "
                                "as it is and this output was not written (pass --force to replace it)") from e
            return
        old: Path | None = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".old", dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place when the block succeeds.

    An existing directory at ``path`` is replaced only after the new one is complete: it is
    renamed aside, the new one renamed in, and the old one deleted. A failure inside the block
    (an exception, Ctrl-C, SIGTERM) removes the temporary directory and leaves ``path``
    untouched. Whether an existing directory *may* be replaced is the caller's decision
    (``himari.data.outputs``); with ``replace=False`` (no ``--force``) a directory that another
    process filled while this block ran is refused at the rename rather than replaced.
    """
    target = output_target(path)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: exists and is not a directory")
    ensure_parent(target)
    with _termination_raises():
        remove_stale_temporaries(target)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
        try:
            yield tmp
            for f in tmp.rglob("*"):
                if f.is_file():
                    _fsync_file(f)
            os.chmod(tmp, _default_mode(True))
            _swap_in(tmp, target, replace)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
