"""Every registered model plugin passes the conformance harness (a new plugin is tested the
moment it registers)."""

from __future__ import annotations

import pytest

from himari.plugin.manager import get_plugins

from himari_tests_conformance import check_model  # type: ignore[import-not-found]

MODELS = get_plugins().models().names()


def test_there_is_at_least_the_baseline() -> None:
    assert "baseline-mlp" in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_model_conformance(name, small_prepared, tmp_path) -> None:
    check_model(name, small_prepared, tmp_path)
