"""Fixtures of the synthetic-data tests: the built-in generators registered, tiny settings, and
sets made once per session from the shared small prepared data."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

GENERATOR_MODULES = {"timegan": "himari_builtin.generators.timegan",
                     "tab-ddpm": "himari_builtin.generators.tab_ddpm",
                     "block-bootstrap": "himari_builtin.generators.block_bootstrap"}

TINY: dict[str, dict[str, Any]] = {
    "timegan": {"window": 8, "hidden": 4, "layers": 2, "iterations": 4, "batch_size": 16},
    "tab-ddpm": {"timesteps": 10, "layers": [16], "dim_t": 8, "steps": 4, "batch_size": 64, "crash_bars": 24,
                 "n_quantiles": 50},
    "block-bootstrap": {"window": 8, "block": 4},
}
"""Settings that fit in well under a second on one core."""


def plugins_with_generators() -> Any:
    """The process's plugins, with the built-in generators registered by hand when the installed
    package's entry points predate them (the worktree's code is tested, not the installed one)."""
    from himari.plugin.manager import get_plugins

    plugins = get_plugins()
    for name, module in GENERATOR_MODULES.items():
        if name not in plugins.generators():
            plugins.register(importlib.import_module(module), name=module)
    return plugins


@pytest.fixture(autouse=True)
def _generators() -> Any:
    return plugins_with_generators()


def _make(data: Path, out: Path, method: str, *, n: int = 40, seed: int = 0, report: bool = False,
         **settings: Any) -> dict[str, Any]:
    from himari.augment.run import AugmentRequest, make_set

    cfg = {**TINY[method], **settings}
    features = cfg.pop("features", None)
    return make_set(AugmentRequest(data=data, method=method, out=out, windows=n, seed=seed, settings=cfg,
                                   features=features, report=report, report_steps=5),
                    plugins=plugins_with_generators())


@pytest.fixture
def make() -> Any:
    """``make(data, out, method, n=40, seed=0, report=False, **settings)``: a set with the tiny
    settings (``features=`` picks the channels), through ``himari.augment.run.make_set``."""
    return _make


@pytest.fixture(scope="session")
def timegan_set(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    out = tmp_path_factory.mktemp("sets") / "timegan"
    plugins_with_generators()
    _make(small_prepared, out, "timegan", features="all")
    return out


@pytest.fixture(scope="session")
def tab_ddpm_set(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    out = tmp_path_factory.mktemp("sets") / "tab-ddpm"
    plugins_with_generators()
    _make(small_prepared, out, "tab-ddpm", n=30)
    return out
