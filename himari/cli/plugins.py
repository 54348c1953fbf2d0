"""``himari plugins list|show``: what is installed, from where, with which settings."""

from __future__ import annotations

import typer

from himari.cli.completion import complete_plugin

app = typer.Typer(no_args_is_help=True, help="List installed plugins and show their settings.")

_KIND_HELP = "model, preprocessor, training-method or tracker"


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
    from rich.table import Table

    from himari.plugin.listing import list_plugins
    from himari.plugin.manager import get_plugins

    data = list_plugins(get_plugins(), _kinds(kind))
    if json_out:
        print(json.dumps(data, indent=2))
        return
    table = Table(title="himari plugins")
    for col in ("kind", "name", "code", "origin", "summary", "params (trainable)"):
        table.add_column(col, justify="right" if col.startswith("params") else "left",
                         no_wrap=col in ("kind", "name", "code"), overflow="fold")
    for row in data["plugins"]:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else row["plugin"]
        p = row.get("parameters")
        params = "" if p is None else (p.get("error", "?") if "error" in p else f"{p['total']:,} ({p['trainable']:,})")
        table.add_row(row["kind"], row["name"], row["code"] or "", origin, row["summary"], params)
    for b in data["blocked"]:
        origin = f"{b['distribution']} {b['version']}" if b["distribution"] else ""
        table.add_row("[dim]blocked[/]", f"[dim]{b['plugin']}[/]", "", origin, f"[dim]{b['reason']}[/]", "")
    Console().print(table)


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
        table = Table(title=f"plugins.{row['name']}")
        for col in ("setting", "type", "default", "doc"):
            table.add_column(col, overflow="fold")
        for f in row["config"]:
            table.add_row(f["name"], f["type"], repr(f["default"]), f["doc"])
        console.print(table)
