"""Lazy re-exports for package ``__init__`` modules.

``himari.data`` and ``himari.training`` expose names from submodules that import pandas or
torch; loading those only when a name is first used keeps ``import himari.cli`` (and so every
command's start-up and shell completion) fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: dict[str, str]) -> tuple[
    Callable[[str], Any], Callable[[], list[str]]
]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` serving ``exports``
    (name -> submodule); a loaded name is cached in the package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
