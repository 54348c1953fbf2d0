"""Fixtures of the built-in plugin tests: the first bars of the small prepared set's test split.
(The conformance harness is importable as ``himari_tests_conformance``: tests/python/conftest.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def first_test_bars(small_prepared: Path) -> Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``bars(n)``: the features (non-finite values as 0, float32), opens and closes of the first
    ``n`` bars of ``small_prepared``'s test split (what a sequential model acts on)."""
    from himari.data import PreparedData

    data = PreparedData(small_prepared)
    a, _ = data.split("test")[0]

    def bars(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.nan_to_num(np.asarray(data.features[a:a + n], dtype=np.float32)),
                np.asarray(data.open[a:a + n]), np.asarray(data.close[a:a + n]))

    return bars
