"""backtest_signals and replay_actions against the slow reference (docs/semantics.md)."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


import engine_reference as ref  # noqa: E402  (conftest.py puts this folder on sys.path)

import himari.engine as engine  # noqa: E402

F64 = dict(rtol=1e-9, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-6)
# sharpe/sortino/calmar carry a sqrt(bars_per_year) or 1/max_drawdown factor: a slightly larger atol.
METRIC_ATOL = {"sharpe": 1e-9, "sortino": 1e-9, "calmar": 1e-9}


def _data(seed, T, dtype=np.float64, vol=0.01):
    rng = np.random.default_rng(seed)
    o, c = ref.random_walk_prices(rng, T, vol=vol)
    return o.astype(dtype), c.astype(dtype), rng


def _check_metrics(res, want, M, where=""):
    for k in ref.METRICS:
        got = np.asarray(getattr(res, k))
        assert got.dtype == np.float64, (where, k, got.dtype)
        assert got.shape == (M,), (where, k, got.shape)
        np.testing.assert_allclose(got, want[k], rtol=1e-9, atol=METRIC_ATOL.get(k, 1e-12), err_msg=f"{where} {k}")


# ------------------------------------------------------------------------------------------
# Reference self-checks (run without the native build)
# ------------------------------------------------------------------------------------------


def test_reference_hand_trade():
    o = np.array([100.0, 101.0, 102.0, 103.0, 104.0])
    c = np.array([100.5, 101.5, 103.0, 103.5, 105.0])
    out = ref.reference_backtest(o, c, np.array([2, 1, 0, 1, 1]), fee=1e-3, slippage=5e-4)
    np.testing.assert_allclose(10_000 * out["equity"][:, 0], [10000.0, 10034.45, 10182.74, 10167.47, 10167.47],
                               atol=0.005)


def test_reference_flat_strategy_is_flat():
    o, c, _ = _data(0, 100)
    out = ref.reference_backtest(o, c, np.ones((100, 2), dtype=np.int64))
    np.testing.assert_array_equal(out["equity"], 1.0)
    for k in ref.METRICS:
        np.testing.assert_array_equal(out[k], 0.0)


# ------------------------------------------------------------------------------------------
# backtest_signals vs reference
# ------------------------------------------------------------------------------------------

BT_CASES = [
    # (seed, T, M, mode, fee, slip, dtype, signal dtype, bars_per_year)
    (1, 50, 3, "long_flat", 1e-3, 5e-4, np.float64, np.int64, 252),
    (2, 300, 5, "long_short", 1e-3, 5e-4, np.float64, np.int32, 105_120),
    (3, 2000, 4, "long_flat", 2e-3, 1e-3, np.float32, np.int64, 105_120),
    (4, 800, 2, "long_short", 0.0, 0.0, np.float32, np.int32, 8760),
    (5, 2, 2, "long_short", 1e-3, 5e-4, np.float64, np.int64, 252),  # n = 1: sharpe is 0
    (6, 500, 6, "long_short", 5e-3, 2e-3, np.float64, np.int64, 365),
]


@pytest.mark.parametrize("case", BT_CASES, ids=[f"case{c[0]}" for c in BT_CASES])
def test_backtest_matches_reference(case):
    seed, T, M, mode, fee, slip, dtype, sdtype, bpy = case
    o, c, rng = _data(seed, T, dtype)
    sig = ref.random_actions(rng, (T, M)).astype(sdtype)
    sig[:, 0] = 1  # one strategy that never trades
    res = engine.backtest_signals(o, c, sig, fee=fee, slippage=slip, mode=mode, bars_per_year=bpy,
                                  return_equity=True)
    want = ref.reference_backtest(o.astype(np.float64), c.astype(np.float64), sig, fee, slip, mode, bpy)
    _check_metrics(res, want, M, f"case {seed}")
    eq = np.asarray(res.equity)
    assert eq.dtype == np.float64 and eq.shape == (T, M)
    np.testing.assert_array_equal(eq[0], 1.0)
    np.testing.assert_allclose(eq, want["equity"], **F64)
    np.testing.assert_array_equal(eq[:, 0], 1.0)


def test_backtest_without_equity_and_to_dict():
    o, c, rng = _data(11, 120)
    sig = ref.random_actions(rng, (120, 3))
    res = engine.backtest_signals(o, c, sig)
    assert res.equity is None
    want = ref.reference_backtest(o, c, sig)
    _check_metrics(res, want, 3)
    d = res.to_dict(1)
    for k in ref.METRICS:
        assert isinstance(d[k], float)
        np.testing.assert_allclose(d[k], want[k][1], rtol=1e-9, atol=METRIC_ATOL.get(k, 1e-12))
    frame = res.to_frame()
    assert len(frame) == 3
    for k in ref.METRICS:
        np.testing.assert_allclose(frame[k].to_numpy(), want[k], rtol=1e-9, atol=METRIC_ATOL.get(k, 1e-12))


def test_backtest_1d_signals_is_one_strategy():
    o, c, rng = _data(12, 200)
    sig = ref.random_actions(rng, 200)
    res1 = engine.backtest_signals(o, c, sig, return_equity=True)
    res2 = engine.backtest_signals(o, c, np.ascontiguousarray(sig[:, None]), return_equity=True)
    for k in ref.METRICS:
        np.testing.assert_array_equal(np.ravel(getattr(res1, k)), np.ravel(getattr(res2, k)))
    np.testing.assert_array_equal(np.ravel(res1.equity), np.ravel(res2.equity))


def test_backtest_last_signal_row_is_ignored():
    o, c, rng = _data(13, 100)
    sig = ref.random_actions(rng, (100, 2))
    sig2 = sig.copy()
    sig2[-1] = 2 - sig2[-1]
    r1 = engine.backtest_signals(o, c, sig, return_equity=True)
    r2 = engine.backtest_signals(o, c, sig2, return_equity=True)
    np.testing.assert_array_equal(r1.equity, r2.equity)


def test_backtest_bankrupt_short_is_frozen():
    # Short at bar 0 (filled at open[1] = 100); the price triples at bar 3: liquidated, flat after.
    T = 10
    o = np.full(T, 100.0)
    c = np.full(T, 100.0)
    o[3:] = c[3:] = 300.0
    sig = np.array([[0, 2], [1, 1], [1, 1], [2, 1], [0, 0], [2, 1], [1, 1], [1, 1], [1, 1], [1, 1]])
    res = engine.backtest_signals(o, c, sig, mode="long_short", bars_per_year=252, return_equity=True)
    want = ref.reference_backtest(o, c, sig, mode="long_short", bars_per_year=252)
    np.testing.assert_allclose(res.equity, want["equity"], **F64)
    np.testing.assert_array_equal(np.asarray(res.equity)[3:, 0], 1e-12)
    _check_metrics(res, want, 2, "bankrupt")


# ------------------------------------------------------------------------------------------
# Hand-computed trades, to the cent on a 10,000 account
# ------------------------------------------------------------------------------------------

HAND_O = np.array([100.0, 101.0, 102.0, 103.0, 104.0])
HAND_C = np.array([100.5, 101.5, 103.0, 103.5, 105.0])


def test_hand_computed_long_round_trip():
    # fee 0.1%, slippage 0.05%. BUY at bar 0 -> filled at open[1] = 101 moved up: px = 101.0505.
    #   qty = 10000 / (101.0505 * 1.001) = 98.861559220 units, cash = 0.
    #   bar 1 mark: 98.861559220 * 101.5 = 10034.45;  bar 2 mark: * 103.0 = 10182.74.
    # SELL at bar 2 -> filled at open[3] = 103 moved down: px = 102.9485,
    #   cash = 98.861559220 * 102.9485 * (1 - 0.001) = 10167.47, flat afterwards.
    fee, slip = 1e-3, 5e-4
    qty = 10_000 / (101.0 * (1 + slip) * (1 + fee))
    assert abs(qty - 98.861559220) < 1e-8
    res = engine.backtest_signals(HAND_O, HAND_C, np.array([2, 1, 0, 1, 1]), fee=fee, slippage=slip,
                                  bars_per_year=252, return_equity=True)
    dollars = 10_000 * np.ravel(res.equity)
    np.testing.assert_allclose(dollars, [10000.00, 10034.45, 10182.74, 10167.47, 10167.47], atol=0.005)
    assert abs(dollars[3] - qty * 103.0 * (1 - slip) * (1 - fee)) < 1e-6
    d = res.to_dict(0)
    assert d["n_trades"] == 2.0
    assert d["turnover"] == 2.0
    assert d["win_rate"] == 1.0
    assert d["exposure"] == 0.5
    assert abs(d["total_return"] - 0.016747158) < 1e-9


def test_hand_computed_short_then_flip_long():
    # long_short. SELL at bar 0 -> short at open[1] moved down: px = 101 * 0.9995 = 100.94950,
    #   qty = 10000 / (100.9495 * 1.001) = 98.9606 units, cash = 10000 + qty * px * (1 - fee).
    #   marks: bar 1 at 101.5 -> 9935.53; bar 2 at 103 -> 9787.09.
    # BUY at bar 2 -> two fills at open[3] = 103 moved up (103.0515): close the short
    #   (cash 9771.80, a losing round trip), then go long with all of it; marks 9804.52, 9946.62.
    fee, slip = 1e-3, 5e-4
    res = engine.backtest_signals(HAND_O, HAND_C, np.array([0, 1, 2, 1, 1]), fee=fee, slippage=slip,
                                  mode="long_short", bars_per_year=252, return_equity=True)
    dollars = 10_000 * np.ravel(res.equity)
    np.testing.assert_allclose(dollars, [10000.00, 9935.53, 9787.09, 9804.52, 9946.62], atol=0.005)
    d = res.to_dict(0)
    assert d["turnover"] == 3.0  # 1 (flat -> short) + 2 (short -> long)
    assert d["n_trades"] == 2.0  # two position changes
    assert d["win_rate"] == 0.0  # the one closed round trip lost
    assert d["exposure"] == 1.0
    # The same signals in long_flat: SELL when flat does nothing.
    res_lf = engine.backtest_signals(HAND_O, HAND_C, np.array([0, 1, 2, 1, 1]), fee=fee, slippage=slip,
                                     mode="long_flat", bars_per_year=252, return_equity=True)
    np.testing.assert_array_equal(np.ravel(res_lf.equity)[:3], 1.0)


def test_slippage_and_fee_at_entry_cost_exactly_their_share():
    # Constant prices: the round trip costs exactly the fee and slippage on both fills.
    T = 6
    o = np.full(T, 50.0)
    c = np.full(T, 50.0)
    fee, slip = 2e-3, 1e-3
    res = engine.backtest_signals(o, c, np.array([2, 1, 0, 1, 1, 1]), fee=fee, slippage=slip, return_equity=True)
    eq = np.ravel(res.equity)
    entry = 1 / ((1 + slip) * (1 + fee))  # units * 50 after buying
    np.testing.assert_allclose(eq[1], entry, rtol=1e-14)
    np.testing.assert_allclose(eq[3:], entry * (1 - slip) * (1 - fee), rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Fees and slippage never raise equity (hypothesis)
# ------------------------------------------------------------------------------------------


@given(
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(2, 300),
    mode=st.sampled_from(["long_flat", "long_short"]),
    fee=st.floats(1e-6, 0.02),
    slip=st.floats(0.0, 0.01),
    vol=st.sampled_from([0.001, 0.01, 0.05]),
)
@settings(max_examples=40, deadline=None)
def test_fees_never_raise_equity(seed, T, mode, fee, slip, vol):
    o, c, rng = _data(seed, T, vol=vol)
    sig = ref.random_actions(rng, (T, 3), p_hold=0.4)
    kw = dict(mode=mode, bars_per_year=252, return_equity=True)
    no_cost = np.asarray(engine.backtest_signals(o, c, sig, fee=0.0, slippage=0.0, **kw).equity)
    fee_only = np.asarray(engine.backtest_signals(o, c, sig, fee=fee, slippage=0.0, **kw).equity)
    both = np.asarray(engine.backtest_signals(o, c, sig, fee=fee, slippage=slip, **kw).equity)
    assert np.all(fee_only <= no_cost * (1 + 1e-12) + 1e-15)
    assert np.all(both <= fee_only * (1 + 1e-12) + 1e-15)
    # And the reference agrees with the native run.
    want = ref.reference_backtest(o, c, sig, fee, slip, mode, 252)
    np.testing.assert_allclose(both, want["equity"], **F64)


# ------------------------------------------------------------------------------------------
# Backtester == env fed the same actions (semantics.md, last paragraph)
# ------------------------------------------------------------------------------------------


def _env_run(o, c, actions, mode, fee, slip, reward=None):
    """One env, window 1, warmup 0, fixed start, episode_length T-1: the backtest configuration."""
    T = len(o)
    market = engine.Market(o, c)
    env = engine.VecTradingEnv(market, n_envs=1, episode_length=T - 1, mode=mode, fee=fee, slippage=slip,
                               reward=reward if reward is not None else engine.RewardConfig(), window=1,
                               seed=0, random_start=False, warmup=0)
    obs, info = env.reset(seed=0)
    rows = []
    obs_rows = [np.array(obs)]
    for t in range(T - 1):
        obs, reward_, term, trunc, info = env.step(np.array([actions[t]]))
        row = {k: np.array(v, copy=True) for k, v in info.items()}
        row["reward"] = np.array(reward_)
        row["terminated"] = np.array(term)
        row["truncated"] = np.array(trunc)
        rows.append(row)
        obs_rows.append(np.array(obs))
    return rows, obs_rows


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
@pytest.mark.parametrize("T", [50, 700])
def test_backtest_equals_env(mode, T):
    o, c, rng = _data(20 + T, T)
    sig = ref.random_actions(rng, T, p_hold=0.5)
    fee, slip = 1e-3, 5e-4
    bt = engine.backtest_signals(o, c, sig, fee=fee, slippage=slip, mode=mode, return_equity=True)
    eq = np.ravel(bt.equity)
    rep = engine.replay_actions(o, c, sig, fee=fee, slippage=slip, mode=mode)
    rows, _ = _env_run(o, c, sig, mode, fee, slip)
    for t, row in enumerate(rows[:-1]):  # steps that do not end the episode
        assert float(row["equity"][0]) == eq[t + 1], f"step {t}: env equity {row['equity'][0]!r} != backtest {eq[t + 1]!r}"
        assert float(row["position"][0]) == float(np.asarray(rep.position)[t + 1]), f"step {t}: position"
    last = rows[-1]
    assert bool(last["truncated"][0]) and not bool(last["terminated"][0])
    assert int(np.asarray(last["episode_length"])[0]) == T - 1
    np.testing.assert_allclose(float(last["episode_return"][0]), np.log(eq[-1]), rtol=1e-13, atol=1e-15)
    # trades/turnover: at the step before the last, and in total via the metrics.
    want = ref.reference_backtest(o, c, sig, fee, slip, mode)
    if T > 2:
        assert float(rows[-2]["trades"][0]) == want["trades"][T - 2, 0]
    assert float(np.ravel(bt.n_trades)[0]) == want["n_trades"][0]
    # replay: same equity curve, exactly.
    np.testing.assert_array_equal(np.ravel(rep.equity), eq)


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_backtest_equals_env_every_step(mode):
    """The env's info on the truncating step shows the next episode's account, so to see the
    final account too, give the env one extra bar (and an episode that long): its first T-1 steps
    are then exactly the backtest's T-1 steps, and no episode ends among them."""
    T = 150
    o, c, rng = _data(40, T + 1)
    sig = ref.random_actions(rng, T, p_hold=0.5)
    bt = engine.backtest_signals(o[:T].copy(), c[:T].copy(), sig, mode=mode, return_equity=True)
    market = engine.Market(o, c)
    env = engine.VecTradingEnv(market, n_envs=1, episode_length=T, mode=mode, window=1, seed=0,
                               random_start=False, warmup=0)
    env.reset(seed=0)
    want = ref.reference_backtest(o[:T], c[:T], sig, mode=mode)
    eq = np.ravel(bt.equity)
    for t in range(T - 1):
        _, _, term, trunc, info = env.step(np.array([sig[t]]))
        assert not bool(term[0]) and not bool(trunc[0])
        assert float(info["equity"][0]) == eq[t + 1], f"step {t}"
        assert float(info["position"][0]) == want["position"][t + 1, 0], f"step {t}"
        assert float(info["trades"][0]) == want["trades"][t + 1, 0], f"step {t}"
    assert float(info["trades"][0]) == float(np.ravel(bt.n_trades)[0])
    assert float(info["turnover"][0]) == float(np.ravel(bt.turnover)[0])


