"""``backtest_signals(method="held_runs")``: long-flat metrics with account maths only at fills.

Pinned against the slow pure-Python reference (docs/semantics.md) on small cases and against the
per-bar kernel (itself pinned to the reference and to vectorbt) on long ones whose held runs go
through the shared prefix sums and range tree: trades and total returns bit for bit, the rest to
1e-9.
"""

from __future__ import annotations

import engine_reference as ref  # conftest.py puts this folder on sys.path
import numpy as np
import pytest

from himari import engine
from himari.errors import InvalidArgumentError

METRIC_ATOL = {"sharpe": 1e-9, "sortino": 1e-9, "calmar": 1e-9}


def _sticky_signals(rng: np.random.Generator, T: int, M: int, share: float, dtype=np.int8) -> np.ndarray:
    """HOLD except a random BUY or SELL on about `share` of the bars."""
    sig = np.ones((T, M), dtype=dtype)
    acts = rng.random((T, M)) < share
    sig[acts] = np.where(rng.random(int(acts.sum())) < 0.5, 0, 2).astype(dtype)
    return sig


@pytest.mark.parametrize("seed, T, M, p_hold", [(0, 2, 1, 0.6), (1, 40, 3, 0.6), (2, 300, 4, 0.95), (3, 120, 2, 0.0)])
def test_matches_the_reference_backtest(seed: int, T: int, M: int, p_hold: float) -> None:
    rng = np.random.default_rng(seed)
    o, c = ref.random_walk_prices(rng, T)
    sig = ref.random_actions(rng, (T, M), p_hold=p_hold).astype(np.int8)
    want = ref.reference_backtest(o, c, sig, fee=1e-3, slippage=5e-4, mode="long_flat")
    got = engine.backtest_signals(o, c, sig, method="held_runs")
    for k in ref.METRICS:
        np.testing.assert_allclose(getattr(got, k), want[k], rtol=1e-9, atol=METRIC_ATOL.get(k, 1e-12), err_msg=k)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_long_held_runs_match_the_per_bar_kernel(dtype) -> None:
    rng = np.random.default_rng(7)
    T, M = 20_000, 70  # a full block of 64 strategies and a tail of 6
    o, c = ref.random_walk_prices(rng, T, vol=0.002)
    sig = _sticky_signals(rng, T, M, 0.01, dtype)  # runs of ~200 bars
    sig[0, :5] = 2  # five strategies buy on the first bar and never act again
    sig[:, :5] = np.where(np.arange(T)[:, None] == 0, 2, 1)
    per_bar = engine.backtest_signals(o, c, sig)
    held = engine.backtest_signals(o, c, sig, method="held_runs", threads=2)
    np.testing.assert_array_equal(held.n_trades, per_bar.n_trades)
    np.testing.assert_array_equal(held.total_return, per_bar.total_return)
    np.testing.assert_array_equal(held.exposure, per_bar.exposure)
    np.testing.assert_array_equal(held.win_rate, per_bar.win_rate)
    for k in ("sharpe", "sortino", "max_drawdown", "calmar", "annual_return"):
        np.testing.assert_allclose(getattr(held, k), getattr(per_bar, k), rtol=1e-9, atol=1e-12, err_msg=k)
    assert held.equity is None


def test_one_strategy_as_a_vector() -> None:
    rng = np.random.default_rng(3)
    o, c = ref.random_walk_prices(rng, 500)
    sig = _sticky_signals(rng, 500, 1, 0.05)[:, 0]
    want = engine.backtest_signals(o, c, sig)
    got = engine.backtest_signals(o, c, sig, method="held_runs")
    assert got.sharpe.shape == (1,)
    np.testing.assert_allclose(got.sharpe, want.sharpe, rtol=1e-9)
    np.testing.assert_array_equal(got.n_trades, want.n_trades)


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "long_short"}, "long_flat"),
    ({"return_equity": True}, "return_equity=False"),
    ({"device": "cuda:0"}, "device='cpu'"),
])
def test_what_it_does_not_do_is_refused(kwargs: dict, words: str) -> None:
    o = c = np.full(10, 100.0)
    sig = np.ones((10, 2), np.int8)
    with pytest.raises(InvalidArgumentError, match="method='held_runs'") as err:
        engine.backtest_signals(o, c, sig, method="held_runs", **kwargs)
    assert words in str(err.value)


def test_an_unknown_method_and_bad_actions_are_refused() -> None:
    o = c = np.full(10, 100.0)
    with pytest.raises(InvalidArgumentError, match="method: expected 'auto', 'per_bar' or 'held_runs', got 'fast'"):
        engine.backtest_signals(o, c, np.ones((10, 2), np.int8), method="fast")
    bad = np.ones((10, 2), np.int8)
    bad[4, 1] = 3
    with pytest.raises(ValueError, match=r"\[4, 1\]"):
        engine.backtest_signals(o, c, bad, method="held_runs")


_C = np.full(10, 100.0)
_S = np.ones((10, 3), np.int8)


@pytest.mark.parametrize("open_, close, signals", [
    (np.r_[_C[:5], np.nan, _C[6:]], _C, _S),
    (_C, np.r_[_C[:5], 0.0, _C[6:]], _S),
    (_C[:9], _C, _S),
    (_C[:1], _C[:1], _S[:1]),
    (_C, _C, np.ones((10, 0), np.int8)),
    (_C, _C, _S.astype(float)),
], ids=["nan-open", "zero-close", "lengths", "one-bar", "no-strategy", "float-signals"])
def test_bad_input_gets_the_per_bar_methods_error(open_, close, signals) -> None:
    with pytest.raises(ValueError) as per_bar:
        engine.backtest_signals(open_, close, signals)
    with pytest.raises(type(per_bar.value)) as held:
        engine.backtest_signals(open_, close, signals, method="held_runs")
    assert str(held.value) == str(per_bar.value)


def test_auto_takes_held_runs_from_64_long_flat_strategies_on_the_cpu() -> None:
    from himari.engine.backtest import HELD_RUNS_MIN_STRATEGIES

    assert HELD_RUNS_MIN_STRATEGIES == 64
    rng = np.random.default_rng(11)
    o, c = ref.random_walk_prices(rng, 5000, vol=0.003)
    sig = _sticky_signals(rng, 5000, 64, 0.01)
    per_bar = engine.backtest_signals(o, c, sig, method="per_bar")
    held = engine.backtest_signals(o, c, sig, method="held_runs")
    # the two methods differ in the last bits here, so the test can tell which one ran
    assert not np.array_equal(per_bar.sharpe, held.sharpe)
    auto = engine.backtest_signals(o, c, sig)
    np.testing.assert_array_equal(auto.sharpe, held.sharpe)
    np.testing.assert_array_equal(auto.max_drawdown, held.max_drawdown)
    few = np.ascontiguousarray(sig[:, :63])  # one strategy short: the per-bar kernel
    np.testing.assert_array_equal(engine.backtest_signals(o, c, few).sharpe,
                                  engine.backtest_signals(o, c, few, method="per_bar").sharpe)
    for kwargs in ({"mode": "long_short"}, {"return_equity": True}):  # not held runs' work: per bar
        np.testing.assert_array_equal(engine.backtest_signals(o, c, sig, **kwargs).sharpe,
                                      engine.backtest_signals(o, c, sig, method="per_bar", **kwargs).sharpe)
