"""SIGTERM (and SIGHUP) handled as Ctrl-C while a long command runs.

Job schedulers, ``timeout``, ``docker stop`` and a closed terminal stop a process with SIGTERM or
SIGHUP, whose default action ends it on the spot: a run killed before its first checkpoint kept
a half-made directory that later commands reject, where Ctrl-C (``KeyboardInterrupt``) lets the
command clean up, or say how to continue. Inside ``stop_signals_interrupt`` those signals raise
``Terminated``, a ``KeyboardInterrupt``, so one code path handles all three; the command then
exits with ``128 + signal`` as a shell reports a process the signal ended.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from himari.data.atomic import stop_signals_handled
from himari.errors import HimariError

INTERRUPTED_EXIT = 130
"""Exit code after Ctrl-C (128 + SIGINT)."""


class Interrupted(HimariError):
    """A long command stopped by Ctrl-C or a stop signal before it finished: the message says what
    was kept and how to continue; ``exit_code`` is 128 + the signal, the command's exit status."""

    def __init__(self, message: str, exit_code: int = INTERRUPTED_EXIT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []
"""The stop signals that arrived inside ``stop_signals_interrupt``: a library that catches the
``Terminated`` and raises a plain ``KeyboardInterrupt`` of its own (Ray Tune) loses the signal."""


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the command: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    if isinstance(interrupt, Terminated):
        return 128 + interrupt.signum
    return 128 + _received[-1] if _received else INTERRUPTED_EXIT


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # a second signal while the cleanup runs must not cut it short
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_IGN)
    _received.append(signum)
    raise Terminated(signum)


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise ``Terminated`` instead of ending the
    process (``himari.data.atomic.stop_signals_handled``: signals at their default only, in the
    main thread, the previous handlers restored afterwards)."""
    _received.clear()
    with stop_signals_handled(_raise_terminated):
        yield


__all__ = ["INTERRUPTED_EXIT", "Interrupted", "Terminated", "exit_code", "stop_signals_interrupt"]
