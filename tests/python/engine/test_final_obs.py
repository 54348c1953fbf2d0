"""The final observation of ended episodes (``info["final_obs"]``, docs/semantics.md "Episodes").

Same-step autoreset returns the next episode's first observation; the ended episode's final one
(the observation the step would have returned had the episode gone on) comes in
``info["final_obs"]``, valid where ``info["_final_obs"]``. Values are pinned against the slow
reference env (engine_reference.py, which builds each observation from its account history, not
by shifting a buffer) and, for the simplest cases, against hand-derived numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine_reference as ref  # noqa: E402  (conftest.py puts this folder on sys.path)

engine = pytest.importorskip("himari.engine")

F32 = dict(rtol=1e-5, atol=1e-6)


def _bar_features(T: int, F: int) -> np.ndarray:
    """features[t, j] = 10 t + j: a row says which bar it is."""
    return (10.0 * np.arange(T)[:, None] + np.arange(F)[None, :]).astype(np.float32)


def _step_both(env, renv, actions):
    obs, reward, term, trunc, info = env.step(np.asarray(actions, dtype=np.int64))
    got = {k: np.array(v, copy=True) for k, v in info.items()}
    got.update(obs=np.array(obs), term=np.array(term), trunc=np.array(trunc))
    robs, _, rterm, rtrunc, rinfo = renv.step(np.asarray(actions))
    want = dict(rinfo, obs=robs, term=rterm, trunc=rtrunc)
    return got, want


def test_truncation_window_1_hand_values():
    # Rising prices, BUY then HOLD: after 5 steps (L = 5) the episode is truncated at bar 5.
    T, F = 30, 2
    close = 100.0 * 1.01 ** np.arange(T)
    open_ = close.copy()
    env = engine.VecTradingEnv(engine.Market(open_, close, _bar_features(T, F)), n_envs=1, episode_length=5,
                               fee=0.0, slippage=0.0, random_start=False)
    env.reset(seed=0)
    for t in range(5):
        obs, _, term, trunc, info = env.step(np.array([2 if t == 0 else 1]))
    assert bool(trunc[0]) and not bool(term[0])
    assert bool(info["_final_obs"][0])
    final = np.asarray(info["final_obs"])[0]
    assert final.shape == (1, F + 4)
    np.testing.assert_array_equal(final[0, :F], [50.0, 51.0])  # features of bar 5, the bar it reached
    # Bought at open[1] = close[0] * 1.01, marked at close[5]: equity = 1.01^4; 5 bars in position.
    np.testing.assert_allclose(final[0, F:], [1.0, 1.01**4 - 1.0, 0.0, math.log1p(5)], **F32)
    # The returned observation is the next episode's first (bar 0, flat).
    np.testing.assert_array_equal(np.asarray(obs)[0, 0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("window", [1, 3])
def test_bankruptcy_final_obs(window):
    # A short into a price that triples: liquidated (terminated) at the step into bar 3 + lead.
    T, F, lead = 16, 2, window - 1
    o = np.full(T, 100.0)
    o[3 + lead:] = 300.0
    c = o.copy()
    kw = dict(n_envs=1, episode_length=10, mode="long_short", fee=1e-3, slippage=5e-4, window=window, seed=0,
              random_start=False)
    feats = _bar_features(T, F)
    env = engine.VecTradingEnv(engine.Market(o, c, feats), **kw)
    renv = ref.ReferenceVecEnv(o, c, feats, **kw)
    env.reset(seed=0)
    renv.reset(seed=0)
    ended = False
    for step, a in enumerate([0, 1, 1, 1, 1]):
        got, want = _step_both(env, renv, [a])
        np.testing.assert_array_equal(got["term"], want["term"], err_msg=f"step {step}")
        if want["term"][0]:
            ended = True
            assert got["_final_obs"][0]
            final = got["final_obs"][0]
            np.testing.assert_array_equal(final[:, :F], want["final_obs"][0][:, :F])
            np.testing.assert_allclose(final[:, F:], want["final_obs"][0][:, F:], **F32)
            # Hand values: the window ends at bar 3 + lead; the last row is the liquidated account
            # (flat, equity 1e-12 against a peak of 1); for window 3 the rows before are the
            # account while short (position -1, one and two bars in position).
            np.testing.assert_array_equal(final[-1, :F], feats[3 + lead])
            np.testing.assert_allclose(final[-1, F:], [0.0, 0.0, 1e-12 - 1.0, 0.0], **F32)
            if window == 3:
                np.testing.assert_allclose(final[:2, F], [-1.0, -1.0])
                np.testing.assert_allclose(final[:2, F + 3], [math.log1p(1), math.log1p(2)], **F32)
            # ... while the returned observation is the fresh episode's.
            np.testing.assert_array_equal(got["obs"][0][:, F:], 0.0)
            break
    assert ended


@pytest.mark.parametrize("window", [1, 4])
def test_final_obs_many_envs_against_reference(window):
    """Several envs ending at different steps (random starts, L longer than some ranges): the
    rows of the envs that ended match the reference, the mask is exactly episode_done."""
    rng = np.random.default_rng(window)
    T, F = 90, 3
    o, c = ref.random_walk_prices(rng, T, vol=0.05)
    feats = rng.normal(size=(T, F)).astype(np.float32)
    kw = dict(n_envs=9, episode_length=13, mode="long_short", fee=1e-3, slippage=5e-4, window=window, seed=4,
              random_start=True)
    env = engine.VecTradingEnv(engine.Market(o, c, feats), **kw)
    renv = ref.ReferenceVecEnv(o, c, feats, **kw)
    env.reset(seed=4)
    renv.reset(seed=4)
    ends = 0
    for step in range(60):
        got, want = _step_both(env, renv, ref.random_actions(rng, 9, p_hold=0.3))
        done = want["episode_done"]
        np.testing.assert_array_equal(got["_final_obs"], done, err_msg=f"step {step}")
        ends += int(done.sum())
        np.testing.assert_array_equal(got["final_obs"][done][..., :F], want["final_obs"][done][..., :F])
        np.testing.assert_allclose(got["final_obs"][done][..., F:], want["final_obs"][done][..., F:],
                                   err_msg=f"step {step}", **F32)
    assert ends >= 9 * 3


def test_final_obs_can_be_turned_off():
    T = 40
    market = engine.Market(np.full(T, 100.0), np.full(T, 100.0))
    env = engine.VecTradingEnv(market, n_envs=2, episode_length=3, final_obs=False)
    env.reset(seed=0)
    for _ in range(3):
        *_, info = env.step(np.ones(2, dtype=np.int64))
    assert bool(np.all(info["episode_done"]))
    assert "final_obs" not in info and "_final_obs" not in info
    assert env._native.final_obs is None
