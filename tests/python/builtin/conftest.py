"""Fixtures of the built-in plugin tests: the conformance harness, importable by name."""

from __future__ import annotations

from pathlib import Path


def _load_conformance() -> None:
    """Make conformance.py importable as ``himari_tests_conformance`` (pytest runs with
    --import-mode=importlib, which does not put test directories on sys.path)."""
    import importlib.util
    import sys

    name = "himari_tests_conformance"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conformance.py"))
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]


_load_conformance()
