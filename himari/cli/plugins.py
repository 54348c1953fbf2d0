"""``himari plugins list|show``: what is installed, from where, with which settings."""

from __future__ import annotations

from typing import Any

import typer

from himari.cli.completion import complete_plugin

app = typer.Typer(no_args_is_help=True, help="List installed plugins and show their settings.")

_KIND_HELP = "model, preprocessor, training-method, tracker or generator"


def _kinds(kind: str | None) -> tuple[str, ...]:
    from himari.errors import ConfigError
    from himari.plugin.api import KINDS

    if kind is None:
        return KINDS
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    return (kind,)


@app.command("list")
def list_cmd(
    kind: str = typer.Option(None, "--kind", help=f"Only this kind: {_KIND_HELP}."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every plugin, built-in or third-party: kind, name, code, origin, summary, parameters."""
    import json

    from rich.console import Console

    from himari.plugin.listing import list_plugins
    from himari.plugin.manager import get_plugins

    data = list_plugins(get_plugins(), _kinds(kind))
    if json_out:
        print(json.dumps(data, indent=2))
        return
    console = Console()
    for table in plugin_tables(data, console):
        console.print(table)


SUMMARY_MIN_WIDTH = 40
"""Narrowest summary column of the one-table layout; below it the summaries would run over many
lines, so ``plugins list`` switches to one narrower table per kind."""


def _origin(row: dict[str, Any]) -> str:
    return f"{row['distribution']} {row['version']}" if row["distribution"] else row["plugin"]


def _params(row: dict[str, Any]) -> str:
    p = row.get("parameters")
    if p is None:
        return ""
    return p.get("error", "?") if "error" in p else f"{p['total']:,} ({p['trainable']:,})"


def plugin_tables(data: dict[str, Any], console: Any) -> list[Any]:
    """The tables of ``plugins list`` for ``console``'s width.

    One table with every column (kind, name, code, origin, summary, parameters) where it fits
    with a summary column at least ``SUMMARY_MIN_WIDTH`` wide; otherwise one table per kind
    without the kind column, the code beside the name and the parameters only for models. Names,
    codes and origins never wrap; summaries wrap at spaces only (a column is never narrower than
    its longest word), so no word is split."""
    wide = _wide_table(data)
    if _min_width(wide) <= console.width:
        return [wide]
    return _narrow_tables(data)


def _min_width(table: Any) -> int:
    """Width of ``table`` with its wrapping columns at their minimum: no-wrap columns as wide as
    their widest cell or header, the others at ``min_width``; plus borders and padding."""
    from rich.text import Text

    def width(column: Any) -> int:
        if not column.no_wrap:
            return int(column.min_width or 1)
        cells = [column.header, *column.cells]
        return max(Text.from_markup(c).cell_len if isinstance(c, str) else 1 for c in cells)

    return sum(width(c) for c in table.columns) + 3 * len(table.columns) + 1


def _table(title: str | None) -> Any:
    from rich.table import Table

    return Table(title=title, title_justify="left")


def _summary_column(table: Any, rows: list[str], min_width: int = 0, header: str = "summary") -> None:
    """A wrapping column never narrower than its longest word (rich folds a word only when it
    does not fit the column)."""
    longest = max((len(w) for text in rows for w in text.split()), default=0)
    table.add_column(header, min_width=max(longest, min_width), overflow="fold")


def _wide_table(data: dict[str, Any]) -> Any:
    table = _table("himari plugins")
    for col in ("kind", "name", "code", "origin"):
        table.add_column(col, no_wrap=True)
    _summary_column(table, [r["summary"] for r in data["plugins"]] + [b["reason"] for b in data["blocked"]],
                    SUMMARY_MIN_WIDTH)
    table.add_column("params (trainable)", justify="right", no_wrap=True)
    for row in data["plugins"]:
        table.add_row(row["kind"], row["name"], row["code"] or "", _origin(row), row["summary"], _params(row))
    for b in data["blocked"]:
        origin = f"{b['distribution']} {b['version']}" if b["distribution"] else ""
        table.add_row("[dim]blocked[/]", f"[dim]{b['plugin']}[/]", "", origin, f"[dim]{b['reason']}[/]", "")
    return table


def _narrow_tables(data: dict[str, Any]) -> list[Any]:
    tables = []
    kinds = list(dict.fromkeys(r["kind"] for r in data["plugins"]))
    for kind in kinds:
        rows = [r for r in data["plugins"] if r["kind"] == kind]
        models = any("parameters" in r for r in rows)
        table = _table(f"{kind} plugins")
        table.add_column("name (code)", no_wrap=True)
        table.add_column("origin")
        _summary_column(table, [r["summary"] for r in rows])
        if models:
            table.add_column("params (trainable)", justify="right")
        for r in rows:
            name = f"{r['name']} ({r['code']})" if r["code"] else r["name"]
            table.add_row(name, _origin(r), r["summary"], *([_params(r)] if models else []))
        tables.append(table)
    if data["blocked"]:
        table = _table("blocked plugins")
        table.add_column("plugin", overflow="fold")
        table.add_column("origin")
        _summary_column(table, [b["reason"] for b in data["blocked"]], header="reason")
        for b in data["blocked"]:
            origin = f"{b['distribution']} {b['version']}" if b["distribution"] else ""
            table.add_row(b["plugin"], origin, b["reason"])
        tables.append(table)
    return tables


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="Plugin name, e.g. baseline-mlp.", autocompletion=complete_plugin),
    kind: str = typer.Option(None, "--kind", help=f"Disambiguate: {_KIND_HELP}."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """A plugin's origin and its config fields with defaults and docs."""
    import json

    from rich.console import Console
    from rich.table import Table

    from himari.plugin.listing import show_plugin
    from himari.plugin.manager import get_plugins

    rows = show_plugin(get_plugins(), name, _kinds(kind)[0] if kind else None)
    if json_out:
        print(json.dumps(rows, indent=2, default=str))
        return
    console = Console()
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "in-memory"
        console.print(f"[bold]{row['name']}[/] ({row['kind']}{', ' + row['code'] if row['code'] else ''}): "
                      f"{row['summary']}")
        console.print(f"from {row['plugin']} ({origin}); config {row['config_class']}")
        if "parameters" in row and "total" in row["parameters"]:
            p = row["parameters"]
            console.print(f"parameters at the defaults, 60 features: {p['total']:,} ({p['trainable']:,} trainable)")
        if row.get("default_preprocess"):
            console.print(f"default preprocessing: {', '.join(row['default_preprocess'])}")
        if row.get("recipe"):
            import yaml

            console.print("recipe (under the run's own settings; --set recipe=none drops it):")
            console.print(yaml.safe_dump(row["recipe"], sort_keys=False, default_flow_style=None).rstrip(),
                          highlight=False, markup=False)
        table = Table(title=f"plugins.{row['name']}")
        for col in ("setting", "type", "default", "doc"):
            table.add_column(col, overflow="fold")
        for f in row["config"]:
            table.add_row(f["name"], f["type"], "(required)" if f.get("required") else repr(f["default"]), f["doc"])
        console.print(table)
