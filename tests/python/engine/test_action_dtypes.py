"""The action dtypes come from one list in the native core (HIMARI_FOR_EACH_ACTION_TYPE), exposed
as ``himari._core.ACTION_DTYPES`` / ``himari.engine.ACTION_DTYPES``: every dtype in it works at
every entry point that takes actions or signals, and any other integer dtype is refused with a
message that names the argument and lists exactly those dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from himari import _core, engine, errors

# The documented list (docs/engine-api.md), written out here rather than read from the module.
DOCUMENTED = ("int8", "uint8", "int16", "int32", "int64")
LISTED_IN_MESSAGES = "int8, uint8, int16, int32 or int64"


def prices(T: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, T)))
    return np.r_[100.0, close[:-1]], close


def signals(T: int = 40, M: int = 3) -> np.ndarray:
    return np.random.default_rng(8).integers(0, 3, size=(T, M))


def test_the_list_is_the_documented_one() -> None:
    assert _core.ACTION_DTYPES == DOCUMENTED
    assert engine.ACTION_DTYPES == DOCUMENTED
    assert "ACTION_DTYPES" in engine.__all__


@pytest.mark.parametrize("dtype", DOCUMENTED)
def test_every_listed_dtype_acts_like_int64(dtype: str) -> None:
    """The same actions give bit-identical results whatever listed dtype carries them."""
    o, c = prices()
    sig = signals()
    ref = engine.backtest_signals(o, c, sig.astype(np.int64), return_equity=True)
    got = engine.backtest_signals(o, c, sig.astype(dtype), return_equity=True)
    np.testing.assert_array_equal(got.equity, ref.equity)
    np.testing.assert_array_equal(got.sharpe, ref.sharpe)
    ref_replay = engine.replay_actions(o, c, sig.astype(np.int64))
    got_replay = engine.replay_actions(o, c, sig.astype(dtype))
    np.testing.assert_array_equal(got_replay.reward, ref_replay.reward)

    market = engine.Market(o, c)
    envs = [engine.VecTradingEnv(market, n_envs=3, episode_length=20, seed=3) for _ in range(2)]
    for env in envs:
        env.reset()
    for row in sig[:15]:
        obs_ref, rew_ref, *_ = envs[0].step(row.astype(np.int64))
        obs, rew, *_ = envs[1].step(row.astype(dtype))
        np.testing.assert_array_equal(rew, rew_ref)
        np.testing.assert_array_equal(obs, obs_ref)


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "uint64", ">i4" if np.little_endian else "<i4", "bool"])
def test_other_dtypes_are_refused_naming_the_list(dtype: str) -> None:
    o, c = prices()
    sig = signals().astype(dtype)
    cases = [
        ("signals", lambda: engine.backtest_signals(o, c, sig)),
        ("actions", lambda: engine.replay_actions(o, c, sig)),
    ]
    env = engine.VecTradingEnv(engine.Market(o, c), n_envs=3, episode_length=20)
    env.reset()
    cases.append(("actions", lambda: env.step(sig[0])))
    for name, call in cases:
        with pytest.raises(errors.ShapeError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(f"{name}: expected an integer array of shape"), msg
        assert f"{LISTED_IN_MESSAGES}, native byte order), got " in msg, msg
