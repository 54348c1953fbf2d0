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

    from himari.evaluation.leaderboard import backtest as run_backtest
    from himari.evaluation.policy import static_position_text
    from himari.evaluation.report import metrics_table
    from himari.training.rundir import write_json

    entries, context = run_backtest(list(targets), data=data, split=split, seed=seed, fee=fee, slippage=slippage)
    result = {**context, "results": [{"name": e.name, "kind": e.kind, "checkpoint": e.checkpoint, **e.metrics}
                                     for e in entries]}
    path = out or Path(f"backtest-{split}.json")
    write_json(path, result)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    c = context["costs"]
    rows = [(e.name, split, e.metrics, e.kind == "run") for e in entries]
    console.print(metrics_table(rows, title=f"{split} split of {context['data']} ({context['bars']:,} bars), "
                                            f"fee {c['fee']:g} + slippage {c['slippage']:g} per fill"))
    for e in entries:
        if e.kind == "run" and e.metrics["collapsed"]:
            console.print(f"[bold red]COLLAPSE:[/] {e.name}: {e.metrics['dominant_action']} takes "
                          f"{100 * e.metrics['dominant_share']:.1f}% of decisions")
        line = static_position_text(e.name, e.metrics) if e.kind == "run" else None
        if line:
            console.print(f"[bold yellow]{line}[/]")
    console.print(f"written {path}")
