"""Shell completion of plugin names, fed from the registries (no torch, no data)."""

from __future__ import annotations

from typing import Any


def _names(kind: str | None, incomplete: str) -> list[str]:
    try:
        from himari.plugin.listing import all_names
        from himari.plugin.manager import get_plugins

        return [n for n in all_names(get_plugins(), kind) if n.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print a traceback into a shell
        return []


def complete_model(incomplete: str) -> list[str]:
    return _names("model", incomplete)


def complete_plugin(incomplete: str) -> list[str]:
    return _names(None, incomplete)


def complete_list(kind: str) -> Any:
    """Completion for comma-separated lists (``--preprocess a,b``): completes the last item."""

    def complete(incomplete: str) -> list[str]:
        head, _, last = incomplete.rpartition(",")
        prefix = f"{head}," if head else ""
        return [prefix + n for n in _names(kind, last)]

    return complete
