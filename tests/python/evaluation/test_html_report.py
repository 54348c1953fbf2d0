"""The HTML report's computations, checked by hand: drawdown, rolling Sharpe, trade markers,
decimation of long lines, and buy-and-hold drawn once per market."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from himari.evaluation.html_report import ReportTarget
from himari.evaluation.html_report.figures import (MAX_POINTS, decimate, default_window, drawdown, equity_figure,
                                                   lines, position_changes, rolling_sharpe)
from himari.evaluation.series import per_bar
from himari.trading import EnvConfig

pytest.importorskip("plotly", reason="the report's figures need plotly (pip install 'himari[report]')")

FIVE_MINUTES_NS = 300 * 10**9


def market(n: int, seed: int, start: int = 1_672_531_200 * 10**9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    return open_, close, start + np.arange(n, dtype=np.int64) * FIVE_MINUTES_NS


def target(label: str, n: int = 500, seed: int = 0, actions_seed: int = 1) -> ReportTarget:
    o, c, ts = market(n, seed)
    acts = np.random.default_rng(actions_seed).integers(0, 3, n)
    hold = np.r_[np.full(n - 1, 2), 1]
    return ReportTarget(label=label, kind="run", model="m", data="d", scope="test split",
                        models={"model": per_bar(o, c, ts, [(0, n)], acts, EnvConfig())},
                        baselines={"buy-and-hold": per_bar(o, c, ts, [(0, n)], hold, EnvConfig())}, summary={})


def test_drawdown_by_hand() -> None:
    np.testing.assert_allclose(drawdown(np.array([1.0, 1.2, 0.9, 1.3, 1.04, 1.3])),
                               [0.0, 0.0, -0.25, 0.0, -0.2, 0.0], rtol=0, atol=1e-15)


def test_rolling_sharpe_by_hand() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.0, 0.0, 0.01])
    got = rolling_sharpe(r, 3, 100.0)
    assert np.isnan(got[:2]).all()
    for i in (2, 3, 4):
        w = r[i - 2:i + 1]
        assert got[i] == pytest.approx(statistics.mean(w) / statistics.stdev(w) * math.sqrt(100.0), rel=1e-9)
    assert np.isnan(got[5])  # three flat bars: no ratio, not a division by zero
    assert got[6] == pytest.approx(statistics.mean([0, 0, 0.01]) / statistics.stdev([0, 0, 0.01]) * 10, rel=1e-9)


def test_position_changes_mark_the_deciding_bar_within_a_range() -> None:
    import pandas as pd

    table = pd.DataFrame({"position": [0, 1, 1, 0, -1, 0, 1, 1], "range": [0, 0, 0, 0, 0, 1, 1, 1]})
    buys, sells = position_changes(table)
    # bar 0 decided the long held over bar 1; 4 -> 5 is the start of range 1 (flat by definition), no decision
    assert buys.tolist() == [0, 5] and sells.tolist() == [2, 3]


def test_decimate_keeps_every_extreme_and_both_ends() -> None:
    y = np.cumsum(np.random.default_rng(3).normal(size=20_000))
    keep = decimate(y, 400)
    assert len(keep) <= 402 and keep[0] == 0 and keep[-1] == len(y) - 1
    assert np.all(np.diff(keep) > 0)
    assert y.argmin() in keep and y.argmax() in keep
    for a, b in zip(np.linspace(0, len(y), 201).astype(int)[:-1], np.linspace(0, len(y), 201).astype(int)[1:]):
        assert a + y[a:b].argmin() in keep and a + y[a:b].argmax() in keep
    np.testing.assert_array_equal(decimate(y[:400], 400), np.arange(400))


def test_a_long_series_is_drawn_decimated_with_its_extremes() -> None:
    t = target("long", n=3 * MAX_POINTS)
    trace = equity_figure(lines([t])).data[0]
    eq = t.models["model"]["equity"].to_numpy()
    assert len(trace.y) <= MAX_POINTS + 2
    assert min(trace.y) == eq.min() and max(trace.y) == eq.max() and trace.y[-1] == eq[-1]
    assert set(np.asarray(trace.y)) <= set(eq)  # every drawn point is a real bar


def test_buy_and_hold_is_drawn_once_per_distinct_market() -> None:
    a, b = target("a", actions_seed=1), target("b", actions_seed=2)  # same bars, other models
    c = target("c", seed=9)  # other bars
    names = [(line.name, line.baseline) for line in lines([a, b, c])]
    assert names == [("a", False), ("b", False), ("c", False), ("buy-and-hold", True), ("buy-and-hold (c)", True)]


def test_default_window_is_a_month_of_bars_at_most_a_fifth_of_the_series() -> None:
    assert default_window([target("short", n=500)]) == 100
    assert default_window([target("long", n=60_000)]) == 30 * 288


def test_a_window_longer_than_the_shortest_series_is_refused_not_drawn_empty() -> None:
    from himari.errors import ConfigError
    from himari.evaluation.html_report.figures import build_figures

    short, long = target("short", n=300, seed=3), target("long", n=500)
    with pytest.raises(ConfigError, match=r"--window 301: longer than the shortest series \(300 bars\)"):
        build_figures([long, short], window=301)
    figures = dict(build_figures([long, short], window=300))
    ys = [np.asarray(trace.y, dtype=float) for trace in figures["rolling-sharpe"].data]
    assert ys and all(np.isfinite(y).any() for y in ys)  # every line has a point at the longest window


def test_log_ticks_are_one_two_five_per_decade_or_every_digit_in_a_narrow_span() -> None:
    from himari.evaluation.html_report.figures import log_ticks

    assert log_ticks(0.009, 1.3) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert log_ticks(0.7, 3.5) == [0.7, 0.8, 0.9, 1.0, 2.0, 3.0]  # 1, 2 alone would be too few
    assert log_ticks(0.95, 1.05) is None  # plotly's own fine ticks


def test_a_zero_sharpe_ranks_as_a_value_and_a_missing_one_last() -> None:
    """A flat run's Sharpe is exactly 0: it ranks above -41, and only a missing Sharpe goes last."""
    import dataclasses

    from himari.evaluation.html_report.tables import ranked

    base = target("t", n=50)
    flat = dataclasses.replace(base, label="flat", summary={"sharpe": 0.0})
    bad = dataclasses.replace(base, label="bad", summary={"sharpe": -41.2})
    good = dataclasses.replace(base, label="good", summary={"sharpe": 1.5})
    missing = dataclasses.replace(base, label="missing", summary={})
    assert [t.label for t in ranked([missing, bad, flat, good])] == ["good", "flat", "bad", "missing"]
