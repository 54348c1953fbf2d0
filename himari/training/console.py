"""What the Trainer prints: the start line, progress (the epoch bar and the plugins' long phases),
each epoch's verdict and the final summary table with its warnings. Only rank 0 prints; these
functions take the console and plain values, so the loop stays free of formatting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from himari.evaluation.policy import static_position_text
from himari.evaluation.report import epoch_lines, metrics_table, print_line, print_table, volatility_drag_note
from himari.trading import EnvConfig


@contextlib.contextmanager
def progress(console: Any, bars: bool) -> Iterator[Any]:
    """The epoch bar (on a terminal, with ``train.progress``), and a reporter that shows the long
    phases a model or method reports inside the loop (``himari.progress``) in the same display,
    or as start and end lines in a log."""
    from himari.progress import ConsoleReporter, progress_bar, reporting

    bar = progress_bar(console, bars and console.is_terminal)
    with bar, reporting(ConsoleReporter(console, bars, live=bar)):
        yield bar


def phases(console: Any, bars: bool) -> Any:
    """Outside the loop (the final evaluation), a reporter for the model's long phases."""
    from himari.progress import ConsoleReporter, current, reporting

    return contextlib.nullcontext() if current() else reporting(ConsoleReporter(console, bars))


def start_line(console: Any, model: str, data_path: Any, where: str, what: str, run_dir: Path) -> None:
    print_line(console, f"training [bold]{model}[/] on {data_path} ({where}); {what}; run dir {run_dir}")


def epoch_verdict(console: Any, epoch: int, epochs: int, train_loss: float, val_loss: float | None,
                  val: dict[str, Any], improved: bool, stopped_early: bool, patience: int) -> None:
    for line in epoch_lines(epoch + 1, epochs, train_loss, val_loss, val, improved, console.width):
        print_line(console, line)
    if val["collapsed"]:
        print_line(console, f"[bold red]COLLAPSE:[/] {val['dominant_action']} takes "
                            f"{100 * val['dominant_share']:.1f}% of validation decisions (> 90%)")
    if stopped_early:
        console.print(f"early stop: no better validation Sharpe for {patience} epochs")


def execution_text(execution: dict[str, Any]) -> str:
    """The execution rules of a run in words (summary.json's ``execution``)."""
    k, m, c = execution["decision_interval"], execution["min_hold"], execution["confidence"]
    parts = [f"decide every {k} bar{'s' if k != 1 else ''}",
             f"hold at least {m} bars after a change" if m > 1 else "no minimum hold",
             f"act above confidence {c:g}" if c > 0 else "no confidence threshold"]
    return ", ".join(parts)


def summary(console: Any, model: str, summary: dict[str, Any], env: EnvConfig, run_dir: Path) -> None:
    execution = summary.get("execution")
    if execution is not None and execution["selected"]:
        print_line(console, f"execution rules chosen on validation (best Sharpe after costs of "
                            f"{len(execution['grid'])} combinations, {execution['validation_sharpe']:+.2f}): "
                            f"{execution_text(execution)}")
    elif execution is not None:
        print_line(console, f"execution rules: {execution_text(execution)}")
    rows = [(model, split, summary[split]["model"], True) for split in ("validation", "test")]
    rows += [(name, "test", summary["test"][name], False) for name in ("buy-and-hold", "never-trade")]
    print_table(console, metrics_table(rows, title=f"{model} (best epoch {summary['best_epoch']}), after fee "
                                                   f"{env.fee:g} + slippage {env.slippage:g} per fill"))
    note = volatility_drag_note([(f"{name} on {split}", m) for name, split, m, _ in rows])
    if note:
        print_line(console, note)
    for split, flag in summary["collapsed"].items():
        if flag:
            m = summary[split]["model"]
            print_line(console, f"[bold red]COLLAPSE on {split}:[/] {m['dominant_action']} takes "
                                f"{100 * m['dominant_share']:.1f}% of decisions: the model barely "
                                f"trades on its own signal")
    for split in ("validation", "test"):
        line = static_position_text(f"{model} on {split}", summary[split]["model"])
        if line:
            print_line(console, f"[bold yellow]{line}[/]")
    print_line(console, f"run saved in {run_dir}")
