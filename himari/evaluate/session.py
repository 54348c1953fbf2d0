"""One ``himari evaluate`` session: the evaluation directory (checked, created, locked), the runs
with a progress bar over folds and seeds, the analysis, the files, the report and the tables."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from himari.errors import ConfigError
from himari.evaluate.runner import RESULT, SETTINGS, Evaluation, EvaluationConfig, elapsed
from himari.training.interrupt import Interrupted


class EvaluationInterrupted(Interrupted):
    """Ctrl-C (or a stop signal the command turns into one) ended the evaluation; the message says
    whether its directory was kept and how to continue it."""


def _new_directory(config: EvaluationConfig, out: Path | None) -> Path:
    if out is not None:
        return Path(out)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("evaluations") / config.model / stamp
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{stamp}-{i}")
    return path


def run_evaluation(config: EvaluationConfig | None, directory: Path | None, plugins: Any, console: Any) -> dict[str, Any]:
    """A new evaluation (``config``, into ``directory`` or a new one) or, with ``config`` None, the
    one in ``directory`` continued. Returns the content of ``evaluation.json``."""
    from himari.training.rundir import RunLock, check_run_dir_target

    resuming = config is None
    if resuming:
        assert directory is not None
        settings = Path(directory) / SETTINGS
        if not settings.is_file():
            raise ConfigError(f"{directory}: not a himari evaluation directory (no {SETTINGS})")
        try:
            config = EvaluationConfig.from_dict(yaml.safe_load(settings.read_text(encoding="utf-8")))
        except (yaml.YAMLError, TypeError, KeyError, ValueError) as e:
            raise ConfigError(f"{settings}: damaged evaluation settings ({e})") from None
        if config.data is not None and not Path(config.data).is_absolute() and not Path(config.data).exists():
            # settings written before the data path was recorded absolutely name it from the
            # directory the evaluation was started in
            raise ConfigError(f"{settings}: data {config.data} is relative to the directory the evaluation was "
                              f"started in, and not found from here; resume it from that directory")
    else:
        if config.data is not None:  # absolute, so --resume works from any directory (as runs record it)
            config = replace(config, data=str(Path(config.data).resolve()))
        directory = _new_directory(config, directory)
        check_run_dir_target(directory, resume=False)
    assert config is not None and directory is not None
    evaluation = Evaluation(config, directory, plugins=plugins, console=console)  # every check before any file
    lock = RunLock(directory)
    lock.acquire()
    started_any = finished_any = resuming
    try:
        if not resuming:
            from himari.data.atomic import write_text_atomic

            write_text_atomic(directory / SETTINGS, yaml.safe_dump(config.to_dict(), sort_keys=False))
        t0 = time.perf_counter()
        _print_plan(evaluation, console)
        with _progress(console, len(evaluation.runs)) as advance:
            def started(label: str) -> None:  # an interrupt after this keeps a run to resume
                nonlocal started_any
                advance(label)
                started_any = True

            def finished() -> None:  # a failure before this leaves nothing behind
                nonlocal finished_any
                finished_any = True

            evaluation.train_all(started, finished)
        console.print(f"trained {len(evaluation.runs)} runs in {elapsed(t0)}; scoring out of sample")
        result = evaluation.analyse()
        evaluation.write(result)
        _write_report(directory, console)
        from himari.evaluate.tables import print_evaluation

        print_evaluation(console, result, directory)
        return result
    except KeyboardInterrupt as e:
        from himari.training.interrupt import exit_code

        if not started_any:
            lock.remove_created()
            raise EvaluationInterrupted("interrupted before the first run started; nothing was kept",
                                        exit_code(e)) from None
        raise EvaluationInterrupted(f"interrupted; continue the evaluation (its finished runs are kept) with: "
                                    f"himari evaluate --resume {directory}", exit_code(e)) from None
    except BaseException:
        if not finished_any:
            lock.remove_created()
        raise
    finally:
        lock.release()


def _print_plan(evaluation: Evaluation, console: Any) -> None:
    c = evaluation.config
    parts = [f"{c.walk_forward} walk-forward folds ({c.fold_mode})"]
    if evaluation.held_out is not None:
        parts = [f"{len(evaluation.folds)} of {c.walk_forward} walk-forward folds ({c.fold_mode}; the last one's "
                 f"test block, from {evaluation.span(evaluation.held_out.test)['start'][:10]}, held out)"]
    if evaluation.cpcv_folds:
        parts.append(f"{len(evaluation.cpcv_folds)} CPCV splits ({c.cpcv[0]} groups, {c.cpcv[1]} tested; "  # type: ignore[index]
                     f"{len(evaluation.paths)} paths)")
    configs = f" x {len(evaluation.configs)} configurations" if len(evaluation.configs) > 1 else ""
    console.print(f"evaluating [bold]{c.model}[/] on {evaluation.data_path}: {' + '.join(parts)} x "
                  f"{len(c.seeds)} seeds{configs} = {len(evaluation.runs)} runs; embargo {evaluation.embargo} bars; "
                  f"directory {evaluation.directory}", soft_wrap=not console.is_terminal)


class _progress:
    """A rich bar over the runs on a terminal; a line per run in a log."""

    def __init__(self, console: Any, total: int) -> None:
        from himari.progress import progress_bar

        self.console, self.total, self.done = console, total, 0
        self.bar = progress_bar(console, console.is_terminal)
        self.task: Any = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> Any:
        self.bar.__enter__()
        self.task = self.bar.add_task("runs", total=self.total, info="")

        def advance(label: str) -> None:
            if not self.console.is_terminal:
                self.console.print(f"[{self.done + 1}/{self.total}] {label} ({elapsed(self.t0)} so far)")
            self.bar.update(self.task, completed=self.done, info=label)
            self.done += 1

        return advance

    def __exit__(self, *exc: Any) -> None:
        self.bar.update(self.task, completed=self.total)
        self.bar.__exit__(*exc)


def _write_report(directory: Path, console: Any) -> None:
    """``report.html`` beside ``evaluation.json`` (skipped, with a line, where plotly is missing)."""
    from himari.plugin.extras import is_installed

    if not is_installed("plotly"):
        console.print("no report.html: it needs plotly (pip install 'himari[report]')")
        return
    from himari.evaluation.html_report.evaluation_dir import load_evaluation
    from himari.evaluation.html_report.page import write_report

    write_report([load_evaluation(directory)], directory / "report.html")


__all__ = ["RESULT", "EvaluationInterrupted", "run_evaluation"]
