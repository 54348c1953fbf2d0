"""Optional packages: which a plugin needs, whether they are installed, and how to get them.

A spec's ``extras`` names the importable modules it needs (``("torch", "transformers", "peft")``).
Whether they are installed is answered with ``importlib.util.find_spec``, which imports nothing,
so checking stays cheap and works on an install without torch. A run that needs a missing module
is refused before anything starts, with the pip command that installs it (exit code 2).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from himari.errors import ConfigError

INSTALL_HINTS = {
    "torch": "pip install torch (or: pip install 'himari[torch]')",
    "transformers": "pip install 'himari[llm]'",
    "peft": "pip install 'himari[llm]'",
    "tensorboard": "pip install 'himari[tensorboard]'",
    "wandb": "pip install 'himari[wandb]'",
    "sklearn": "pip install scikit-learn (or: pip install 'himari[augment]')",
    "ray": "pip install 'himari[sweep]'",
}


class MissingExtraError(ConfigError):
    """A plugin (or command) needs an optional package that is not installed."""


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(modules: Iterable[str]) -> list[str]:
    return [m for m in modules if not is_installed(m)]


def install_hint(modules: Iterable[str]) -> str:
    hints = list(dict.fromkeys(INSTALL_HINTS.get(m, f"pip install {m}") for m in modules))
    return "; ".join(hints)


def require_modules(modules: Iterable[str], needed_by: str) -> None:
    """Raise ``MissingExtraError`` naming ``needed_by`` unless every module is importable."""
    missing = missing_modules(modules)
    if missing:
        raise MissingExtraError(f"{needed_by} needs {', '.join(missing)}, which is not installed: "
                                f"{install_hint(missing)}")


def require_spec(spec: Any) -> None:
    """Raise ``MissingExtraError`` unless the plugin's ``extras`` are installed."""
    require_modules(spec.extras, f"{spec.kind} {spec.name!r}")
