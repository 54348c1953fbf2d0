"""Tables and lines of policy metrics for the console (rich), shared by training and backtests.

They are read in 80-column terminals and in logs that are not terminals, so a strategy name
or a run directory is never folded: the tables use a light border, drop a split column that
every row shares, and where even their narrowest layout is wider than the console they are
printed at that width (lines run past the edge, nothing is cut or split).
"""

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


def metrics_table(rows: Sequence[tuple[str, str, dict[str, Any], bool]], title: str = "",
                  columns: Sequence[tuple[str, str, str]] = COLUMNS) -> Any:
    """One row per (strategy, split, metrics, is_model); collapse is flagged on model rows only
    (a baseline such as buy-and-hold holds by design). The split column is left out when every
    row has the same split (say it in the title); the action column appears when some row has
    an action distribution. ``columns``: (metrics key, header, format) of the number columns."""
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    with_split = len({split for _, split, _, _ in rows}) > 1
    with_actions = any(m.get("actions") for _, _, m, _ in rows)
    table.add_column("strategy", no_wrap=True)
    if with_split:
        table.add_column("split", no_wrap=True)
    for _, label, _ in columns:
        table.add_column(label, justify="right", no_wrap=True)
    if with_actions:
        table.add_column("S/H/B %")  # wraps only between the distribution and "collapsed"
    for name, split, m, is_model in rows:
        table.add_row(name, *([split] if with_split else []),
                      *(fmt.format(float(m[key])) for key, _, fmt in columns),
                      *([actions_cell(m, is_model)] if with_actions else []))
    return table


def print_table(console: Any, table: Any) -> None:
    """Print ``table`` on ``console`` without squeezing it: where its narrowest layout (every
    no-wrap cell whole) is wider than the console, it is printed at that width, uncropped."""
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(10_000), table).minimum
    if need > console.width:
        table.width = need
        console.print(table, crop=False)
    else:
        console.print(table)


def volatility_drag_note(rows: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """A line explaining rows with a positive Sharpe beside a negative total return, or None.

    Sharpe is the arithmetic mean of the per-bar returns over their standard deviation; the
    total return compounds them, and compounding loses about half the variance per bar
    (volatility drag), so a small positive mean can still lose money."""
    names = [name for name, m in rows if float(m["sharpe"]) > 0 and float(m["total_return"]) < 0]
    if not names:
        return None
    return (f"{', '.join(names)}: a positive Sharpe beside a negative return is volatility drag: Sharpe "
            f"uses the arithmetic mean of the per-bar returns, the total return compounds them, and "
            f"compounding loses about half their variance per bar (docs/training.md, Metrics)")


def print_line(console: Any, text: str) -> None:
    """Print one message (rich markup): word-wrapped on a terminal, one unbroken line in a log
    (so a path or a strategy name in it is never split and the line stays greppable)."""
    console.print(text, soft_wrap=not console.is_terminal)


def _pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


def epoch_lines(epoch: int, epochs: int, train_loss: float, val_loss: float | None, val: dict[str, Any],
                best: bool, width: int) -> list[str]:
    """The console line of a scored epoch (rich markup), split in two where one line would be
    wider than ``width``: the losses first, the validation backtest indented below."""
    from rich.text import Text

    head = [f"epoch {epoch}/{epochs}", f"loss {train_loss:.4f}"]
    if val_loss is not None:
        head.append(f"val_loss {val_loss:.4f}")
    dist = val.get("actions") or {}
    backtest = [f"val sharpe {float(val['sharpe']):+.2f}", f"return {_pct(float(val['total_return']))}",
                f"mdd {100 * float(val['max_drawdown']):.1f}%", f"trades {int(val['n_trades']):,}",
                f"S/H/B {'/'.join(f'{100 * v:.0f}' for v in dist.values())}"]
    mark = ["[green]best[/]"] if best else []
    one = "  ".join(head + backtest + mark)
    if Text.from_markup(one).cell_len <= width:
        return [one]
    return ["  ".join(head + mark), "  " + "  ".join(backtest)]
