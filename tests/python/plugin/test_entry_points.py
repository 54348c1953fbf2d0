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
    modules = _builtin_plugin_modules()
    assert modules == set(table), f"declared {sorted(table)} but found {sorted(modules)}"


def _builtin_plugin_modules() -> set[str]:
    """Dotted paths of the built-in plugins: each module or package directly inside a kind's
    folder (``himari_builtin/trackers/jsonl.py``, ``himari_builtin/models/cql/__init__.py``). A
    package's own modules (``models/cql/network.py``) are parts of that plugin, not plugins."""
    found = set()
    for kind in (ROOT / "plugins" / "himari_builtin").iterdir():
        if not (kind / "__init__.py").is_file():
            continue
        for p in kind.iterdir():
            if p.suffix == ".py" and p.name != "__init__.py":
                found.add(f"himari_builtin.{kind.name}.{p.stem}")
            elif (p / "__init__.py").is_file():
                found.add(f"himari_builtin.{kind.name}.{p.name}")
    return found


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
