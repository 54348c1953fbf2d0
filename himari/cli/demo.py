"""``himari demo``: the native core on the synthetic market, in seconds and offline."""

from __future__ import annotations

import typer

from himari.cli.seeds import SEED_MAX


def demo(
    bars: int = typer.Option(20_000, help="Synthetic 5-minute bars to generate."),
    seed: int = typer.Option(0, min=0, max=SEED_MAX, help="Seed of the synthetic market and the random policies."),
    random_strategies: int = typer.Option(256, min=1, help="Random policies backtested next to the baselines."),
) -> None:
    """Backtest buy-and-hold, never-trade and random policies; step the env; run the EKF."""
    from rich.console import Console

    from himari.demo import run_demo
    from himari.evaluation.report import metrics_table, print_line, print_table, volatility_drag_note

    result = run_demo(bars=bars, seed=seed, random_strategies=random_strategies)
    console = Console()
    rows = [(str(row["strategy"]), "", row, False) for row in result.table]
    print_table(console, metrics_table(rows, title=f"{result.bars:,} synthetic bars, fee 0.1% + slippage 0.05% "
                                                   f"per fill"))
    note = volatility_drag_note([(name, m) for name, _, m, _ in rows])
    if note:
        print_line(console, note)
    print_line(
        console,
        f"backtest of {result.random_strategies + 2} strategies: {result.backtest_seconds * 1e3:.1f} ms; "
        f"env: {result.env_steps_per_second / 1e6:.1f}M steps/s with {result.env_envs} envs; "
        f"EKF: {result.ekf_samples_per_second / 1e6:.1f}M bars/s "
        f"(last per-bar volatility {result.ekf_final_volatility:.3%})"
    )
