"""``himari demo``: the native core on the synthetic market, in seconds and offline."""

from __future__ import annotations

import typer


def demo(
    bars: int = typer.Option(20_000, help="Synthetic 5-minute bars to generate."),
    seed: int = typer.Option(0, help="Seed of the synthetic market and the random policies."),
    random_strategies: int = typer.Option(256, help="Random policies backtested next to the baselines."),
) -> None:
    """Backtest buy-and-hold, never-trade and random policies; step the env; run the EKF."""
    from rich.console import Console
    from rich.table import Table

    from himari.demo import run_demo

    result = run_demo(bars=bars, seed=seed, random_strategies=random_strategies)
    console = Console()
    table = Table(title=f"Synthetic market, {result.bars:,} bars, fee 0.1% + slippage 0.05% per fill")
    columns = ["total_return", "sharpe", "max_drawdown", "n_trades", "exposure"]
    table.add_column("strategy")
    for c in columns:
        table.add_column(c, justify="right")
    for row in result.table:
        table.add_row(str(row["strategy"]), *(f"{float(row[c]):.4g}" for c in columns))
    console.print(table)
    console.print(
        f"backtest of {result.random_strategies + 2} strategies: {result.backtest_seconds * 1e3:.1f} ms; "
        f"env: {result.env_steps_per_second / 1e6:.1f}M steps/s with {result.env_envs} envs; "
        f"EKF: {result.ekf_samples_per_second / 1e6:.1f}M bars/s "
        f"(last per-bar volatility {result.ekf_final_volatility:.3%})"
    )
