"""The suite's CPU-semantics tests see no GPU, their module-scoped fixtures included (those are
set up before any per-test fixture; a model trained once for a module trained on the GPU)."""

from __future__ import annotations

import os
from typing import Any

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def seen_by_a_module_fixture() -> tuple[Any, str | None]:
    return torch.cuda.is_available, os.environ.get("CUDA_VISIBLE_DEVICES")


def test_a_module_fixture_sees_no_gpu(seen_by_a_module_fixture: tuple[Any, str | None]) -> None:
    is_available, visible = seen_by_a_module_fixture
    assert visible == ""  # for the himari subprocesses a fixture starts
    assert is_available.__name__ == "<lambda>" and is_available() is False  # conftest's stand-in, not torch's


def test_a_test_sees_no_gpu() -> None:
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == "" and torch.cuda.is_available() is False
    assert torch.cuda.device_count() == 0
