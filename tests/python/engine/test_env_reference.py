"""VecTradingEnv against the slow reference env (docs/semantics.md, docs/engine-api.md)."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


import engine_reference as ref  # noqa: E402  (conftest.py puts this folder on sys.path)

try:
    import himari.engine as engine
except ImportError as exc:  # the native build is missing: only the reference self-tests run
    engine = None
    _IMPORT_ERROR = repr(exc)
else:
    _IMPORT_ERROR = ""

needs_engine = pytest.mark.skipif(engine is None, reason=f"himari.engine not importable: {_IMPORT_ERROR}")

U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)

# Tolerances (the brief): float64 quantities to 1e-9, float32 obs/rewards to 1e-5.
F64 = dict(rtol=1e-9, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Counter hash
# ------------------------------------------------------------------------------------------


def test_reference_hash_known_vector():
    # SplitMix64 seeded with 0 outputs 0xE220A8397B1DCDAF first: that is mix64(0).
    assert ref.mix64(0) == 0xE220A8397B1DCDAF
    assert ref.mix64(ref.MASK64) < (1 << 64)


@given(U64, U64, U64)
@settings(max_examples=50, deadline=None)
def test_reference_hash_python_equals_numpy(seed, stream, counter):
    assert ref.counter_hash(seed, stream, counter) == int(ref.counter_hash_np(seed, stream, counter))


@given(U64, U64, U64)
@settings(max_examples=50, deadline=None)
def test_counter_hash_matches_native(seed, stream, counter):
    assert int(engine.counter_hash(seed, stream, counter)) == ref.counter_hash(seed, stream, counter)


def test_counter_hash_matches_native_small_grid():
    for seed in (0, 1, 2, 12345, (1 << 63), (1 << 64) - 1):
        for stream in range(4):
            for counter in range(4):
                assert int(engine.counter_hash(seed, stream, counter)) == ref.counter_hash(seed, stream, counter)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _make_data(seed, T, F, dtype=np.float64):
    rng = np.random.default_rng(seed)
    o, c = ref.random_walk_prices(rng, T)
    feats = None if F == 0 else rng.normal(size=(T, F)).astype(np.float32)
    return o.astype(dtype), c.astype(dtype), feats


def _reward_cfg(shaping):
    if not shaping:
        return engine.RewardConfig()
    return engine.RewardConfig(drawdown_penalty=0.5, turnover_penalty=2e-4, dsr_weight=0.05, dsr_decay=0.05)


def _build(cfg):
    """Native env + reference env from one config dict."""
    o, c, feats = _make_data(cfg["data_seed"], cfg["T"], cfg["F"], cfg.get("dtype", np.float64))
    market = engine.Market(o, c, feats, warmup=cfg.get("market_warmup", 0))
    rcfg = _reward_cfg(cfg["shaping"])
    kwargs = dict(
        n_envs=cfg["n_envs"],
        episode_length=cfg["L"],
        mode=cfg["mode"],
        fee=cfg["fee"],
        slippage=cfg["slip"],
        reward=rcfg,
        window=cfg["window"],
        seed=cfg["seed"],
        random_start=cfg["random_start"],
    )
    if "env_warmup" in cfg:
        kwargs["warmup"] = cfg["env_warmup"]
    env = engine.VecTradingEnv(market, **kwargs)
    warmup = cfg.get("env_warmup", cfg.get("market_warmup", 0))
    renv = ref.ReferenceVecEnv(o, c, feats, **{**kwargs, "warmup": warmup})
    return env, renv, market


def _copy_info(info):
    return {k: np.array(v, copy=True) for k, v in info.items()}


def _f64(a):
    return np.asarray(a).astype(np.float64)


def _check_obs(got, want, F, where):
    got = np.asarray(got)
    assert got.dtype == np.float32, where
    assert got.shape == want.shape, (where, got.shape, want.shape)
    # Features are copied float32 values: exact.
    np.testing.assert_array_equal(got[..., :F], want[..., :F], err_msg=f"{where}: feature columns")
    np.testing.assert_allclose(got[..., F:], want[..., F:], err_msg=f"{where}: account columns", **F32)


CONFIGS = [
    # window 1, no features, long_flat, plain log return, several episodes per env.
    dict(data_seed=1, T=300, F=0, n_envs=1, L=40, mode="long_flat", fee=1e-3, slip=5e-4, shaping=False,
         window=1, seed=7, random_start=True),
    # window > 1 with features and a market warmup, long_short, full shaping.
    dict(data_seed=2, T=400, F=3, n_envs=3, L=64, mode="long_short", fee=1e-3, slip=5e-4, shaping=True,
         window=4, seed=11, random_start=True, market_warmup=10),
    # episode longer than the data: every episode ends at the end of data.
    dict(data_seed=3, T=150, F=2, n_envs=4, L=500, mode="long_short", fee=2e-3, slip=1e-3, shaping=True,
         window=1, seed=3, random_start=True),
    # fixed starts, big window, env warmup overriding the market's.
    dict(data_seed=4, T=120, F=1, n_envs=2, L=30, mode="long_flat", fee=5e-4, slip=2e-4, shaping=True,
         window=8, seed=0, random_start=False, market_warmup=3, env_warmup=12),
    # float32 prices, long_flat with shaping, window 2, long data.
    dict(data_seed=5, T=2000, F=2, n_envs=2, L=700, mode="long_flat", fee=1e-3, slip=5e-4, shaping=True,
         window=2, seed=99, random_start=True, dtype=np.float32),
    # long_short without shaping, episode length such that start_max == start_min + small.
    dict(data_seed=6, T=60, F=0, n_envs=5, L=55, mode="long_short", fee=1e-3, slip=5e-4, shaping=False,
         window=3, seed=5, random_start=True),
]


def _run_and_compare(cfg, n_steps, action_seed):
    env, renv, _ = _build(cfg)
    F = cfg["F"]
    obs, info = env.reset(seed=cfg["seed"])
    robs, rinfo = renv.reset(seed=cfg["seed"])
    _check_obs(obs, robs, F, "reset")
    if "bar" in info:
        np.testing.assert_array_equal(_f64(info["bar"]), _f64(rinfo["bar"]), err_msg="reset: bar")
    rng = np.random.default_rng(action_seed)
    n_done = 0
    n_trunc_short = 0
    for step in range(n_steps):
        actions = ref.random_actions(rng, cfg["n_envs"])
        obs, reward, term, trunc, info = env.step(actions)
        obs, reward, term, trunc, info = (np.array(obs), np.array(reward), np.array(term), np.array(trunc),
                                          _copy_info(info))
        robs, rreward, rterm, rtrunc, rinfo = renv.step(actions)
        where = f"step {step}"
        assert reward.dtype == np.float32 and reward.shape == (cfg["n_envs"],)
        assert term.dtype == np.bool_ and trunc.dtype == np.bool_
        np.testing.assert_array_equal(term, rterm, err_msg=f"{where}: terminated")
        np.testing.assert_array_equal(trunc, rtrunc, err_msg=f"{where}: truncated")
        np.testing.assert_allclose(reward, rreward, err_msg=f"{where}: reward", **F32)
        _check_obs(obs, robs, F, where)
        done = rinfo["episode_done"]
        np.testing.assert_array_equal(np.asarray(info["episode_done"], dtype=bool), done,
                                      err_msg=f"{where}: episode_done")
        np.testing.assert_array_equal(_f64(info["bar"]), _f64(rinfo["bar"]), err_msg=f"{where}: bar")
        for k in ("log_return", "drawdown_penalty", "turnover_penalty", "dsr"):
            np.testing.assert_allclose(_f64(info[k]), rinfo[k], err_msg=f"{where}: info[{k}]", **F64)
        # Account fields describe the account the returned observation shows (after an autoreset:
        # the new episode's; see test_done_step_info_describes_the_new_episode).
        for k in ("equity", "drawdown", "turnover"):
            np.testing.assert_allclose(_f64(info[k]), rinfo[k], err_msg=f"{where}: info[{k}]", **F64)
        for k in ("position", "trades"):
            np.testing.assert_array_equal(_f64(info[k]), _f64(rinfo[k]), err_msg=f"{where}: info[{k}]")
        np.testing.assert_array_equal(np.asarray(info["_final_obs"], dtype=bool), done,
                                      err_msg=f"{where}: _final_obs")
        if done.any():
            n_done += int(done.sum())
            n_trunc_short += int((done & (rinfo["episode_length"] < cfg["L"])).sum())
            # Every truncated episode takes env.episode_steps steps (what rollouts size on).
            np.testing.assert_array_equal(rinfo["episode_length"][rtrunc], env.episode_steps, err_msg=where)
            # The ended episodes' final observations (the rows of other envs are undefined).
            _check_obs(info["final_obs"][done], rinfo["final_obs"][done], F, f"{where}: final_obs")
            np.testing.assert_allclose(_f64(info["episode_return"])[done], rinfo["episode_return"][done],
                                       err_msg=f"{where}: episode_return", **F64)
            np.testing.assert_array_equal(_f64(info["episode_length"])[done], _f64(rinfo["episode_length"])[done],
                                          err_msg=f"{where}: episode_length")
    return n_done, n_trunc_short


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_env_matches_reference(cfg):
    T, L = cfg["T"], cfg["L"]
    n_steps = min(3 * min(L, T) + 5, 1500)
    n_done, n_short = _run_and_compare(cfg, n_steps, action_seed=cfg["data_seed"] + 100)
    assert n_done > 0, "the run should cross at least one auto-reset"
    if L >= T:
        assert n_short == n_done, "with L >= T every episode ends at the end of data"


def test_done_step_info_describes_the_new_episode():
    """Reading pinned here (semantics.md is silent on it): on the step an episode ends, info's
    account fields (equity, position, drawdown, trades, turnover) and `bar` describe the account
    of the returned observation, i.e. the new episode's fresh one; the reward terms are those of
    the finished step; the finished episode is reported by episode_return / episode_length."""
    cfg = CONFIGS[0]
    env, _, _ = _build(cfg)
    env.reset(seed=cfg["seed"])
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(3 * cfg["L"]):
        obs, reward, term, trunc, info = env.step(ref.random_actions(rng, 1, p_hold=0.2))
        if bool(np.asarray(info["episode_done"])[0]):
            seen += 1
            assert float(info["equity"][0]) == 1.0
            assert float(info["position"][0]) == 0.0
            assert float(info["drawdown"][0]) == 0.0
            assert float(info["trades"][0]) == 0.0
            assert float(info["turnover"][0]) == 0.0
            np.testing.assert_array_equal(np.asarray(obs)[0, :, -4:], 0.0)
            assert float(info["log_return"][0]) != 0.0 or float(reward[0]) == 0.0
    assert seen >= 2


def test_bankruptcy_terminates_and_resets():
    # A short into a price that triples: equity = 2 - 3 < 0 -> liquidated, terminated.
    T = 12
    o = np.full(T, 100.0)
    c = np.full(T, 100.0)
    o[3:] = 300.0
    c[3:] = 300.0
    market = engine.Market(o, c)
    kw = dict(n_envs=1, episode_length=8, mode="long_short", fee=1e-3, slippage=5e-4,
              reward=engine.RewardConfig(), window=1, seed=0, random_start=False)
    env = engine.VecTradingEnv(market, **kw)
    renv = ref.ReferenceVecEnv(o, c, None, **kw)
    env.reset(seed=0)
    renv.reset(seed=0)
    seen_term = False
    for step, a in enumerate([0, 1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 1]):
        obs, reward, term, trunc, info = env.step(np.array([a]))
        obs, reward, term, trunc, info = np.array(obs), np.array(reward), np.array(term), np.array(trunc), _copy_info(info)
        robs, rreward, rterm, rtrunc, rinfo = renv.step(np.array([a]))
        np.testing.assert_array_equal(term, rterm, err_msg=f"step {step}")
        np.testing.assert_array_equal(trunc, rtrunc, err_msg=f"step {step}")
        np.testing.assert_allclose(reward, rreward, err_msg=f"step {step}", **F32)
        _check_obs(obs, robs, 0, f"step {step}")
        if rterm[0]:
            seen_term = True
            # log of the final (liquidated) equity.
            np.testing.assert_allclose(_f64(info["episode_return"])[0], np.log(1e-12), rtol=1e-12)
            assert int(_f64(info["episode_length"])[0]) == step + 1
            assert bool(np.asarray(info["episode_done"])[0])
    assert seen_term


# ------------------------------------------------------------------------------------------
# Determinism, seeds and starts
# ------------------------------------------------------------------------------------------


def _trajectory(env, seed, actions):
    out = []
    obs, info = env.reset(seed=seed)
    out.append((np.array(obs), _f64(info.get("bar", np.zeros(1)))))
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        out.append((np.array(obs), np.array(reward), np.array(term), np.array(trunc), _f64(info["equity"]),
                    _f64(info["bar"])))
    return out


def _assert_same(tr1, tr2):
    assert len(tr1) == len(tr2)
    for a, b in zip(tr1, tr2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_same_seed_same_trajectory():
    cfg = dict(CONFIGS[1])
    rng = np.random.default_rng(0)
    actions = [ref.random_actions(rng, cfg["n_envs"]) for _ in range(200)]
    env1, _, _ = _build(cfg)
    env2, _, _ = _build(cfg)
    t1 = _trajectory(env1, 1234, actions)
    t2 = _trajectory(env2, 1234, actions)
    _assert_same(t1, t2)
    # reset(seed=...) restarts every episode counter: the same env replays the same trajectory.
    t3 = _trajectory(env1, 1234, actions)
    _assert_same(t1, t3)


def test_reset_without_seed_takes_the_next_episode_counter():
    cfg = dict(CONFIGS[1])
    env, renv, _ = _build(cfg)
    rng = np.random.default_rng(2)
    env.reset(seed=77)
    renv.reset(seed=77)
    for _ in range(150):  # crosses a few auto-resets (L = 64)
        a = ref.random_actions(rng, cfg["n_envs"])
        env.step(a)
        renv.step(a)
    for _ in range(3):
        obs, info = env.reset()
        robs, rinfo = renv.reset()
        np.testing.assert_array_equal(_f64(info["bar"]), _f64(rinfo["bar"]))
        _check_obs(obs, robs, cfg["F"], "reset()")


def test_fresh_env_reset_uses_constructor_seed():
    """A fresh env's first reset() gives the same episodes as reset(seed=<constructor seed>):
    episode_index counts the episodes of an env from 0 (semantics.md, Episodes), and the first
    episode a user can see is the one the first reset() starts."""
    cfg = dict(CONFIGS[1], seed=4321)
    rng = np.random.default_rng(1)
    actions = [ref.random_actions(rng, cfg["n_envs"]) for _ in range(100)]
    env1, _, _ = _build(cfg)
    obs1, _ = env1.reset()
    obs1 = np.array(obs1)
    env2, _, _ = _build(dict(cfg, seed=0))
    obs2, _ = env2.reset(seed=4321)
    np.testing.assert_array_equal(obs1, np.array(obs2))
    for a in actions:
        r1 = np.array(env1.step(a)[0])
        r2 = np.array(env2.step(a)[0])
        np.testing.assert_array_equal(r1, r2)


def test_different_seeds_different_starts():
    o, c, _ = _make_data(8, 2000, 0)
    market = engine.Market(o, c)
    env = engine.VecTradingEnv(market, n_envs=8, episode_length=100, seed=0, random_start=True)
    starts = []
    for seed in (1, 2, 3):
        _, info = env.reset(seed=seed)
        starts.append(_f64(info["bar"]).copy())
    assert not np.array_equal(starts[0], starts[1])
    assert not np.array_equal(starts[1], starts[2])
    # Within one seed, envs draw from different streams.
    assert len(np.unique(starts[0])) > 1
    # And the starts are exactly the documented formula.
    for seed, s in zip((1, 2, 3), starts):
        want = [0 + ref.counter_hash(seed, i, 0) % (2000 - 1 - 100 - 0 + 1) for i in range(8)]
        np.testing.assert_array_equal(s, np.array(want, dtype=np.float64))


@given(seed=st.integers(0, (1 << 63) - 1), window=st.integers(1, 6), warmup=st.integers(0, 30),
       L=st.integers(1, 300))
@settings(max_examples=30, deadline=None)
def test_reset_starts_follow_formula(seed, window, warmup, L):
    T = 200
    o, c, _ = _make_data(9, T, 0)
    market = engine.Market(o, c)
    env = engine.VecTradingEnv(market, n_envs=3, episode_length=L, window=window, warmup=warmup, seed=0)
    renv = ref.ReferenceVecEnv(o, c, None, n_envs=3, episode_length=L, window=window, warmup=warmup, seed=0)
    obs, info = env.reset(seed=seed)
    robs, rinfo = renv.reset(seed=seed)
    np.testing.assert_array_equal(_f64(info["bar"]), _f64(rinfo["bar"]))
    _check_obs(obs, robs, 0, "reset")


# ------------------------------------------------------------------------------------------
# API surface that the comparison relies on
# ------------------------------------------------------------------------------------------


def test_outputs_are_persistent_views():
    cfg = CONFIGS[1]
    env, _, _ = _build(cfg)
    env.reset(seed=1)
    a = np.ones(cfg["n_envs"], dtype=np.int64)
    obs1, rew1, *_ = env.step(a)
    obs2, rew2, *_ = env.step(np.full(cfg["n_envs"], 2))
    # Documented: the next step overwrites the buffers the previous step returned.
    np.testing.assert_array_equal(np.array(obs1), np.array(obs2))
    np.testing.assert_array_equal(np.array(rew1), np.array(rew2))


def test_spaces_and_shapes():
    cfg = CONFIGS[1]
    env, _, market = _build(cfg)
    n, W, F = cfg["n_envs"], cfg["window"], cfg["F"]
    assert env.num_envs == n
    assert env.window == W
    assert env.n_features == F
    assert tuple(env.observation_space.shape) == (n, W, F + 4)
    assert tuple(env.single_observation_space.shape) == (W, F + 4)
    assert int(env.single_action_space.n) == 3
    obs, _ = env.reset(seed=0)
    assert np.asarray(obs).shape == (n, W, F + 4)
    assert market.n_bars == cfg["T"]
    assert market.n_features == F
    assert np.asarray(market.open).dtype == np.float64
    assert np.asarray(market.features).dtype == np.float32
    with pytest.raises((ValueError, RuntimeError)):
        np.asarray(market.open)[0] = 1.0  # read-only view


def test_market_stores_float32_prices_as_float64():
    o, c, feats = _make_data(10, 50, 2, np.float32)
    market = engine.Market(o, c, feats.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(market.open), o.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(market.close), c.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(market.features), feats)
