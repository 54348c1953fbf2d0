"""``himari backtest``: score runs and baselines on the same bars (a split or a date range), side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from himari.cli.seeds import SEED_MAX


def backtest(
    targets: list[str] = typer.Argument(..., help="Run directories and/or buy-and-hold, never-trade, random."),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file (any importable format, "
                                                  "prepared once into the cache); default: the runs' data "
                                                  "(the synthetic market for baselines alone)."),
    split: str = typer.Option(None, "--split", help="train, validation, test or all (every bar after each "
                                                    "symbol's feature warm-up). Default: test, or all when "
                                                    "--from/--to is given."),
    start: str = typer.Option(None, "--from", help="Score bars opening at or after this UTC date or time "
                                                   "(2025-01-01, 2025-01-01T12:00); within --split if given."),
    end: str = typer.Option(None, "--to", help="Score bars opening before this UTC date or time (exclusive)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the random baseline (HOLD with probability 0.9, SELL or BUY with 0.05 each; block i uses seed + i)."),
    fee: float = typer.Option(None, "--fee", help="Fraction of traded notional paid per fill (default: the "
                                                  "runs' own fee, 0.001 for baselines alone)."),
    slippage: float = typer.Option(None, "--slippage", help="Fraction each fill moves against the trader "
                                                            "(default: the runs' own, 0.0005 for baselines alone)."),
    gross: bool = typer.Option(False, "--gross", help="Add gross (no fees or slippage) Sharpe and return "
                                                      "columns to the table; the JSON always has them."),
    export: Path = typer.Option(None, "--export", help="Write every strategy's per-bar series into this "
                                                       "directory (one file each, plus index.json); replaces "
                                                       "only a previous export."),
    export_format: str = typer.Option("parquet", "--export-format", help="parquet or csv."),
    out: Path = typer.Option(None, "--out", help="Write the results as JSON here (default backtest-<split>.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    adapt_bars: int = typer.Option(None, "--adapt-bars", help="Adapt each run on the first N bars of every scored "
                                                              "range (its training method's inner loop, e.g. "
                                                              "maml, on the labels known by their end) and score "
                                                              "every target only on the bars after them, each run "
                                                              "with and without adaptation."),
) -> None:
    """Backtest after fees and slippage; several targets make a leaderboard sorted by Sharpe.

    Runs keep their saved preprocessing (never refitted) and score on any data with their features.
    """
    import json

    from rich.console import Console

    from himari.data.outputs import check_file_outputs
    from himari.data.prepared import utc_text
    from himari.data.splits import parse_time
    from himari.evaluation.policy import static_position_text
    from himari.evaluation.report import metrics_table, print_line, print_table, volatility_drag_note
    from himari.progress import ConsoleReporter, reporting
    from himari.training.leaderboard import backtest as run_backtest
    from himari.training.report_runs import data_read_by
    from himari.training.rundir import write_json

    default_split = split or ("test" if start is None and end is None else "all")
    path = out or Path(f"backtest-{default_split}.json")
    # Before minutes of scoring: the JSON must not replace the bars, a run's files or a data set.
    check_file_outputs([path], data_read_by([t for t in targets if Path(t).is_dir()], data), example="backtest.json")
    console = Console()
    with reporting(ConsoleReporter(Console(stderr=True) if json_out else console)):  # a model's long phases
        entries, context = run_backtest(list(targets), data=data, split=split, start=start, end=end, seed=seed,
                                        fee=fee, slippage=slippage, export=export, export_format=export_format,
                                        adapt_bars=adapt_bars)
    result = {**context, "results": [{"name": e.name, "kind": e.kind, "checkpoint": e.checkpoint, **e.metrics,
                                      "gross": e.gross} for e in entries]}
    chosen, split = split, context["split"]
    write_json(path, result)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    c = context["costs"]
    synthetic = _synthetic_market(context["data"]) if data is None else None
    if synthetic:
        # the runs' own data may be any synthetic set; without runs it is the built-in market
        what = ("the runs' data, a synthetic market" if any(e.kind == "run" for e in entries)
                else "the built-in synthetic market")
        print_line(console, f"no --data: scoring on {what} ({synthetic})")
    print_line(console, f"data: {context['data']}")
    if data is not None and not Path(data).is_dir() and chosen is None and start is None and end is None:
        print_line(console, f"{data} was prepared with the default split: scoring its test split (its last "
                            "15%); --split all or --from/--to score other bars")
    n_ranges = len(context["ranges"])
    print_line(console, f"bars scored: {context['bars']:,} of {', '.join(context['symbols'])}, "
                        f"{utc_text(parse_time(context['first']))} .. {utc_text(parse_time(context['last']))} UTC "
                        f"({n_ranges} block{'s' if n_ranges > 1 else ''}, each traded from flat)")
    if adapt_bars is not None and "adapt_label_rows" in context:
        print_line(console, f"adapted on the first {adapt_bars} bars of each block (labels of their first "
                            f"{context['adapt_label_rows'][0][1] - context['adapt_label_rows'][0][0]} bars, known by "
                            f"the end of them); every row scores only the bars after them")
    elif adapt_bars is not None:
        print_line(console, f"adapted on the first {adapt_bars} bars of each block (rollouts of the policy over them; "
                            f"no label is read); every row scores only the bars after them")
    where = "all bars" if split == "all" else f"{split} split"
    if context["from"] is not None or context["to"] is not None:
        where += f" from {context['from'] or 'the start'} to {context['to'] or 'the end'}"
    rows = [(e.name, split, e.metrics, e.kind == "run") for e in entries]
    if gross:
        rows = [(name, sp, {**m, "gross_sharpe": e.gross["sharpe"], "gross_return": e.gross["total_return"]}, model)
                for (name, sp, m, model), e in zip(rows, entries)]
    columns = table_columns(gross)
    print_table(console, metrics_table(rows, title=f"{where}, fee {c['fee']:g} + slippage {c['slippage']:g} "
                                                   "per fill", columns=columns))
    note = volatility_drag_note([(e.name, e.metrics) for e in entries])
    if note:
        print_line(console, note)
    for e in entries:
        if e.kind == "run" and e.checkpoint == "last.pt":
            print_line(console, f"[bold yellow]{e.name}: no best.pt (the run stopped before its first validation); "
                                "scored its last checkpoint[/]")
        if e.kind == "run" and e.metrics["collapsed"]:
            print_line(console, f"[bold red]COLLAPSE:[/] {e.name}: {e.metrics['dominant_action']} takes "
                                f"{100 * e.metrics['dominant_share']:.1f}% of decisions")
        line = static_position_text(e.name, e.metrics) if e.kind == "run" else None
        if line:
            print_line(console, f"[bold yellow]{line}[/]")
    if export is not None:
        print_line(console, f"per-bar series of {len(entries)} strateg{'ies' if len(entries) > 1 else 'y'} "
                            f"exported to {export} ({export_format}, index.json)")
    print_line(console, f"written {path}")


def table_columns(gross: bool) -> list[tuple[str, str, str]]:
    """The number columns of the leaderboard; with ``gross``, gross Sharpe and return beside the
    net ones (metrics keys ``gross_sharpe``, ``gross_return``). Their two-line headers, and
    "in market" over the exposure, keep a table of baseline-length names within 80 columns."""
    from himari.evaluation.report import COLUMNS

    columns = list(COLUMNS)
    if gross:
        columns[2:2] = [("gross_sharpe", "gross\nSharpe", "{:+.2f}"), ("gross_return", "gross\nreturn", "{:+.2%}")]
        columns = [(k, "in\nmarket" if k == "exposure" else label, fmt) for k, label, fmt in columns]
    return columns


def _synthetic_market(data: str) -> str | None:
    """Size and seed of the synthetic market that the prepared directory ``data`` was made
    from, read from its sources (an in-memory synthesis, or a synthetic bars file's metadata);
    None for real bars."""
    import json

    from himari.data.frame import read_bars_metadata

    meta = json.loads((Path(data) / "metadata.json").read_text(encoding="utf-8"))
    for src in meta.get("sources") or []:
        synth = src.get("config") if src.get("format") == "synthetic" else None
        if synth is None and src.get("path") and Path(src["path"]).is_file():
            try:
                synth = (read_bars_metadata(src["path"]) or {}).get("synthetic")
            except (OSError, ValueError):  # an unreadable source only loses the note
                synth = None
        if synth:
            return f"{int(synth['bars']):,} bars, seed {synth['seed']}"
    return None
