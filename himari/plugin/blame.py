"""Which installed plugin an unexpected exception came from, for the CLI's one-line error.

A plugin's hook that raises a plain ``RuntimeError`` or ``KeyError`` reached the user as
``error: RuntimeError: boom``, with nothing saying that the fault was in a third-party plugin
rather than in himari. The traceback does say: the innermost frame whose module belongs to the
package of a ``himari`` entry point names the plugin and its distribution. Read from the
installed metadata, so it works even when the plugin manager itself failed to build.
"""

from __future__ import annotations

import traceback
from types import TracebackType

PLUGIN_GROUP = "himari"


def _plugin_packages() -> dict[str, str]:
    """Top-level package of every ``himari`` entry point -> its distribution and version."""
    from importlib.metadata import entry_points

    out: dict[str, str] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        top = ep.value.split(":")[0].split(".")[0]
        dist = f"{ep.dist.metadata['Name']} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        out.setdefault(top, dist)
    return out


def plugin_blame(tb: TracebackType | None, packages: dict[str, str] | None = None) -> str | None:
    """``"plugin module M (DIST VERSION)"`` for the innermost frame of ``tb`` in a plugin's
    package, or None when no frame is."""
    if tb is None:
        return None
    try:
        packages = _plugin_packages() if packages is None else packages
    except Exception:  # noqa: BLE001 - broken metadata must not hide the original error
        return None
    for frame, _ in reversed(list(traceback.walk_tb(tb))):
        module = str(frame.f_globals.get("__name__", ""))
        dist = packages.get(module.split(".")[0])
        if dist is not None:
            return f"plugin module {module} ({dist})"
    return None
