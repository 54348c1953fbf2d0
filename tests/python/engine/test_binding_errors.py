"""Bad input at every entry point gives a himari.errors exception naming the argument, never a
crash or a foreign exception (docs/engine-api.md, "Exceptions")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import himari.engine as engine
from himari import errors

SETTINGS = settings(max_examples=40, deadline=None)


def expect_invalid(fn, names, cls=None):
    """fn() must raise an InvalidArgumentError (a ValueError) whose message names the argument."""
    cls = cls or errors.InvalidArgumentError
    with pytest.raises(errors.HimariError) as info:
        fn()
    exc = info.value
    assert isinstance(exc, cls), f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    assert isinstance(exc, ValueError)
    msg = str(exc)
    names = (names,) if isinstance(names, str) else tuple(names)
    assert any(n in msg for n in names), f"message does not name {names}: {msg!r}"
    return exc


def valid_or_invalid(fn, names):
    """For inputs the docs allow either way: a result, or a himari error naming the argument."""
    try:
        return fn()
    except errors.HimariError as exc:
        assert isinstance(exc, errors.InvalidArgumentError), repr(exc)
        names = (names,) if isinstance(names, str) else tuple(names)
        assert any(n in str(exc) for n in names), str(exc)
        return None


def prices(rng, T, dtype=np.float64):
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, T)))
    o = np.r_[100.0, c[:-1]] * np.exp(rng.normal(0, 0.002, T))
    return o.astype(dtype), c.astype(dtype)


# ------------------------------------------------------------------------------------------
# Corruptions of a float price array
# ------------------------------------------------------------------------------------------

VALUE_DEFECTS = ["nan", "inf", "-inf", "zero", "negative", "tiny_negative"]
DTYPE_DEFECTS = ["int64", "int32", "bool", "float16", "complex128", "object", "big_endian_f8"]
SHAPE_DEFECTS = ["2d", "0d", "empty", "len1"]
ALL_PRICE_DEFECTS = VALUE_DEFECTS + DTYPE_DEFECTS + SHAPE_DEFECTS


def corrupt_prices(x, defect, pos):
    x = np.array(x, copy=True)
    pos = pos % x.shape[-1]
    if defect in VALUE_DEFECTS:
        x = x.astype(np.float64) if x.dtype != np.float32 else x
        x.reshape(-1, x.shape[-1])[..., pos] = {
            "nan": np.nan,
            "inf": np.inf,
            "-inf": -np.inf,
            "zero": 0.0,
            "negative": -1.0,
            "tiny_negative": -1e-300 if x.dtype == np.float64 else -1e-30,
        }[defect]
        return x
    if defect == "int64":
        return np.round(x).astype(np.int64)
    if defect == "int32":
        return np.round(x).astype(np.int32)
    if defect == "bool":
        return np.ones(x.shape, dtype=bool)
    if defect == "float16":
        return x.astype(np.float16)
    if defect == "complex128":
        return x.astype(np.complex128)
    if defect == "object":
        return x.astype(object)
    if defect == "big_endian_f8":
        return x.astype(">f8")
    if defect == "2d":
        return np.stack([x, x], axis=-1)
    if defect == "0d":
        return np.array(x.ravel()[0])
    if defect == "empty":
        return np.zeros((0,), dtype=np.float64)
    if defect == "len1":
        return x.ravel()[:1].copy()
    raise AssertionError(defect)


# ------------------------------------------------------------------------------------------
# Market
# ------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**31), T=st.integers(2, 60), which=st.sampled_from(["open", "close"]),
       defect=st.sampled_from(ALL_PRICE_DEFECTS), pos=st.integers(0, 10_000),
       dtype=st.sampled_from([np.float32, np.float64]))
@SETTINGS
def test_market_bad_prices(seed, T, which, defect, pos, dtype):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T, dtype)
    if which == "open":
        o = corrupt_prices(o, defect, pos)
    else:
        c = corrupt_prices(c, defect, pos)
    names = [which]
    if defect in ("empty", "len1"):
        names = ["open", "close"]  # a length mismatch may be reported against either
    expect_invalid(lambda: engine.Market(o, c), names)


@given(seed=st.integers(0, 2**31), T=st.integers(2, 60), dT=st.integers(1, 5), dtype_o=st.sampled_from(["f4", "f8"]),
       dtype_c=st.sampled_from(["f4", "f8"]))
@SETTINGS
def test_market_length_mismatch_and_mixed_dtypes(seed, T, dT, dtype_o, dtype_c):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T + dT)
    expect_invalid(lambda: engine.Market(o[:T].astype(dtype_o), c.astype(dtype_c)), ["open", "close"],
                   cls=errors.InvalidArgumentError)
    expect_invalid(lambda: engine.Market(o.astype(dtype_o), c[:T].astype(dtype_c)), ["open", "close"])
    # Equal lengths with mixed float dtypes are fine.
    m = engine.Market(o.astype(dtype_o), c.astype(dtype_c))
    assert m.n_bars == T + dT


@given(seed=st.integers(0, 2**31), T=st.integers(2, 40),
       defect=st.sampled_from(["nan", "inf", "wrong_T", "1d", "3d", "int", "complex", "object", "float16"]))
@SETTINGS
def test_market_bad_features(seed, T, defect):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T)
    f = rng.normal(size=(T, 3))
    if defect == "nan":
        f[rng.integers(T), rng.integers(3)] = np.nan
    elif defect == "inf":
        f[rng.integers(T), rng.integers(3)] = -np.inf
    elif defect == "wrong_T":
        f = rng.normal(size=(T + 1, 3))
    elif defect == "1d":
        f = f[:, 0].copy()
    elif defect == "3d":
        f = f[:, :, None].copy()
    elif defect == "int":
        f = np.round(f).astype(np.int64)
    elif defect == "complex":
        f = f.astype(np.complex64)
    elif defect == "object":
        f = f.astype(object)
    elif defect == "float16":
        f = f.astype(np.float16)
    expect_invalid(lambda: engine.Market(o, c, f), "features")


@given(seed=st.integers(0, 2**31), T=st.integers(2, 40), F=st.integers(1, 5),
       value=st.sampled_from([1e39, -1e39, 1e300, -1.7976931348623157e308, 2.0**128 - 2.0**103]),
       as_list=st.booleans())
@SETTINGS
def test_market_float64_features_beyond_float32_are_refused(seed, T, F, value, as_list):
    """Finite in float64 but inf once stored as float32: before, 1e39 was stored as inf."""
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T)
    f = rng.normal(size=(T, F))
    i, j = int(rng.integers(T)), int(rng.integers(F))
    f[i, j] = value
    exc = expect_invalid(lambda: engine.Market(o, c, f.tolist() if as_list else f), "features")
    assert f"row {i}, column {j}" in str(exc) and "float32" in str(exc)


def test_market_float64_features_at_the_float32_limit_are_kept():
    rng = np.random.default_rng(0)
    o, c = prices(rng, 6)
    f = np.zeros((6, 2))
    f[1, 0] = float(np.finfo(np.float32).max)
    f[2, 1] = np.nextafter(2.0**128 - 2.0**103, 0.0)  # the largest float64 that rounds to float32 max
    f[3, 0] = -f[2, 1]
    stored = np.asarray(engine.Market(o, c, f).features)
    assert np.isfinite(stored).all()
    assert stored[1, 0] == stored[2, 1] == -stored[3, 0] == np.finfo(np.float32).max


def test_market_non_contiguous_inputs_are_read_correctly():
    rng = np.random.default_rng(0)
    o, c = prices(rng, 80)
    f = rng.normal(size=(80, 6))
    m = engine.Market(o[::2], c[::2], f[::2, ::3])  # strided views
    np.testing.assert_array_equal(np.asarray(m.open), o[::2])
    np.testing.assert_array_equal(np.asarray(m.close), c[::2])
    np.testing.assert_array_equal(np.asarray(m.features), f[::2, ::3].astype(np.float32))
    m2 = engine.Market(o[::-1], c[::-1])  # negative strides
    np.testing.assert_array_equal(np.asarray(m2.open), o[::-1])


def test_market_bad_warmup_and_device():
    rng = np.random.default_rng(0)
    o, c = prices(rng, 20)
    expect_invalid(lambda: engine.Market(o, c, warmup=-1), "warmup")
    with pytest.raises(errors.HimariError):
        engine.Market(o, c, device="tpu")
    if not engine.cuda_available():
        with pytest.raises(errors.CudaUnavailableError):
            engine.Market(o, c, device="cuda")


# ------------------------------------------------------------------------------------------
# VecTradingEnv construction and step
# ------------------------------------------------------------------------------------------


def _market(T=50, F=2, seed=0):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T)
    return engine.Market(o, c, rng.normal(size=(T, F)) if F else None)


BAD_ENV_KWARGS = [
    (dict(n_envs=0), "n_envs"),
    (dict(n_envs=-3), "n_envs"),
    (dict(episode_length=0), "episode_length"),
    (dict(episode_length=-1), "episode_length"),
    (dict(window=0), "window"),
    (dict(window=-2), "window"),
    (dict(window=50), ("window", "market")),  # T = 50: no bar left to step from
    (dict(warmup=-1), "warmup"),
    (dict(warmup=49), ("warmup", "market")),
    (dict(mode="foo"), "mode"),
    (dict(mode=""), "mode"),
    (dict(mode="LONG_FLAT"), "mode"),
    (dict(mode=None), "mode"),
    (dict(fee=-1e-3), "fee"),
    (dict(fee=float("nan")), "fee"),
    (dict(fee=float("inf")), "fee"),
    (dict(slippage=-1e-4), "slippage"),
    (dict(slippage=float("nan")), "slippage"),
    (dict(seed=-1), "seed"),
]


@pytest.mark.parametrize("kwargs,names", BAD_ENV_KWARGS, ids=[str(k) for k, _ in BAD_ENV_KWARGS])
def test_env_bad_constructor_arguments(kwargs, names):
    market = _market()
    expect_invalid(lambda: engine.VecTradingEnv(market, **kwargs), names)


@pytest.mark.parametrize("field,value", [("dsr_decay", 0.0), ("dsr_decay", -0.5), ("dsr_decay", 1.5),
                                         ("dsr_decay", float("nan")), ("dsr_weight", float("nan")),
                                         ("drawdown_penalty", float("nan")), ("turnover_penalty", float("inf"))])
def test_env_bad_reward_config(field, value):
    market = _market()
    expect_invalid(lambda: engine.RewardConfig(**{field: value}), field)
    rc = engine.RewardConfig()
    object.__setattr__(rc, field, value)  # past the Python check: the native core refuses it too
    expect_invalid(lambda: engine.VecTradingEnv(market, reward=rc), field)
    rng = np.random.default_rng(0)
    o, c = prices(rng, 30)
    expect_invalid(lambda: engine.replay_actions(o, c, np.ones(30, dtype=np.int64), reward=rc), field)


def test_settings_objects_of_the_wrong_kind_are_refused_by_name():
    """A dict where a RewardConfig or EKFParams belongs, or a string where a number belongs, is
    told so, not met with an AttributeError or a message that prints the string as a number."""
    market = _market()
    rng = np.random.default_rng(0)
    o, c = prices(rng, 30)
    wants = "expected a RewardConfig"
    for call in (lambda: engine.VecTradingEnv(market, reward={"drawdown_penalty": 1.0}),
                 lambda: engine.replay_actions(o, c, np.ones(30, dtype=np.int64), reward={"drawdown_penalty": 1.0})):
        with pytest.raises(errors.InvalidArgumentError, match=wants):
            call()
    with pytest.raises(errors.InvalidArgumentError, match="params: expected an EKFParams, got dict"):
        engine.ekf(c, {"q_level": 1e-6})
    with pytest.raises(errors.InvalidArgumentError, match="drawdown_penalty: expected a number, got '1'"):
        engine.RewardConfig(drawdown_penalty="1")
    assert engine.RewardConfig(drawdown_penalty=np.float32(0.5)).drawdown_penalty == 0.5
    # a NumPy number is kept as the Python float it spells: configs are written to JSON and YAML
    from himari.trading import EnvConfig

    costs = EnvConfig(fee=np.float32(0.001), slippage=np.float64(0.0005)).costs()
    assert costs == {"fee": 0.001, "slippage": 0.0005, "mode": "long_flat"}
    assert all(type(costs[k]) is float for k in ("fee", "slippage"))


def test_the_bars_a_huge_window_needs_are_stated_without_wrapping():
    market = _market()
    with pytest.raises(errors.InvalidArgumentError, match=f"expected at least {2**63} bars for window={2**63 - 1}"):
        engine.VecTradingEnv(market, window=2**63 - 1)


ACTION_DEFECTS = ["too_long", "too_short", "2d", "0d", "empty", "float64", "float32", "float16", "bool",
                  "complex", "object", "uint32", "uint64", "minus1", "three", "big", "int8_minus", "uint8_255"]


def make_bad_actions(rng, n, defect):
    good = rng.integers(0, 3, size=n)
    if defect == "too_long":
        return rng.integers(0, 3, size=n + 1)
    if defect == "too_short":
        return rng.integers(0, 3, size=max(n - 1, 0))
    if defect == "2d":
        return good[:, None].copy()
    if defect == "0d":
        return np.array(1)
    if defect == "empty":
        return np.zeros((0,), dtype=np.int64)
    if defect in ("float64", "float32", "float16", "complex"):
        return good.astype({"float64": np.float64, "float32": np.float32, "float16": np.float16,
                            "complex": np.complex128}[defect])
    if defect == "bool":
        return good.astype(bool)
    if defect == "object":
        return good.astype(object)
    if defect == "uint32":
        return good.astype(np.uint32)
    if defect == "uint64":
        return good.astype(np.uint64)
    bad = good.copy()
    i = rng.integers(n)
    if defect == "minus1":
        bad[i] = -1
    elif defect == "three":
        bad[i] = 3
    elif defect == "big":
        bad[i] = 2**40
    elif defect == "int8_minus":
        bad = bad.astype(np.int8)
        bad[i] = -128
    elif defect == "uint8_255":
        bad = bad.astype(np.uint8)
        bad[i] = 255
    return bad


@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), defect=st.sampled_from(ACTION_DEFECTS))
@SETTINGS
def test_env_step_bad_actions(seed, n, defect):
    rng = np.random.default_rng(seed)
    env = engine.VecTradingEnv(_market(seed=seed % 7), n_envs=n, episode_length=10, seed=seed)
    env.reset(seed=seed)
    bad = make_bad_actions(rng, n, defect)
    if defect in ("too_short",) and n == 1:
        bad = np.zeros((0,), dtype=np.int64)
    twin = engine.VecTradingEnv(_market(seed=seed % 7), n_envs=n, episode_length=10, seed=seed)
    twin.reset(seed=seed)
    expect_invalid(lambda: env.step(bad), "actions")
    # A rejected step changes nothing: the env goes on exactly like one that never saw it.
    good = rng.integers(0, 3, size=n)
    got = np.array(env.step(good)[0])
    np.testing.assert_array_equal(got, np.array(twin.step(good)[0]))


def test_env_step_invalid_action_error_class():
    env = engine.VecTradingEnv(_market(), n_envs=2)
    env.reset(seed=0)
    exc = expect_invalid(lambda: env.step(np.array([1, 3])), "actions")
    # semantics.md calls this InvalidActionError; engine-api.md lists InvalidArgumentError.
    if hasattr(errors, "InvalidActionError"):
        assert isinstance(exc, errors.InvalidActionError)


def test_env_step_accepts_lists_and_strided_int_arrays():
    m = _market()
    env1 = engine.VecTradingEnv(m, n_envs=3, episode_length=20, seed=1)
    env2 = engine.VecTradingEnv(m, n_envs=3, episode_length=20, seed=1)
    env1.reset(seed=1)
    env2.reset(seed=1)
    rng = np.random.default_rng(0)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.int64):
        a = rng.integers(0, 3, size=6).astype(dtype)
        o1 = np.array(env1.step(a[::2])[0])  # strided view
        o2 = np.array(env2.step([int(v) for v in a[::2]])[0])  # plain list
        np.testing.assert_array_equal(o1, o2)


# ------------------------------------------------------------------------------------------
# backtest_signals and replay_actions
# ------------------------------------------------------------------------------------------

SIGNAL_DEFECTS = ["wrong_T", "3d", "no_columns", "empty", "float64", "float32", "float16", "bool", "complex",
                  "object", "uint32", "uint64", "minus1", "three", "big", "uint8_255", "0d"]


def make_bad_signals(rng, T, M, defect):
    good = rng.integers(0, 3, size=(T, M))
    if defect == "wrong_T":
        return rng.integers(0, 3, size=(T + rng.integers(1, 3), M))
    if defect == "3d":
        return good[:, :, None].copy()
    if defect == "no_columns":
        return np.zeros((T, 0), dtype=np.int64)
    if defect == "empty":
        return np.zeros((0,), dtype=np.int64)
    if defect == "0d":
        return np.array(1)
    if defect in ("float64", "float32", "float16", "complex"):
        return good.astype({"float64": np.float64, "float32": np.float32, "float16": np.float16,
                            "complex": np.complex64}[defect])
    if defect == "bool":
        return good.astype(bool)
    if defect == "object":
        return good.astype(object)
    if defect in ("uint32", "uint64"):
        return good.astype(defect)
    bad = good.copy()
    i, j = rng.integers(max(T - 1, 1)), rng.integers(M)  # not in the ignored last row
    if defect == "minus1":
        bad[i, j] = -1
    elif defect == "three":
        bad[i, j] = 3
    elif defect == "big":
        bad[i, j] = -(2**62)
    elif defect == "uint8_255":
        bad = bad.astype(np.uint8)
        bad[i, j] = 255
    return bad


@given(seed=st.integers(0, 2**31), T=st.integers(2, 50), M=st.integers(1, 4),
       defect=st.sampled_from(SIGNAL_DEFECTS), fn=st.sampled_from(["backtest", "replay"]))
@SETTINGS
def test_bad_signals(seed, T, M, defect, fn):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T)
    bad = make_bad_signals(rng, T, M, defect)
    name = "signals" if fn == "backtest" else "actions"
    call = (lambda s: engine.backtest_signals(o, c, s, return_equity=True)) if fn == "backtest" else (
        lambda s: engine.replay_actions(o, c, s))
    if defect in ("uint32", "uint64"):
        # "integer array": either accepted (same result as int64) or rejected as a dtype.
        res = valid_or_invalid(lambda: call(bad), name)
        if res is not None:
            want = call(bad.astype(np.int64))
            np.testing.assert_array_equal(np.asarray(res.equity), np.asarray(want.equity))
        return
    expect_invalid(lambda: call(bad), name)


@given(seed=st.integers(0, 2**31), T=st.integers(2, 50), which=st.sampled_from(["open", "close"]),
       defect=st.sampled_from(ALL_PRICE_DEFECTS), pos=st.integers(0, 10_000),
       fn=st.sampled_from(["backtest", "replay"]))
@SETTINGS
def test_backtest_bad_prices(seed, T, which, defect, pos, fn):
    rng = np.random.default_rng(seed)
    o, c = prices(rng, T)
    if which == "open":
        o = corrupt_prices(o, defect, pos)
    else:
        c = corrupt_prices(c, defect, pos)
    sig = rng.integers(0, 3, size=(T, 2))
    names = [which] if defect not in ("empty", "len1", "2d", "0d") else ["open", "close", "signals", "actions"]
    if fn == "backtest":
        expect_invalid(lambda: engine.backtest_signals(o, c, sig), names)
    else:
        expect_invalid(lambda: engine.replay_actions(o, c, sig), names)


BAD_COSTS = [
    (dict(fee=-1e-3), "fee"),
    (dict(fee=float("nan")), "fee"),
    (dict(fee=float("inf")), "fee"),
    (dict(fee=-float("inf")), "fee"),
    (dict(slippage=-1e-4), "slippage"),
    (dict(slippage=float("nan")), "slippage"),
    (dict(mode="foo"), "mode"),
    (dict(mode=""), "mode"),
    (dict(mode="long_flat "), "mode"),
    (dict(mode=None), "mode"),
]


@pytest.mark.parametrize("kwargs,name", BAD_COSTS, ids=[str(k) for k, _ in BAD_COSTS])
@pytest.mark.parametrize("fn", ["backtest", "replay"])
def test_backtest_bad_costs_and_mode(kwargs, name, fn):
    rng = np.random.default_rng(1)
    o, c = prices(rng, 30)
    sig = rng.integers(0, 3, size=(30, 2))
    f = engine.backtest_signals if fn == "backtest" else engine.replay_actions
    expect_invalid(lambda: f(o, c, sig, **kwargs), name)


@pytest.mark.parametrize("bpy", [0.0, -252.0, float("nan"), float("inf")])
def test_backtest_bad_bars_per_year(bpy):
    rng = np.random.default_rng(2)
    o, c = prices(rng, 30)
    expect_invalid(lambda: engine.backtest_signals(o, c, np.ones((30, 1), dtype=np.int64), bars_per_year=bpy),
                   "bars_per_year")


def test_backtest_non_contiguous_inputs_match_contiguous():
    rng = np.random.default_rng(3)
    o, c = prices(rng, 200)
    sig = rng.integers(0, 3, size=(100, 6)).astype(np.int32)
    a = engine.backtest_signals(o[::2], c[::2], sig[:, ::2], return_equity=True)
    b = engine.backtest_signals(o[::2].copy(), c[::2].copy(), np.ascontiguousarray(sig[:, ::2]), return_equity=True)
    np.testing.assert_array_equal(a.equity, b.equity)
    fortran = np.asfortranarray(sig)
    a = engine.backtest_signals(o[::2], c[::2], fortran, return_equity=True)
    b = engine.backtest_signals(o[::2], c[::2], sig, return_equity=True)
    np.testing.assert_array_equal(a.equity, b.equity)
    r1 = engine.replay_actions(o[::2], c[::2], sig[:, ::2])
    r2 = engine.replay_actions(o[::2].copy(), c[::2].copy(), np.ascontiguousarray(sig[:, ::2]))
    np.testing.assert_array_equal(r1.reward, r2.reward)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_backtest_accepts_documented_integer_dtypes(dtype):
    rng = np.random.default_rng(4)
    o, c = prices(rng, 60)
    sig = rng.integers(0, 3, size=(60, 3))
    a = engine.backtest_signals(o, c, sig.astype(dtype), return_equity=True)
    b = engine.backtest_signals(o, c, sig.astype(np.int64), return_equity=True)
    np.testing.assert_array_equal(a.equity, b.equity)


@pytest.mark.parametrize("dtype", [">i8", ">i4", ">i2"])
@pytest.mark.parametrize("entry", ["step", "backtest", "replay"])
def test_non_native_byte_order_is_not_misread(dtype, entry):
    """A big-endian integer array holds the same numbers: it must act like the native-order one
    or be rejected as a dtype (ShapeError), never be read byte-swapped (1 -> 2**56)."""
    rng = np.random.default_rng(5)
    T, n = 30, 3
    o, c = prices(rng, T)
    if entry == "step":
        acts = np.array([1, 2, 0])
        m = engine.Market(o, c)
        env1 = engine.VecTradingEnv(m, n_envs=n, episode_length=10, seed=3)
        env2 = engine.VecTradingEnv(m, n_envs=n, episode_length=10, seed=3)
        env1.reset(seed=3)
        env2.reset(seed=3)
        try:
            got = np.array(env1.step(acts.astype(dtype))[0])
        except errors.HimariError as exc:
            assert isinstance(exc, errors.ShapeError), f"byte-swapped actions misread: {exc}"
            return
        np.testing.assert_array_equal(got, np.array(env2.step(acts)[0]))
        return
    sig = rng.integers(0, 3, size=(T, n))
    f = engine.backtest_signals if entry == "backtest" else engine.replay_actions
    try:
        got = f(o, c, sig.astype(dtype))
    except errors.HimariError as exc:
        assert isinstance(exc, errors.ShapeError), f"byte-swapped {entry} input misread: {exc}"
        return
    want = f(o, c, sig)
    np.testing.assert_array_equal(np.asarray(got.total_return if entry == "backtest" else got.reward),
                                  np.asarray(want.total_return if entry == "backtest" else want.reward))


def test_arrays_with_their_own_dtype_objects_are_accepted():
    """dtypes are compared by value: an unpickled array (its own descriptor object, as from
    multiprocessing or joblib) and long long integers (np.longlong, the same 64 bits as int64)
    are read like their plain counterparts, at every entry point."""
    import pickle

    rng = np.random.default_rng(6)
    o, c = prices(rng, 40)
    feats = rng.normal(size=(40, 2)).astype(np.float32)
    sig = rng.integers(0, 3, size=(40, 2))
    po, pc, pf, psig = (pickle.loads(pickle.dumps(x)) for x in (o, c, feats, sig))
    assert po.dtype is not np.dtype(np.float64)  # the case under test
    np.testing.assert_array_equal(engine.Market(po, pc, pf).features, engine.Market(o, c, feats).features)
    for s in (psig, sig.astype(np.longlong)):
        np.testing.assert_array_equal(engine.backtest_signals(po, pc, s).total_return,
                                      engine.backtest_signals(o, c, sig).total_return)
        np.testing.assert_array_equal(engine.replay_actions(po, pc, s).reward, engine.replay_actions(o, c, sig).reward)
    np.testing.assert_array_equal(engine.ekf(pickle.loads(pickle.dumps(c[None]))), engine.ekf(c[None]))
    env = engine.VecTradingEnv(engine.Market(o, c), n_envs=2, episode_length=10)
    env.reset(seed=0)
    env.step(pickle.loads(pickle.dumps(np.array([2, 2]))))
    env.step(np.array([0, 2], dtype=np.longlong))
    np.testing.assert_array_equal(env.accounts["position"], [0.0, 1.0])


# ------------------------------------------------------------------------------------------
# ekf
# ------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**31), B=st.integers(1, 4), T=st.integers(1, 40), defect=st.sampled_from(
    ["nan", "inf", "-inf", "zero", "negative", "int64", "bool", "float16", "complex128", "object", "3d", "0d",
     "empty_1d", "no_bars"]), one_d=st.booleans())
@SETTINGS
def test_ekf_bad_prices(seed, B, T, defect, one_d):
    rng = np.random.default_rng(seed)
    p = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(B, T)), axis=1))
    if one_d:
        p = p[0].copy()
    b, t = rng.integers(p.shape[0] if p.ndim == 2 else 1), rng.integers(T)
    idx = (b, t) if p.ndim == 2 else (t,)
    if defect in ("nan", "inf", "-inf", "zero", "negative"):
        p[idx] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "zero": 0.0, "negative": -3.0}[defect]
        exc = expect_invalid(lambda: engine.ekf(p), "prices")
        assert str(t) in str(exc)  # the message names the bar
        return
    if defect == "int64":
        p = np.round(p).astype(np.int64)
    elif defect == "bool":
        p = np.ones(p.shape, dtype=bool)
    elif defect == "float16":
        p = p.astype(np.float16)
    elif defect == "complex128":
        p = p.astype(np.complex128)
    elif defect == "object":
        p = p.astype(object)
    elif defect == "3d":
        p = p.reshape(1, 1, -1)
    elif defect == "0d":
        p = np.array(100.0)
    elif defect == "empty_1d":
        p = np.zeros((0,), dtype=np.float64)
    elif defect == "no_bars":
        p = np.zeros((B, 0), dtype=np.float64)
    expect_invalid(lambda: engine.ekf(p), "prices")


def test_ekf_edge_shapes():
    # One bar: the state is the initial one after the first level update.
    s = np.asarray(engine.ekf(np.array([[50.0]])))
    assert s.shape == (1, 1, 4)
    np.testing.assert_allclose(s[0, 0], [np.log(50.0), 0.0, 0.0, -13.0], atol=1e-15)
    # An empty batch: an empty result or an error, never a crash.
    res = valid_or_invalid(lambda: engine.ekf(np.zeros((0, 5))), "prices")
    if res is not None:
        assert np.asarray(res).shape == (0, 5, 4)
    # Strided input is read correctly.
    rng = np.random.default_rng(0)
    p = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(4, 60)), axis=1))
    np.testing.assert_array_equal(np.asarray(engine.ekf(p[::2, ::3])),
                                  np.asarray(engine.ekf(np.ascontiguousarray(p[::2, ::3]))))
    if not engine.cuda_available():
        with pytest.raises(errors.CudaUnavailableError):
            engine.ekf(p, device="cuda")


# ------------------------------------------------------------------------------------------
# The battery in a subprocess: a segfault fails this test instead of killing pytest
# ------------------------------------------------------------------------------------------

BATTERY = textwrap.dedent(
    r"""
    import sys, traceback
    import numpy as np
    import himari.engine as e
    from himari import errors

    rng = np.random.default_rng(0)
    T = 40
    c = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, T)))
    o = np.r_[100.0, c[:-1]]
    sig = rng.integers(0, 3, size=(T, 3))
    m = e.Market(o, c, rng.normal(size=(T, 2)))
    env = e.VecTradingEnv(m, n_envs=3, episode_length=7, window=3)
    env.reset(seed=1)

    nan_o = o.copy(); nan_o[5] = np.nan
    neg_c = c.copy(); neg_c[-1] = -1.0
    big = np.array([2**62, 1, 1])
    cases = {
        "market nan": lambda: e.Market(nan_o, c),
        "market neg": lambda: e.Market(o, neg_c),
        "market empty": lambda: e.Market(np.zeros(0), np.zeros(0)),
        "market one bar": lambda: e.Market(o[:1], c[:1]),
        "market None": lambda: e.Market(None, c),
        "market str": lambda: e.Market("abc", c),
        "market object": lambda: e.Market(o.astype(object), c),
        "market complex": lambda: e.Market(o.astype(complex), c),
        "market 2d": lambda: e.Market(np.stack([o, o]), np.stack([c, c])),
        "market mismatch": lambda: e.Market(o[:-1], c),
        "market features T": lambda: e.Market(o, c, np.zeros((T - 1, 2))),
        "market features nan": lambda: e.Market(o, c, np.full((T, 2), np.nan)),
        "market features 0-width": lambda: e.Market(o, c, np.zeros((T, 0))),
        "env window too big": lambda: e.VecTradingEnv(m, window=T + 5),
        "env window huge": lambda: e.VecTradingEnv(m, window=2**40),
        "env warmup huge": lambda: e.VecTradingEnv(m, warmup=2**62),
        "env episode huge": lambda: e.VecTradingEnv(m, episode_length=2**62).reset(seed=3),
        "env n_envs 0": lambda: e.VecTradingEnv(m, n_envs=0),
        "env mode": lambda: e.VecTradingEnv(m, mode="x"),
        "env fee nan": lambda: e.VecTradingEnv(m, fee=float("nan")),
        "env reset big seed": lambda: env.reset(seed=2**64 - 1),
        "step short": lambda: env.step(np.array([1, 1])),
        "step long": lambda: env.step(np.array([1, 1, 1, 1])),
        "step empty": lambda: env.step(np.zeros(0, dtype=np.int64)),
        "step None": lambda: env.step(None),
        "step str": lambda: env.step("abc"),
        "step float": lambda: env.step(np.array([1.0, 1.0, 1.0])),
        "step nan": lambda: env.step(np.array([np.nan, 1.0, 1.0])),
        "step big": lambda: env.step(big),
        "step neg": lambda: env.step(np.array([-1, 1, 1])),
        "step 2d": lambda: env.step(np.ones((3, 1), dtype=np.int64)),
        "step object": lambda: env.step(np.array([1, 1, 1], dtype=object)),
        "step broadcast": lambda: env.step(np.broadcast_to(np.int64(1), (3,))),
        "step ragged": lambda: env.step([1, [1], 1]),
        "backtest nan": lambda: e.backtest_signals(nan_o, c, sig),
        "backtest sig T": lambda: e.backtest_signals(o, c, sig[:-1]),
        "backtest sig 3d": lambda: e.backtest_signals(o, c, sig[:, :, None]),
        "backtest sig 0 cols": lambda: e.backtest_signals(o, c, np.zeros((T, 0), dtype=np.int64)),
        "backtest sig float": lambda: e.backtest_signals(o, c, sig.astype(float)),
        "backtest sig big": lambda: e.backtest_signals(o, c, np.full((T, 2), 2**62)),
        "backtest sig None": lambda: e.backtest_signals(o, c, None),
        "backtest sig strided": lambda: e.backtest_signals(o, c, sig[:, ::2]),
        "backtest sig fortran": lambda: e.backtest_signals(o, c, np.asfortranarray(sig)),
        "backtest fee": lambda: e.backtest_signals(o, c, sig, fee=-1.0),
        "backtest slip": lambda: e.backtest_signals(o, c, sig, slippage=float("inf")),
        "backtest bpy": lambda: e.backtest_signals(o, c, sig, bars_per_year=0.0),
        "backtest mode": lambda: e.backtest_signals(o, c, sig, mode="short"),
        "backtest T=2": lambda: e.backtest_signals(o[:2], c[:2], sig[:2], return_equity=True),
        "replay nan": lambda: e.replay_actions(o, neg_c, sig),
        "replay 1d": lambda: e.replay_actions(o, c, sig[:, 0]),
        "replay bad": lambda: e.replay_actions(o, c, sig - 1),
        "replay float": lambda: e.replay_actions(o, c, sig.astype(np.float32)),
        "replay empty": lambda: e.replay_actions(np.zeros(0), np.zeros(0), np.zeros((0, 1), dtype=np.int64)),
        "ekf nan": lambda: e.ekf(np.array([[1.0, np.nan]])),
        "ekf empty": lambda: e.ekf(np.zeros(0)),
        "ekf no bars": lambda: e.ekf(np.zeros((3, 0))),
        "ekf empty batch": lambda: e.ekf(np.zeros((0, 3))),
        "ekf 3d": lambda: e.ekf(np.ones((2, 2, 2))),
        "ekf object": lambda: e.ekf(np.ones(3, dtype=object)),
        "ekf None": lambda: e.ekf(None),
        "ekf huge": lambda: e.ekf(np.array([1e308, 1e-308, 1.0])),
        "ekf strided": lambda: e.ekf(np.ones((4, 10))[::2, ::3]),
    }
    bad = 0
    for name, fn in cases.items():
        try:
            fn()
        except errors.HimariError:
            pass
        except Exception as exc:
            bad += 1
            print(f"FOREIGN {name}: {type(exc).__name__}: {exc}"[:300])
    print("DONE", len(cases))
    sys.exit(1 if bad else 0)
    """
)


def test_battery_in_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-c", BATTERY], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode >= 0, f"the process crashed (signal {-proc.returncode}):\n{out}"
    assert "DONE" in out, out
    assert proc.returncode == 0, out


@pytest.mark.parametrize("dtype, value", [(np.int8, -1), (np.int8, 3), (np.uint8, 3), (np.uint8, 255),
                                          (np.int16, -32768), (np.int32, 7), (np.int64, -(2**63)),
                                          (np.int64, 2**40)])
@pytest.mark.parametrize("flat", [0, 4095, 4096, 8191, 3 * 3001 - 1])
def test_a_bad_signal_is_found_in_any_block(dtype, value, flat):
    """The check reads the signals in blocks of 4,096 values: a bad value at either edge of a
    block, in the first or the last, is reported with its own [row, column]."""
    rng = np.random.default_rng(0)
    o, c = prices(rng, 3001)
    sig = np.ones((3001, 3), dtype=dtype)
    sig.flat[flat] = value
    row, col = divmod(flat, 3)
    with pytest.raises(errors.InvalidArgumentError, match=rf"got {value} at \[{row}, {col}\]"):
        engine.backtest_signals(o, c, sig)
    sig.flat[flat] = 2  # and the same array with a valid value there runs: a BUY, one trade,
    assert engine.backtest_signals(o, c, sig).n_trades[col] == (0 if row == 3000 else 1)  # none on the last row


COPY_TOO_LARGE = textwrap.dedent(
    r"""
    import sys
    import numpy as np
    import himari.engine as e

    o = np.arange(1.0, 9.0)
    # broadcast views cost no memory, but their C-contiguous copies (a petabyte, beyond any
    # address space) can never be made, whatever the machine's overcommit policy
    signals = np.broadcast_to(np.int8(1), (8, 2**47))
    prices = np.broadcast_to(np.float64(5.0), (2**44, 8))
    cases = {
        "signals per_bar": lambda: e.backtest_signals(o, o, signals),
        "signals held_runs": lambda: e.backtest_signals(o, o, signals, method="held_runs"),
        "signals equity": lambda: e.backtest_signals(o, o, signals, return_equity=True),
        "actions replay": lambda: e.replay_actions(o, o, signals),
        "prices ekf": lambda: e.ekf(prices),
    } if sys.argv[1] == "cpu" else {  # a host array bound for the GPU is made C-contiguous first
        "signals cuda": lambda: e.backtest_signals(o, o, signals, device="cuda"),
        "prices cuda": lambda: e.ekf(prices, device="cuda"),
    }
    for name, fn in cases.items():
        try:
            fn()
            print("NO ERROR", name)
        except MemoryError as exc:
            print("MEMORY", name, "|", exc)
        except Exception as exc:
            print("OTHER", name, type(exc).__name__, exc)
    print("DONE")
    """
)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not engine.cuda_available(), reason="needs a CUDA build and device")])])
def test_a_strided_input_too_large_to_copy_is_a_memory_error_not_a_crash(tmp_path, device):
    """A strided input is copied once; when numpy cannot allocate that copy the call raises
    MemoryError naming the argument (the binding read through the empty result and segfaulted),
    on the CPU paths and on the CUDA bindings' way to the GPU alike."""
    proc = subprocess.run([sys.executable, "-c", COPY_TOO_LARGE, device], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the process crashed (return code {proc.returncode}):\n{out}"
    lines = [ln for ln in out.splitlines() if ln.startswith(("MEMORY", "NO ERROR", "OTHER"))]
    assert len(lines) == (5 if device == "cpu" else 2) and "DONE" in out, out
    for line in lines:
        name = line.split()[1]
        assert line.startswith("MEMORY"), out
        assert f"{'prices' if name == 'prices' else 'signals' if name == 'signals' else 'actions'}: cannot make a " \
               "C-contiguous copy" in line, out


@pytest.mark.parametrize("call", ["market", "backtest", "replay"])
def test_subnormal_prices_are_refused_where_the_account_divides_by_them(call):
    """1 / p overflows to inf below about 5.6e-309: such prices turned equity into NaN with no
    error. Prices must be normal doubles; the smallest normal one is still accepted."""
    tiny, s = np.array([1e-310, 1e-310, 2e-310]), np.array([2, 1, 1], dtype=np.int8)
    fn = {"market": lambda o: engine.Market(o, o), "backtest": lambda o: engine.backtest_signals(o, o, s),
          "replay": lambda o: engine.replay_actions(o, o, s)}[call]
    with pytest.raises(errors.InvalidArgumentError, match=r"open: expected finite prices > 0 \(at least 2.2"):
        fn(tiny)
    path = np.array([1.0, 2.0, 4.0])
    smallest = np.finfo(np.float64).tiny * path
    fn(smallest)  # accepted
    if call == "backtest":  # and priced right: returns depend on price ratios only
        small, unit = (engine.backtest_signals(p, p, s).total_return for p in (smallest, path))
        assert np.isfinite(small) and small == pytest.approx(unit, rel=1e-12)


def test_a_seeded_reset_makes_a_used_env_start_the_episodes_a_fresh_one_starts():
    """After reset(seed=s) the episodes depend on s alone: an env stepped through several
    episodes and a fresh one start the same episodes on every later reset, before a step (the
    same first episode again) and after one (the next)."""
    c = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 100)))
    m = engine.Market(c, c)
    fresh, used = (engine.VecTradingEnv(m, n_envs=2, episode_length=5, seed=3) for _ in range(2))

    def start(env, **kw):  # info holds views of the env's buffers: copy before the next call
        return np.array(env.reset(**kw)[1]["bar"])

    used.reset()
    for _ in range(7):
        used.step(np.ones(2, dtype=np.int8))
    first = start(fresh, seed=3)
    np.testing.assert_array_equal(start(used, seed=3), first)
    for _ in range(2):
        np.testing.assert_array_equal(start(used), first)
        np.testing.assert_array_equal(start(fresh), first)
    for env in (fresh, used):
        env.step(np.ones(2, dtype=np.int8))
    after = [start(fresh), start(fresh)]
    np.testing.assert_array_equal([start(used), start(used)], after)
    assert not np.array_equal(after[0], first) and not np.array_equal(after[1], after[0])  # each advances


