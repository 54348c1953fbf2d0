"""Drawdown durations and the across-seeds summary on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from himari.errors import InvalidArgumentError
from himari.evaluation.stats import (
    across_seeds,
    drawdown_durations,
    drawdown_durations_from_returns,
    equity_curve,
)


def test_equity_curve_by_hand() -> None:
    """bar:   0    1     2      3       4
    equity: 1.0  0.9   0.945  1.0017  0.98166  (1 - 10%, + 5%, + 6%, - 2%)
    peak:   1.0  1.0   1.0    1.0017  1.0017
    Under water at bars 1, 2 (back to >= 1.0 at bar 3) and 4 (still under at the end): longest 2.
    Deepest fall 10% at bar 1, recovered 2 bars later."""
    eq = equity_curve(np.array([-0.1, 0.05, 0.06, -0.02]))
    np.testing.assert_allclose(eq, [1.0, 0.9, 0.945, 1.0017, 0.981666], rtol=1e-12)
    dd = drawdown_durations_from_returns(np.array([-0.1, 0.05, 0.06, -0.02]))
    assert dd.longest_underwater_bars == 2
    assert dd.max_drawdown == pytest.approx(0.1, rel=1e-12)
    assert dd.trough_bar == 1
    assert dd.time_to_recovery_bars == 2 and dd.recovered


def test_the_longest_spell_is_not_the_deepest_and_an_open_spell_counts() -> None:
    """equity 1, 0.9, 0.95, 1.0, 1.1, 1.05, 1.0, 1.02: under water at bars 1-2 (back to the 1.0 peak
    at bar 3, equal counts as recovered) and 5-7 (3 bars below 1.1, never recovered). The deepest
    fall (10% at bar 1, vs 1 - 1.0/1.1 = 9.1%) is the short spell."""
    dd = drawdown_durations(np.array([1.0, 0.9, 0.95, 1.0, 1.1, 1.05, 1.0, 1.02]))
    assert dd.longest_underwater_bars == 3
    assert dd.max_drawdown == pytest.approx(0.1, rel=1e-12)
    assert (dd.trough_bar, dd.time_to_recovery_bars) == (1, 2)


def test_a_drawdown_never_recovered_and_no_drawdown() -> None:
    dd = drawdown_durations(np.array([1.0, 1.2, 0.9, 1.0, 1.1, 1.15]))
    assert dd.longest_underwater_bars == 4
    assert dd.max_drawdown == pytest.approx(0.25, rel=1e-12)  # 1 - 0.9 / 1.2
    assert dd.trough_bar == 2 and dd.time_to_recovery_bars is None and not dd.recovered
    assert dd.to_dict()["recovered"] is False
    flat = drawdown_durations(np.array([1.0, 1.0, 1.1, 1.2]))
    assert (flat.longest_underwater_bars, flat.max_drawdown, flat.time_to_recovery_bars) == (0, 0.0, 0)


def test_equity_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError, match="equity: expected positive values, value 2"):
        drawdown_durations(np.array([1.0, 0.5, 0.0]))


def test_across_seeds_by_hand() -> None:
    """Sharpe over 4 seeds 1, 2, 3, 4: mean 2.5, sample std sqrt(5/3) = 1.29099; the 95% interval is
    2.5 +- 1.959964 * 1.29099 / 2 = 2.5 +- 1.26516."""
    s = across_seeds([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.confidence) == (4, 2.5, 0.95)
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2
    assert (s.low, s.high) == (pytest.approx(2.5 - half, rel=1e-12), pytest.approx(2.5 + half, rel=1e-12))
    ninety = across_seeds([1.0, 2.0, 3.0, 4.0], confidence=0.9)
    assert ninety.high == pytest.approx(2.5 + 1.6448536269514722 * math.sqrt(5 / 3) / 2, rel=1e-12)
    one = across_seeds([0.7])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 0.7, None, None, None)
    with pytest.raises(InvalidArgumentError, match="confidence"):
        across_seeds([1.0, 2.0], confidence=95)
