"""``himari report``: one self-contained HTML page of runs and evaluations, side by side."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    targets: list[str] = typer.Argument(None, help="Run directories and/or evaluation directories.",
                                        show_default=False),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    split: str = typer.Option(None, "--split", help="Split run directories are scored on: train, validation or "
                                                    "test (default test).", show_default=False),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file run directories are scored on "
                                                  "(default: each run's own data).", show_default=False),
    window: int = typer.Option(None, "--window", help="Bars in the rolling Sharpe window (default: 30 days, at "
                                                      "most a fifth of the shortest series).", show_default=False),
    title: str = typer.Option("himari report", "--title", help="Title of the page."),
) -> None:
    """Write an HTML report (equity, drawdown, positions, rolling Sharpe, folds, gates, leaderboard)."""
    from rich.console import Console

    from himari.evaluation.html_report import check_output, write_report
    from himari.evaluation.report import print_line
    from himari.plugin.extras import MissingExtraError, is_installed
    from himari.progress import ConsoleReporter, reporting
    from himari.training.report_runs import data_read_by, load_targets

    if not is_installed("plotly"):
        raise MissingExtraError("himari report needs plotly, which is not installed: pip install 'himari[report]'")
    if window is not None and window < 2:
        from himari.errors import ConfigError

        raise ConfigError(f"--window: a rolling Sharpe ratio needs at least 2 bars, got {window}")
    check_output(out, [*(targets or []), *data_read_by(targets or [], data)])  # before minutes of scoring
    console = Console()
    with reporting(ConsoleReporter(console)):
        loaded = load_targets(list(targets or []), data=data, split=split)
    path = write_report(loaded, out, title=title, window=window)
    size = path.stat().st_size / 1e6
    print_line(console, f"written {out} ({size:.1f} MB, opens offline)")
