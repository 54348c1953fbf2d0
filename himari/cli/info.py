"""``himari info``: version and what the native core was built with."""

from __future__ import annotations

import typer


def info(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Version, compiler, CUDA compiled and available, devices."""
    import json
    import platform

    from rich.console import Console

    import himari
    from himari.engine import build_info, cuda_available

    data = {"version": himari.__version__, "python": platform.python_version(), **build_info()}
    data["cuda_available"] = cuda_available()
    from himari.plugin.api import KINDS
    from himari.plugin.manager import get_plugins

    plugins = get_plugins()
    data["plugins"] = {kind: len(plugins.registry(kind)) for kind in KINDS}
    data["plugins_blocked"] = len(plugins.blocked())
    if json_out:
        print(json.dumps(data, indent=2))
        return
    console = Console()
    for key, value in data.items():
        if key == "cuda_unavailable_reason" and value is None:
            continue
        console.print(f"[bold]{key}[/bold]: {value}")
