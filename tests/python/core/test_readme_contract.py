"""The README's test command is the one CI runs, and it installs everything the suite exercises,
so a new user's run and CI's are the same run (no test passes in CI only because CI installed
more)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from himari.plugin.manager import get_plugins

ROOT = Path(__file__).resolve().parents[3]


def _readme_command() -> str:
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_command.py"), str(ROOT / "README.md")],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_ci_runs_the_readme_test_command_and_nothing_else() -> None:
    command = _readme_command()
    assert command == 'pip install torch==2.13.0 && pip install ".[test]" && make test'
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'cmd=$(python3 .ci/readme_command.py README.md)' in ci and 'eval "$cmd"' in ci
    # .ci/run spells the command out once, as what the README must say, and refuses otherwise
    expected = f"expected='{command}'"
    assert ci.count(expected) == 1 and '[ "$cmd" != "$expected" ]' in ci
    rest = ci.replace(expected, "")
    # no second install of the project or second test run with other extras
    assert not re.search(r"pip install[^\n]*\.\[", rest)
    assert "make test" not in rest.replace('eval "$cmd"', "")


def _extras_closure(extra: str, table: dict[str, list[str]], seen: set[str] | None = None) -> set[str]:
    """Requirement names of ``extra``, following ``himari[...]`` self-references."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    for req in table[extra]:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(\[([^\]]+)\])?", req)
        assert m, req
        name = m.group(1).lower().replace("_", "-")
        if name == "himari":
            for sub in m.group(3).split(","):
                if sub.strip() not in seen:
                    seen.add(sub.strip())
                    names |= _extras_closure(sub.strip(), table, seen)
        else:
            names.add(name)
    return names


def test_the_test_extra_installs_every_optional_package_a_plugin_needs() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    installed = _extras_closure("test", table) | {"torch"}  # the README command installs torch first
    plugins = get_plugins()
    needed = {m.lower() for kind in ("model", "preprocessor", "training-method", "tracker")
              for entry in plugins.entries((kind,)) for m in entry.spec.extras}
    assert needed, "no plugin declares extras: the check would be empty"
    assert needed <= installed, f"the test extra misses {sorted(needed - installed)}"


def test_make_test_builds_and_tests_the_wheel_in_a_fresh_venv() -> None:
    """The README's `make test` proves the wheel too: a wheel missing a file fails CI."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_deps = re.search(r"^test:([^#\n]*)", makefile, re.M)
    assert test_deps is not None and "test-wheel" in test_deps.group(1).split()
    recipe = re.search(r"^test-wheel:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    steps = recipe.group(1)
    assert "tools/build_wheel.py" in steps and "tools/test_wheel.py" in steps
    assert "--system-site-packages" not in steps  # the fresh venv installs the wheel's own dependencies
