"""gymnasium interoperability: fresh info dicts for vector wrappers, the single env
``himari/Trading-v0`` (gymnasium.make / make_vec, the env checkers, stable-baselines3)."""

from __future__ import annotations

import copy
import math
import os
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

import engine_reference as ref  # noqa: E402  (conftest.py puts this folder on sys.path)

engine = pytest.importorskip("himari.engine")
from himari.errors import ConfigError, DataError, InvalidArgumentError  # noqa: E402
from himari.gym_env import TradingEnv  # noqa: E402

F32 = dict(rtol=1e-5, atol=1e-6)
ENV_ID = "himari/Trading-v0"


def _random_market(seed: int, T: int = 200, F: int = 2, vol: float = 0.01):
    rng = np.random.default_rng(seed)
    o, c = ref.random_walk_prices(rng, T, vol=vol)
    f = rng.normal(size=(T, F)).astype(np.float32)
    return o, c, f


def _rising_market(T: int = 400, rate: float = 0.02):
    """Each bar closes ``rate`` above the last and opens at the previous close: holding long
    earns log(1 + rate) every step, nothing else earns anything (with zero costs)."""
    c = 100.0 * (1.0 + rate) ** np.arange(T)
    return engine.Market(np.r_[c[0], c[:-1]], c)


# ------------------------------------------------------------------------------------------
# VecTradingEnv: a fresh info dict per call, so gymnasium's vector wrappers work
# ------------------------------------------------------------------------------------------


def test_record_episode_statistics_over_several_episode_ends():
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    o, c, f = _random_market(1)
    env = engine.VecTradingEnv(engine.Market(o, c, f), n_envs=3, episode_length=9, seed=2)
    wrapped = RecordEpisodeStatistics(env)
    wrapped.reset(seed=2)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(40):
        _, _, term, trunc, info = wrapped.step(ref.random_actions(rng, 3))
        done = np.asarray(term) | np.asarray(trunc)
        if not done.any():
            assert "episode" not in info
            continue
        ends += int(done.sum())
        np.testing.assert_array_equal(info["_episode"], done)
        # The wrapper sums the (float32) rewards; the env reports the log of the final equity,
        # which the plain log-return reward adds up to.
        np.testing.assert_array_equal(info["episode"]["l"][done], np.asarray(info["episode_length"])[done])
        np.testing.assert_allclose(info["episode"]["r"][done], np.asarray(info["episode_return"])[done],
                                   rtol=0, atol=1e-5)
    assert ends >= 9  # every env ended several episodes
    assert len(wrapped.return_queue) == ends


def test_info_is_a_new_dict_per_call_holding_the_buffer_views():
    o, c, f = _random_market(2)
    env = engine.VecTradingEnv(engine.Market(o, c, f), n_envs=2, episode_length=5)
    _, info0 = env.reset(seed=0)
    *_, info1 = env.step(np.array([2, 1]))
    *_, info2 = env.step(np.array([1, 1]))
    assert info0 is not info1 and info1 is not info2
    info1["mine"] = 1
    assert "mine" not in info2 and "mine" not in env.step(np.array([1, 1]))[-1]
    # The arrays are still the persistent views (documented): the same objects every step.
    assert info1["equity"] is info2["equity"] and info1["final_obs"] is info2["final_obs"]


# ------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------


def test_registered_when_the_engine_is_imported():
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "himari.gym_env:TradingEnv"
    assert spec.vector_entry_point == "himari.gym_env:make_vec_env"


