"""Importing the CLI, loading every plugin and listing them never imports torch; the built-in
models keep torch in their ``network`` module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def test_listing_plugins_does_not_import_torch() -> None:
    code = (
        "import sys, json, himari.cli\n"
        "from himari.plugin.manager import get_plugins\n"
        "from himari.plugin.listing import list_plugins, show_plugin\n"
        "p = get_plugins()\n"
        "rows = list_plugins(p)['plugins']\n"
        "show_plugin(p, 'baseline-mlp')\n"
        "mlp = [r for r in rows if r['name'] == 'baseline-mlp'][0]\n"
        "print(json.dumps([mlp['parameters']['total'], 'torch' in sys.modules, len(rows)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    total, torch_loaded, n = __import__("json").loads(out)
    assert total == 16_643
    assert torch_loaded is False
    assert n >= 7


MODELS = Path(__file__).resolve().parents[3] / "plugins" / "himari_builtin" / "models"


def module_level_imports(source: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements a module runs when it is imported: its own (inside module-level
    ``if``/``try`` too), not those inside functions or classes, which run later."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = list(ast.parse(source).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return found


def top_level_imports(source: str) -> set[str]:
    """Top-level packages a module imports when it is imported."""
    names: set[str] = set()
    for node in module_level_imports(source):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_top_level_imports_skip_function_bodies() -> None:
    source = ("import numpy as np\nfrom torch import nn\ntry:\n    import yaml\nexcept ImportError:\n    pass\n"
              "def f():\n    import scipy\nclass C:\n    import pandas\n")
    assert top_level_imports(source) == {"numpy", "torch", "yaml"}


def sibling_imports(source: str, package: str) -> set[str]:
    """File names of the modules of ``package`` that a module imports when it is imported."""
    names: set[str] = set()
    for node in module_level_imports(source):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if node.level == 1:
                names.add(parts[0] + ".py")
            elif len(parts) >= 4 and parts[:3] == ["himari_builtin", "models", package]:
                names.add(parts[3] + ".py")
    return names


def test_each_builtin_model_is_a_package_with_torch_in_its_network_only() -> None:
    """Each built-in model is a package (``config``, ``network``, ``model``, see docs/plugins.md);
    ``network.py`` and the torch helpers it imports (flag-trader's ``merged_lora.py``) are its only
    modules that import torch when imported, ``__init__``, ``config`` and ``model`` import none
    of them at their top and reach the network from inside functions, so loading the plugin never
    imports torch."""
    loose = sorted(p.name for p in MODELS.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"models written as single modules rather than packages: {loose}"
    packages = sorted(p for p in MODELS.iterdir() if (p / "__init__.py").is_file())
    assert len(packages) >= 5
    for package in packages:
        files = {p.name: p for p in package.glob("*.py")}
        assert {"__init__.py", "config.py", "network.py", "model.py"} <= set(files), package.name
        with_torch = {n for n, p in files.items() if "torch" in top_level_imports(p.read_text(encoding="utf-8"))}
        assert "network.py" in with_torch, package.name
        light = {"__init__.py", "config.py", "model.py"}
        assert not with_torch & light, f"{package.name}: torch imported at the top of {sorted(with_torch & light)}"
        for name in set(files) - with_torch:
            reached = sibling_imports(files[name].read_text(encoding="utf-8"), package.name) & with_torch
            assert not reached, f"{package.name}/{name} imports {sorted(reached)} (torch) at its top"
