"""Tables of policy metrics for the console (rich), shared by training summaries and backtests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = (("sharpe", "Sharpe", "{:+.2f}"), ("total_return", "return", "{:+.2%}"),
           ("max_drawdown", "max DD", "{:.2%}"), ("n_trades", "trades", "{:,.0f}"),
           ("exposure", "exposure", "{:.1%}"))


def actions_cell(metrics: dict[str, Any], flag_collapse: bool = True) -> str:
    dist = metrics.get("actions") or {}
    text = "/".join(f"{100 * v:.0f}" for v in dist.values())
    return f"[bold red]{text} collapsed[/]" if flag_collapse and metrics.get("collapsed") else text


def metrics_table(rows: Sequence[tuple[str, str, dict[str, Any], bool]], title: str = "") -> Any:
    """One row per (strategy, split, metrics, is_model); collapse is flagged on model rows only
    (a baseline such as buy-and-hold holds by design)."""
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("strategy", overflow="fold")
    table.add_column("split")
    for _, label, _ in COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("S/H/B %")
    for name, split, m, is_model in rows:
        table.add_row(name, split, *(fmt.format(float(m[key])) for key, _, fmt in COLUMNS),
                      actions_cell(m, is_model))
    return table
