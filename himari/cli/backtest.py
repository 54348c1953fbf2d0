"""``himari backtest``: score runs and baselines on one split, side by side."""

from __future__ import annotations

from pathlib import Path

import typer


def backtest(
    targets: list[str] = typer.Argument(..., help="Run directories and/or buy-and-hold, never-trade, random."),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file; default: the runs' data "
                                                  "(the synthetic market for baselines alone)."),
    split: str = typer.Option("test", "--split", help="train, validation or test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random baseline."),
    fee: float = typer.Option(None, "--fee", help="Fraction of traded notional paid per fill (default: the "
                                                  "runs' own fee, 0.001 for baselines alone)."),
    slippage: float = typer.Option(None, "--slippage", help="Fraction each fill moves against the trader "
                                                            "(default: the runs' own, 0.0005 for baselines alone)."),
    out: Path = typer.Option(None, "--out", help="Write the results as JSON here (default backtest-<split>.json)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Backtest after fees and slippage; several targets make a leaderboard sorted by Sharpe."""
    import json

    from rich.console import Console

    from himari.training.leaderboard import backtest as run_backtest
    from himari.evaluation.policy import static_position_text
    from himari.evaluation.report import metrics_table, print_line, print_table, volatility_drag_note
    from himari.progress import ConsoleReporter, reporting
    from himari.training.rundir import write_json

    console = Console()
    with reporting(ConsoleReporter(Console(stderr=True) if json_out else console)):  # a model's long phases
        entries, context = run_backtest(list(targets), data=data, split=split, seed=seed, fee=fee,
                                         slippage=slippage)
    result = {**context, "results": [{"name": e.name, "kind": e.kind, "checkpoint": e.checkpoint, **e.metrics}
                                     for e in entries]}
    path = out or Path(f"backtest-{split}.json")
    write_json(path, result)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    c = context["costs"]
    synthetic = _synthetic_market(context["data"]) if data is None else None
    if synthetic:
        whose = "the runs' data, " if any(e.kind == "run" for e in entries) else ""
        print_line(console, f"no --data: scoring on {whose}the built-in synthetic market ({synthetic})")
    print_line(console, f"data: {context['data']}")
    rows = [(e.name, split, e.metrics, e.kind == "run") for e in entries]
    print_table(console, metrics_table(rows, title=f"{split} split, {context['bars']:,} bars, "
                                                   f"fee {c['fee']:g} + slippage {c['slippage']:g} per fill"))
    note = volatility_drag_note([(e.name, e.metrics) for e in entries])
    if note:
        print_line(console, note)
    for e in entries:
        if e.kind == "run" and e.metrics["collapsed"]:
            print_line(console, f"[bold red]COLLAPSE:[/] {e.name}: {e.metrics['dominant_action']} takes "
                                f"{100 * e.metrics['dominant_share']:.1f}% of decisions")
        line = static_position_text(e.name, e.metrics) if e.kind == "run" else None
        if line:
            print_line(console, f"[bold yellow]{line}[/]")
    print_line(console, f"written {path}")


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