def test_make_with_the_module_prefix_works_without_importing_himari(tmp_path):
    code = (
        "import sys, gymnasium as gym\n"
        "env = gym.make('himari.engine:himari/Trading-v0', episode_length=10)\n"
        "print(env.reset(seed=0)[0].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, HIMARI_CACHE_DIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 64)"  # the synthetic default data: 60 features + 4


def test_import_himari_stays_light_and_registers_when_gymnasium_is_loaded():
    code = (
        "import sys, json\n"
        "import himari\n"
        "light = 'gymnasium' not in sys.modules and 'himari._core' not in sys.modules\n"
        "import gymnasium\n"
        "before = 'himari/Trading-v0' in gymnasium.registry\n"
        "del sys.modules['himari']\n"
        "import himari\n"
        "after = 'himari/Trading-v0' in gymnasium.registry\n"
        "print(json.dumps([light, before, after, 'himari._core' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[true, false, true, false]"


# ------------------------------------------------------------------------------------------
# The single env against the reference env
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 3])
def test_single_env_follows_the_reference_across_episode_ends(window):
    """One lane of the reference env, with gymnasium's single-env contract on top: the step
    that ends an episode returns its final observation; the next reset() returns the first
    observation of the episode the env has already started (none is skipped)."""
    o, c, f = _random_market(3 + window, T=150, F=2)
    kw = dict(episode_length=11, mode="long_short", fee=1e-3, slippage=5e-4, window=window, seed=0)
    env = gym.make(ENV_ID, market=engine.Market(o, c, f), **kw)
    renv = ref.ReferenceVecEnv(o, c, f, n_envs=1, **kw)
    obs, info = env.reset(seed=21)
    robs, rinfo = renv.reset(seed=21)
    np.testing.assert_array_equal(obs, robs[0])
    assert info["bar"] == rinfo["bar"][0]
    rng = np.random.default_rng(window)
    ends = 0
    for step in range(70):
        a = int(ref.random_actions(rng, 1)[0])
        obs, reward, term, trunc, info = env.step(a)
        robs, rreward, rterm, rtrunc, rinfo = renv.step(np.array([a]))
        where = f"step {step}"
        assert (term, trunc) == (bool(rterm[0]), bool(rtrunc[0])), where
        assert isinstance(reward, float)
        assert reward == pytest.approx(rreward[0], rel=1e-5, abs=1e-6), where
        np.testing.assert_allclose(info["log_return"], rinfo["log_return"][0], rtol=1e-9, err_msg=where)
        if term or trunc:
            ends += 1
            np.testing.assert_array_equal(obs[:, :2], rinfo["final_obs"][0][:, :2], err_msg=where)
            np.testing.assert_allclose(obs[:, 2:], rinfo["final_obs"][0][:, 2:], err_msg=where, **F32)
            assert info["episode_return"] == pytest.approx(rinfo["episode_return"][0], rel=1e-9)
            assert info["episode_length"] == rinfo["episode_length"][0]
            obs, info = env.reset()
            assert info["bar"] == rinfo["bar"][0], where  # the reference's next episode
        else:
            assert info["equity"] == pytest.approx(rinfo["equity"][0], rel=1e-9)
            assert info["bar"] == rinfo["bar"][0] and info["position"] == rinfo["position"][0]
        np.testing.assert_array_equal(obs[:, :2], robs[0][:, :2], err_msg=where)
        np.testing.assert_allclose(obs[:, 2:], robs[0][:, 2:], err_msg=where, **F32)
    assert ends >= 5


def test_single_env_bankruptcy_terminates():
    T = 12
    o = np.full(T, 100.0)
    o[3:] = 300.0
    env = TradingEnv(engine.Market(o, o.copy()), episode_length=8, mode="long_short", random_start=False)
    env.reset(seed=0)
    env.step(0)  # short at 100
    env.step(1)
    obs, reward, term, trunc, info = env.step(1)  # marked at 300: wiped out
    assert term and not trunc
    assert info["episode_return"] == pytest.approx(math.log(1e-12))
    assert info["episode_length"] == 3
    np.testing.assert_allclose(obs[-1], [0.0, 0.0, 1e-12 - 1.0, 0.0], **F32)  # the liquidated account
    with pytest.raises(gym.error.ResetNeeded):
        env.step(1)
    obs, info = env.reset()  # the next episode, already started: flat, fresh account
    np.testing.assert_array_equal(obs, 0.0)
    assert info["equity"] == 1.0 and info["bar"] == 0


def test_reset_with_a_seed_is_reproducible_and_seeds_differ():
    o, c, f = _random_market(5, T=400)
    market = engine.Market(o, c, f)

    def starts(env, seed):
        out = [env.reset(seed=seed)[1]["bar"]]
        for _ in range(3):  # episodes of 4 steps: the next three starts
            for _ in range(4):
                *_, term, trunc, _ = env.step(1)
            assert trunc
            out.append(env.reset()[1]["bar"])
        return out

    env = TradingEnv(market, episode_length=4)
    first = starts(env, 7)
    assert starts(env, 7) == first
    assert starts(TradingEnv(market, episode_length=4, seed=99), 7) == first
    assert starts(env, 8) != first
    want = [ref.counter_hash(7, 0, k) % (400 - 1 - 4 + 1) for k in range(4)]  # semantics.md, Episodes
    assert first == want


def test_step_needs_a_reset_first_and_checks_the_action():
    env = TradingEnv(_rising_market(), episode_length=5)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(1)
    env.reset(seed=0)
    for bad in (3, -1, 1.0, True, [1, 2], "1"):
        with pytest.raises(InvalidArgumentError, match="action"):
            env.step(bad)
    for good in (2, np.int64(1), np.array(0), np.array([1], dtype=np.int32)):
        env.step(good)


