"""backtest_signals(threads=...) on the CPU: every split gives the one-thread numbers.

One thread runs the sequential kernel, which test_backtest_reference.py pins to the NumPy
reference; these tests pin the threaded paths to it: bit for bit when the strategies are split,
counts exactly and equity-derived metrics to 1e-9 when a few strategies run as a scan over time.
They also check that the documented plan is the one taken, so a silently sequential run cannot
pass for a threaded one.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine_reference as ref  # (conftest.py puts this folder on sys.path)

import himari.engine as engine
from himari import errors

COUNTS = ("n_trades", "turnover", "exposure", "win_rate")


def _signals(T: int, M: int, seed: int, dtype=np.int8) -> np.ndarray:
    """Strategy j acts on every bar (j % 3 == 0), on 2% of bars (1) or buys once and holds (2)."""
    rng = np.random.default_rng(seed)
    sig = np.ones((T, M), dtype=dtype)
    for j in range(M):
        if j % 3 == 2:
            sig[0, j] = 2
            continue
        act = rng.random(T) < (1.0 if j % 3 == 0 else 0.02)
        sig[act, j] = rng.integers(0, 3, int(act.sum()))
    return sig


def test_plan_is_the_documented_one():
    assert engine.backtest_plan(1000, 10, threads=8, return_equity=False) == ("sequential", 1)  # too little work
    assert engine.backtest_plan(100_001, 1000, threads=1, return_equity=False) == ("sequential", 1)
    assert engine.backtest_plan(8001, 131, threads=3, return_equity=True) == ("strategies", 3)
    assert engine.backtest_plan(400_001, 3, threads=2, return_equity=False) == ("time_scan", 2)
    # An equity curve needs the sequential kernel: no scan, and 3 strategies are one group.
    assert engine.backtest_plan(400_001, 3, threads=2, return_equity=True) == ("sequential", 1)


@pytest.mark.parametrize("threads", [2, 3])
def test_split_strategies_give_the_bits_of_one_thread(threads):
    T, M = 8001, 131
    open_, close = ref.random_walk_prices(np.random.default_rng(1), T, vol=0.003)
    sig = _signals(T, M, 2)
    assert engine.backtest_plan(T, M, threads=threads, return_equity=True) == ("strategies", threads)
    one = engine.backtest_signals(open_, close, sig, return_equity=True)
    many = engine.backtest_signals(open_, close, sig, return_equity=True, threads=threads)
    for name in one.metric_names():
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
    np.testing.assert_array_equal(many.equity, one.equity)
    assert len(set(np.round(one.total_return, 9))) > 50  # distinct strategies, so a mix-up would show


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_time_scan_matches_one_thread(mode):
    T, M = 400_001, 3
    open_, close = ref.random_walk_prices(np.random.default_rng(3), T, vol=0.003)
    sig = _signals(T, M, 4, dtype=np.int32)
    assert engine.backtest_plan(T, M, threads=2, return_equity=False) == ("time_scan", 2)
    one = engine.backtest_signals(open_, close, sig, mode=mode, fee=2e-3)
    many = engine.backtest_signals(open_, close, sig, mode=mode, fee=2e-3, threads=2)
    assert one.total_return[0] == pytest.approx(1e-12 - 1.0)  # the every-bar trader hits the floor
    assert one.n_trades[1] > 1000 and one.n_trades[2] == 1
    for name in one.metric_names():
        if name in COUNTS:
            np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
        else:
            np.testing.assert_allclose(getattr(many, name), getattr(one, name), rtol=1e-9, atol=1e-12,
                                       err_msg=name)


def test_every_hardware_thread_agrees_with_one():
    T, M = 20_001, 64
    open_, close = ref.random_walk_prices(np.random.default_rng(5), T, vol=0.003)
    sig = _signals(T, M, 6)
    one = engine.backtest_signals(open_, close, sig)
    for name in one.metric_names():
        np.testing.assert_array_equal(getattr(engine.backtest_signals(open_, close, sig, threads=0), name),
                                      getattr(one, name), err_msg=name)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2", None])
def test_threads_must_be_a_count(bad):
    open_, close = ref.random_walk_prices(np.random.default_rng(7), 50, vol=0.003)
    with pytest.raises(ValueError, match="threads: expected 0"):
        engine.backtest_signals(open_, close, _signals(50, 2, 8), threads=bad)


@pytest.mark.parametrize("n_bars, n_strategies, threads, name", [(1, 10, 2, "n_bars"), (-5, 10, 2, "n_bars"),
                                                                (1000, 0, 2, "n_strategies"), (1000, 10, -1, "threads")])
def test_a_plan_for_a_call_backtest_signals_refuses_is_refused(n_bars, n_strategies, threads, name):
    with pytest.raises(errors.InvalidArgumentError, match=name):
        engine.backtest_plan(n_bars, n_strategies, threads=threads)
