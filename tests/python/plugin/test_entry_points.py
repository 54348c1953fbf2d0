"""pyproject's [project.entry-points.himari] table and plugins/himari_builtin agree, and `himari`
never imports `himari_builtin`."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _table() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["himari"]


def test_every_builtin_module_is_declared_and_named_by_its_path() -> None:
    table = _table()
    for name, value in table.items():
        assert name == value, f"entry-point name must be the module path: {name} = {value}"
    modules = {
        ".".join(p.relative_to(ROOT / "plugins").with_suffix("").parts)
        for p in (ROOT / "plugins" / "himari_builtin").rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules == set(table), f"declared {sorted(table)} but found {sorted(modules)}"


def test_every_declared_module_implements_a_hook() -> None:
    import importlib

    from himari.plugin.spec import HOOK_NAMES

    for module in _table():
        mod = importlib.import_module(module)
        assert any(hasattr(mod, h) for h in HOOK_NAMES), module


def test_himari_never_imports_himari_builtin() -> None:
    import re

    pattern = re.compile(r"^\s*(import|from)\s+himari_builtin\b|import_module\(['\"]himari_builtin", re.M)
    offenders = [str(p) for p in (ROOT / "himari").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