# ------------------------------------------------------------------------------------------
# Scalar arguments: the kind of value asked for, or an InvalidArgumentError naming it
# ------------------------------------------------------------------------------------------

WRONG_SCALARS = [
    # a float where a count is expected was truncated (2 envs), a string flag read by truthiness
    ("env", dict(n_envs=2.5), "n_envs"),
    ("env", dict(n_envs=2.0), "n_envs"),
    ("env", dict(episode_length="8"), "episode_length"),
    ("env", dict(window=True), "window"),
    ("env", dict(warmup=1.5), "warmup"),
    ("env", dict(random_start="False"), "random_start"),
    ("env", dict(random_start=0), "random_start"),
    ("env", dict(final_obs=None), "final_obs"),
    ("env", dict(fee="0.001"), "fee"),
    ("env", dict(slippage=True), "slippage"),
    # integers too wide for the native type raised pybind11's TypeError
    ("env", dict(seed=2**64), "seed"),
    ("env", dict(seed=1.0), "seed"),
    ("env", dict(n_envs=2**63), "n_envs"),
    ("backtest", dict(threads=2**31), "threads"),
    ("backtest", dict(threads=2.0), "threads"),
    ("backtest", dict(return_equity="yes"), "return_equity"),
    ("backtest", dict(fee=None), "fee"),
    ("backtest", dict(bars_per_year="105120"), "bars_per_year"),
    ("replay", dict(slippage="0"), "slippage"),
    ("plan", dict(threads=2**31), "threads"),
    ("plan", dict(n_bars=10.0), "n_bars"),
    ("plan", dict(return_equity=1), "return_equity"),
    ("market", dict(warmup=2.0), "warmup"),
    ("ekf", dict(return_innovations="no"), "return_innovations"),
    ("ekf-params", dict(use_volatility_obs="False"), "use_volatility_obs"),
    ("ekf-params", dict(phi="0.9"), "phi"),
    ("fan", dict(window=8.0), "window"),
    ("fan", dict(top_k="2"), "top_k"),
    ("reward", dict(dsr_weight="1"), "dsr_weight"),
    ("hash", dict(seed=-1), "seed"),
    ("hash", dict(counter=2**64), "counter"),
]


