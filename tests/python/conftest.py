"""Fixtures shared by every test directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 synthetic 5-minute bars prepared with the default labels (about 3,000 train rows)."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = tmp_path_factory.mktemp("prepared") / "small"
    prepare(load_synthetic(SynthConfig(bars=6000, seed=5)), out, PrepareConfig())
    return out