def test_market_arguments_are_checked(tmp_path):
    market = _rising_market()
    with pytest.raises(ConfigError, match="market"):
        TradingEnv(market, data=tmp_path)
    with pytest.raises(InvalidArgumentError, match="market"):
        TradingEnv("prices.csv")
    with pytest.raises(ConfigError, match="data"):
        TradingEnv(data=market)
    with pytest.raises(DataError):
        TradingEnv(data=tmp_path)  # an empty directory is not a prepared data set
    with pytest.raises(DataError):
        TradingEnv(data=tmp_path / "missing")


def test_make_without_arguments_uses_the_synthetic_default_data(tmp_path, monkeypatch):
    """No arguments: the train split of the synthetic default data set (prepared into the
    cache on first use), features standardised with its train statistics."""
    from himari.data import PreparedData, default_prepared_dataset

    monkeypatch.setenv("HIMARI_CACHE_DIR", str(tmp_path))
    env = gym.make(ENV_ID, random_start=False)
    obs, info = env.reset(seed=0)
    data = PreparedData(default_prepared_dataset())
    assert str(data.path).startswith(str(tmp_path))
    (a, b), = data.split("train")
    train = np.asarray(data.features[a:b], np.float64)  # the train split is one range here
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    F = data.features.shape[1]
    assert obs.shape == (1, F + 4) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0, :F], np.clip((data.features[a] - mean) / std, -10, 10), rtol=1e-5, atol=1e-5)
    obs, reward, *_ = env.step(2)  # BUY: filled at the next bar's open, marked at its close
    acc = ref.Account()
    ref.account_step(acc, 2, data.open[a + 1], data.close[a + 1], 1e-3, 5e-4, "long_flat")
    assert reward == pytest.approx(math.log(acc.equity), rel=1e-5)
    np.testing.assert_allclose(obs[0, :F], (data.features[a + 1] - mean) / std, rtol=1e-5, atol=1e-5)
    # The validation split of the same data, by path.
    val = gym.make(ENV_ID, data=str(data.path), split="validation", random_start=False)
    (va, _), = data.split("validation")
    np.testing.assert_allclose(val.reset(seed=0)[0][0, :F], (data.features[va] - mean) / std, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="split"):
        gym.make(ENV_ID, data=str(data.path), split="nope")


# ------------------------------------------------------------------------------------------
# make_vec
# ------------------------------------------------------------------------------------------


def test_make_vec_vector_entry_point_is_the_native_env():
    o, c, f = _random_market(6)
    market = engine.Market(o, c, f)
    kw = dict(episode_length=7, window=2, mode="long_short", seed=3)
    venv = gym.make_vec(ENV_ID, num_envs=5, vectorization_mode="vector_entry_point", market=market, **kw)
    assert isinstance(venv, engine.VecTradingEnv)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    direct = engine.VecTradingEnv(market, n_envs=5, **kw)
    np.testing.assert_array_equal(venv.reset(seed=4)[0], direct.reset(seed=4)[0])
    rng = np.random.default_rng(1)
    for _ in range(20):  # crosses episode ends (L = 7)
        a = ref.random_actions(rng, 5)
        got, want = venv.step(a), direct.step(a)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[4]["final_obs"][got[4]["_final_obs"]],
                                      want[4]["final_obs"][want[4]["_final_obs"]])


def _matches_single_envs(venv, market, kw, n: int, seed: int) -> int:
    """gymnasium's sync/async vector env over single envs (seeded seed + i; NEXT_STEP
    autoreset: the step after an episode end resets that env and ignores its action) steps
    exactly like n TradingEnvs driven by hand; returns how many episode ends it crossed."""
    singles = [TradingEnv(market, **kw) for _ in range(n)]
    obs, _ = venv.reset(seed=seed)
    np.testing.assert_array_equal(obs, np.stack([s.reset(seed=seed + i)[0] for i, s in enumerate(singles)]))
    ended = [False] * n
    rng = np.random.default_rng(2)
    ends = 0
    for _ in range(16):
        a = ref.random_actions(rng, n)
        obs, reward, term, trunc, _ = venv.step(a)
        for i, s in enumerate(singles):
            if ended[i]:
                w, r, te, tr = s.reset()[0], 0.0, False, False
            else:
                w, r, te, tr, _ = s.step(int(a[i]))
            ended[i] = te or tr
            ends += ended[i]
            np.testing.assert_array_equal(obs[i], w)
            assert (reward[i], term[i], trunc[i]) == (pytest.approx(r), te, tr)
    return ends


def test_make_vec_sync_steps_single_envs():
    o, c, f = _random_market(7)
    market = engine.Market(o, c, f)
    kw = dict(episode_length=5, window=1)
    venv = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="sync", market=market, **kw)
    assert _matches_single_envs(venv, market, kw, 3, seed=10) >= 6


