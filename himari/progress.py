"""Progress of long phases inside a plugin: a critic's pre-training, a sequential evaluation.

A phase that can take more than a few seconds is wrapped in ``phase``, which yields a function
to call as the work advances::

    from himari.progress import phase

    with phase("critic pre-training", total=steps) as advance:
        for step in range(steps):
            ...
            advance()

How it shows is up to whoever drives the work, so a plugin never needs a console. The Trainer and
``himari backtest`` install a ``ConsoleReporter``: on a terminal a rich bar that advances (in
the same display as the Trainer's epoch bar), in a log a line when the phase starts and one with
its duration when it ends. With no reporter installed (a library call) phases are silent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

Advance = Callable[..., None]
"""``advance(n=1)``: n more units of the phase's total are done."""


class Reporter(Protocol):
    def phase(self, description: str, total: int | None = None) -> AbstractContextManager[Advance]: ...


_current: ContextVar[Reporter | None] = ContextVar("himari_progress_reporter", default=None)


def _ignore(n: int = 1) -> None:
    return None


@contextmanager
def phase(description: str, total: int | None = None) -> Iterator[Advance]:
    """Report the phase ``description`` (``total`` units of work, None if unknown) to the
    installed reporter; yields ``advance(n=1)``."""
    reporter = _current.get()
    if reporter is None:
        yield _ignore
        return
    with reporter.phase(description, total) as advance:
        yield advance


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Install ``reporter`` for the phases started inside the block (this thread or task)."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def current() -> Reporter | None:
    return _current.get()


def progress_bar(console: Any, enabled: bool) -> Any:
    """The rich ``Progress`` of himari's bars (description, bar, done/total, elapsed, a free
    ``info`` field), transient, drawn only when ``enabled``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console,
                    transient=True, disable=not enabled)


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m{secs:02d}s"


class ConsoleReporter:
    """Phases on a rich console. With ``bars`` on a terminal, each phase is a bar in ``live``
    (a ``progress_bar`` already on screen, such as the Trainer's epoch bar: rich draws one live
    display at a time) or in a bar of its own; otherwise a line at the start. Either way a line
    with the duration at the end, so a log shows what ran and for how long."""

    def __init__(self, console: Any, bars: bool = True, live: Any = None) -> None:
        self.console = console
        self.bars = bars and console.is_terminal
        self.live = live

    def _say(self, text: str) -> None:
        self.console.print(text, soft_wrap=not self.console.is_terminal, highlight=False)

    @contextmanager
    def phase(self, description: str, total: int | None = None) -> Iterator[Advance]:
        start = time.perf_counter()
        if self.bars:
            own = self.live is None
            progress = progress_bar(self.console, True) if own else self.live
            if own:
                progress.start()
            task = progress.add_task(description, total=total, info="")
            try:
                yield lambda n=1: progress.advance(task, n)
            finally:
                progress.remove_task(task)
                if own:
                    progress.stop()
        else:
            self._say(f"{description} ...")
            yield _ignore
        self._say(f"{description}: done in {duration_text(time.perf_counter() - start)}")
