"""The import structure the architecture promises, read from the source (every import statement,
inside functions too; ``if TYPE_CHECKING:`` blocks excluded, since they never run):

- no import circle among himari's modules, and the layers import one way: a module never imports
  a package above its own (``himari.evaluation`` never imports ``himari.training``, the engine never
  imports data, training or plugins, ...);
- the built-in plugins import himari only through its public plugin surface, ``himari.plugin.api``
  (or ``himari.plugin``), exactly as a third-party plugin would.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "himari"
PLUGINS = ROOT / "plugins" / "himari_builtin"

# What each top-level part of himari may import (besides itself and the leaf modules).
LEAVES = {"himari.errors", "himari.trading", "himari._lazy", "himari.progress", "himari._gym"}
LAYERS = {
    "himari.engine": set(),
    "himari.data": {"himari.engine"},
    "himari.evaluation": {"himari.engine", "himari.data"},
    "himari.plugin": {"himari.engine", "himari.data", "himari.evaluation"},
    "himari.training": {"himari.engine", "himari.data", "himari.evaluation", "himari.plugin"},
    "himari.gym_env": {"himari.engine", "himari.data"},
    "himari.demo": {"himari.engine", "himari.data", "himari.evaluation"},
    "himari.evaluate": {"himari.engine", "himari.data", "himari.evaluation", "himari.plugin", "himari.training"},
    "himari.augment": {"himari.engine", "himari.data", "himari.evaluation", "himari.plugin", "himari.training"},
    "himari.sweep": {"himari.engine", "himari.data", "himari.evaluation", "himari.plugin", "himari.training",
                     "himari.evaluate"},
    "himari.cli": {"himari.engine", "himari.data", "himari.evaluation", "himari.plugin", "himari.training",
                   "himari.demo", "himari.gym_env", "himari.evaluate", "himari.augment", "himari.sweep"},
    "himari.__main__": {"himari.cli"},
}


def module_name(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, name: str) -> set[str]:
    """Absolute module names ``path`` (module ``name``) imports, all statements, resolved
    relative imports; ``from a import b`` counts ``a.b`` when that is a module of the tree, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def himari_graph() -> dict[str, set[str]]:
    modules = {module_name(p, PACKAGE, "himari"): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path, name) if m in modules and m != name}
    return graph


def part_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles of ``graph`` (a package and its own submodules count as one unit)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_circle_in_himari() -> None:
    graph = himari_graph()
    assert len(graph) > 50
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_circle_check_can_fail() -> None:
    assert find_cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z", "a.x"]]
    assert find_cycles({"a": {"a.x"}, "a.x": {"a"}}) == []  # a package re-exporting its submodule


def test_layers_import_one_way() -> None:
    bad = []
    for module, targets in himari_graph().items():
        mine = part_of(module)
        allowed = LAYERS.get(mine)
        if allowed is None:
            continue
        for target in targets:
            theirs = part_of(target)
            if theirs == mine or target in LEAVES or theirs in LEAVES or target == "himari":
                continue
            if theirs not in allowed:
                bad.append(f"{module} imports {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_every_part_is_in_the_layering() -> None:
    parts = {part_of(m) for m in himari_graph()} - {"himari"}
    assert parts <= set(LAYERS) | LEAVES, sorted(parts - set(LAYERS) - LEAVES)


HIMARI_MODULES = {module_name(p, PACKAGE, "himari") for p in PACKAGE.rglob("*.py")}
PUBLIC = {"himari.plugin", "himari.plugin.api"}


def private_imports(path: Path, name: str) -> list[str]:
    """The himari modules (files, not names imported from them) a plugin module imports other
    than the public plugin surface."""
    return sorted(m for m in imports_of(path, name) if m in HIMARI_MODULES | {"himari"} and m not in PUBLIC)


@pytest.mark.parametrize("path", sorted(PLUGINS.rglob("*.py")), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_builtin_plugins_use_only_the_public_api(path: Path) -> None:
    private = private_imports(path, module_name(path, PLUGINS, "himari_builtin"))
    assert not private, f"{path.relative_to(ROOT)} imports private himari modules: {private}"


def test_the_private_import_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from himari.plugin.api import ModelSpec\n\ndef f():\n    from himari.training.rl import x\n"
                   "    import himari.data.splits\n")
    assert private_imports(bad, "himari_builtin.bad") == ["himari.data.splits", "himari.training.rl"]