def test_make_vec_async_runs_single_envs_in_subprocesses():
    """The market crosses into the worker processes by pickling."""
    o, c, f = _random_market(11)
    market = engine.Market(o, c, f)
    kw = dict(episode_length=5, window=2)
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async", vector_kwargs={"context": "spawn"},
                        market=market, **kw)
    try:
        assert _matches_single_envs(venv, market, kw, 2, seed=3) >= 4
    finally:
        venv.close()


def test_market_deep_copies_to_itself_and_pickles():
    o, c, f = _random_market(8, T=50)
    market = engine.Market(o, c, f, warmup=3)
    assert copy.deepcopy(market) is market
    back = pickle.loads(pickle.dumps(market))
    np.testing.assert_array_equal(back.open, market.open)
    np.testing.assert_array_equal(back.close, market.close)
    np.testing.assert_array_equal(back.features, market.features)
    assert (back.warmup, back.device) == (3, "cpu")
    bare = pickle.loads(pickle.dumps(engine.Market(o, c)))
    assert bare.n_features == 0


# ------------------------------------------------------------------------------------------
# The env checkers and stable-baselines3
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 4])
def test_gymnasium_env_checker_passes_without_warnings(window):
    from gymnasium.utils.env_checker import check_env

    o, c, f = _random_market(9, F=3)
    env = gym.make(ENV_ID, market=engine.Market(o, c, f), episode_length=20, window=window)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)  # also re-creates the env from its spec (deep-copying the market)


@pytest.mark.parametrize("window", [1, 4])
def test_stable_baselines3_env_checker_passes(window):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    o, c, f = _random_market(10, F=3)
    env = TradingEnv(engine.Market(o, c, f), episode_length=20, window=window)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_checker.check_env(env, warn=True)
    # SB3 remarks on any observation that is not 1-D: its MlpPolicy flattens [window, F + 4]
    # observations itself (the PPO test below trains on them), so that remark is no problem.
    problems = [str(w.message) for w in caught if "unconventional shape" not in str(w.message)]
    assert problems == []


class _EpisodeLog(gym.Wrapper):
    """Keeps what the env reports of every episode that ends."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.episodes: list[tuple[float, int]] = []

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        if term or trunc:
            self.episodes.append((info["episode_return"], info["episode_length"]))
        return obs, reward, term, trunc, info


def _long_share(policy, market, seed: int) -> tuple[float, float]:
    """One episode of ``policy(obs) -> action``: the share of steps that end long, and the return."""
    env = TradingEnv(market, episode_length=32, fee=0.0, slippage=0.0, seed=seed)
    obs, _ = env.reset(seed=seed)
    long_steps = 0
    for _ in range(32):
        obs, _, term, trunc, info = env.step(policy(obs))
        if term or trunc:
            return long_steps / 31, info["episode_return"]
        long_steps += info["position"] == 1
    raise AssertionError("the episode did not end")


def test_stable_baselines3_ppo_learns_to_stay_long_in_a_rising_market():
    """A market that rises 2 % every bar at zero cost: the best policy is to be long all the
    time. A few thousand PPO steps (seconds on a CPU) learn that; a random policy is long about
    half the time."""
    sb3 = pytest.importorskip("stable_baselines3")
    import torch

    torch.set_num_threads(1)
    market = _rising_market()
    env = _EpisodeLog(TradingEnv(market, episode_length=32, fee=0.0, slippage=0.0, seed=0))
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=4, learning_rate=3e-3, seed=0,
                    device="cpu", verbose=0)
    model.learn(total_timesteps=3072)
    assert model.num_timesteps == 3072
    # SB3's episode statistics (its Monitor sums the rewards) agree with what the env reports.
    monitor = [(e["r"], e["l"]) for e in model.ep_info_buffer]
    assert len(monitor) >= 50
    reported = env.episodes[-len(monitor):]
    np.testing.assert_allclose([r for r, _ in monitor], [r for r, _ in reported], atol=1e-4)
    assert [n for _, n in monitor] == [n for _, n in reported] == [32] * len(monitor)

    rng = np.random.default_rng(0)
    learned = [_long_share(lambda o: int(model.predict(o, deterministic=True)[0]), market, s) for s in range(5)]
    randomly = [_long_share(lambda o: int(rng.integers(0, 3)), market, s) for s in range(5)]
    assert np.mean([s for s, _ in learned]) >= 0.85
    assert np.mean([s for s, _ in randomly]) <= 0.7
    best = 32 * math.log(1.02)
    assert np.mean([r for _, r in learned]) >= 0.85 * best > np.mean([r for _, r in randomly])