# ------------------------------------------------------------------------------------------
# replay_actions
# ------------------------------------------------------------------------------------------

REPLAY_CASES = [
    # (seed, T, M or None for 1-D, mode, shaping)
    (1, 60, None, "long_flat", False),
    (2, 400, 3, "long_short", True),
    (3, 1500, 2, "long_flat", True),
    (4, 200, 4, "long_short", False),
]


def _reward_cfg(shaping):
    if not shaping:
        return engine.RewardConfig()
    return engine.RewardConfig(drawdown_penalty=0.3, turnover_penalty=1e-4, dsr_weight=0.1, dsr_decay=0.02)


@pytest.mark.parametrize("case", REPLAY_CASES, ids=[f"case{c[0]}" for c in REPLAY_CASES])
def test_replay_matches_reference(case):
    seed, T, M, mode, shaping = case
    o, c, rng = _data(100 + seed, T)
    acts = ref.random_actions(rng, T if M is None else (T, M))
    rc = _reward_cfg(shaping)
    fee, slip = 1e-3, 5e-4
    rep = engine.replay_actions(o, c, acts, fee=fee, slippage=slip, mode=mode, reward=rc)
    want = ref.reference_replay(o, c, acts, fee, slip, mode, rc)
    shape = (T,) if M is None else (T, M)
    shape1 = (T - 1,) if M is None else (T - 1, M)
    reward = np.asarray(rep.reward)
    assert reward.dtype == np.float64 and reward.shape == shape1
    np.testing.assert_allclose(reward, want["reward"], **F64)
    equity = np.asarray(rep.equity)
    assert equity.shape == shape
    np.testing.assert_allclose(equity, want["equity"], **F64)
    np.testing.assert_array_equal(np.asarray(rep.position).astype(np.float64), want["position"])
    account = np.asarray(rep.account)
    assert account.dtype == np.float32 and account.shape == shape + (4,)
    np.testing.assert_array_equal(account[0], 0.0)
    np.testing.assert_allclose(account, want["account"], **F32)


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_replay_equals_env_rewards(mode):
    """Offline and online rewards agree: the env's float32 reward is the replay's float64 reward
    rounded, and the env's account columns are the replay's."""
    T = 300
    o, c, rng = _data(55, T)
    acts = ref.random_actions(rng, T)
    rc = _reward_cfg(True)
    rep = engine.replay_actions(o, c, acts, fee=1e-3, slippage=5e-4, mode=mode, reward=rc)
    rows, obs_rows = _env_run(o, c, acts, mode, 1e-3, 5e-4, reward=rc)
    env_reward = np.array([r["reward"][0] for r in rows])
    np.testing.assert_array_equal(env_reward, np.asarray(rep.reward).astype(np.float32))
    env_acct = np.stack([ob[0, -1, -4:] for ob in obs_rows[:-1]])  # decisions 0 .. T-2 (last obs is a new episode)
    np.testing.assert_array_equal(env_acct, np.asarray(rep.account)[: T - 1])


def test_replay_through_bankruptcy_matches_reference():
    """replay_actions never resets: a liquidated account stays flat at 1e-12 (like the backtest),
    and its later rewards are those of a flat account."""
    T = 10
    o = np.full(T, 100.0)
    c = np.full(T, 100.0)
    o[3:] = c[3:] = 300.0
    acts = np.array([[0, 2], [1, 1], [1, 1], [2, 1], [0, 0], [2, 1], [1, 1], [1, 1], [1, 1], [1, 1]])
    rc = _reward_cfg(True)
    rep = engine.replay_actions(o, c, acts, mode="long_short", reward=rc)
    want = ref.reference_replay(o, c, acts, mode="long_short", reward=rc)
    np.testing.assert_allclose(np.asarray(rep.equity), want["equity"], **F64)
    np.testing.assert_array_equal(np.asarray(rep.position), want["position"])
    np.testing.assert_allclose(np.asarray(rep.reward), want["reward"], **F64)
    np.testing.assert_allclose(np.asarray(rep.account), want["account"], **F32)
    np.testing.assert_array_equal(np.asarray(rep.equity)[3:, 0], 1e-12)