def _call_with(where, kwargs):
    rng = np.random.default_rng(4)
    o, c = prices(rng, 40)
    sig = np.ones((40, 2), dtype=np.int8)
    if where == "env":
        return engine.VecTradingEnv(_market(), **kwargs)
    if where == "backtest":
        return engine.backtest_signals(o, c, sig, **kwargs)
    if where == "replay":
        return engine.replay_actions(o, c, sig, **kwargs)
    if where == "plan":
        return engine.backtest_plan(**{"n_bars": 100, "n_strategies": 4, **kwargs})
    if where == "market":
        return engine.Market(o, c, **kwargs)
    if where == "ekf":
        return engine.ekf(c, **kwargs)
    if where == "ekf-params":
        return engine.ekf(c, engine.EKFParams(**kwargs))
    if where == "fan":
        return engine.fan_residuals(rng.normal(size=(40, 2)), [(0, 40)], **{"window": 8, "top_k": 2, **kwargs})
    if where == "reward":
        rc = engine.RewardConfig()
        object.__setattr__(rc, *next(iter(kwargs.items())))  # past RewardConfig's own check, if any
        return engine.VecTradingEnv(_market(), reward=rc)
    if where == "hash":
        return engine.counter_hash(**{"seed": 1, "stream": 2, "counter": 3, **kwargs})
    raise AssertionError(where)


@pytest.mark.parametrize("where,kwargs,name", WRONG_SCALARS, ids=[f"{w}-{k}" for w, k, _ in WRONG_SCALARS])
def test_a_scalar_of_the_wrong_kind_or_width_is_refused_by_name(where, kwargs, name):
    expect_invalid(lambda: _call_with(where, kwargs), name)


def test_scalars_of_the_right_kind_are_taken_at_their_value():
    """numpy integers, floats and bools stand for their values; the widest valid seed is kept."""
    m = _market()
    env = engine.VecTradingEnv(m, n_envs=np.int32(3), window=np.int64(2), fee=np.float32(0.5),
                               random_start=np.bool_(False), seed=2**64 - 1)
    assert env.num_envs == 3 and env.window == 2 and env.random_start is False
    assert env.fee == float(np.float32(0.5)) and env._native.seed == 2**64 - 1
    assert engine.counter_hash(2**64 - 1, 0, 0) == engine.counter_hash(np.uint64(2**64 - 1), 0, 0)
    assert engine.backtest_plan(np.int64(100), np.int16(4), threads=np.int8(1)) == engine.backtest_plan(100, 4, threads=1)
