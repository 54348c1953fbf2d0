"""vec-normalize (A6): the numbers are stable-baselines3's ``VecNormalize`` on the same stream
(fed to SB3 directly, and collected by ``EnvRollout`` from a real env, window 1 and windowed,
CPU and, where there is one, GPU); evaluation applies the statistics frozen; every checkpoint
keeps them, so a resumed run continues them exactly and ``himari backtest`` acts with them."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
vec_env = pytest.importorskip("stable_baselines3.common.vec_env", reason="SB3 is the reference implementation")

import gymnasium as gym  # noqa: E402
from rich.console import Console  # noqa: E402
from stable_baselines3.common.running_mean_std import RunningMeanStd as SB3RunningMeanStd  # noqa: E402

from himari.engine import cuda_available  # noqa: E402
from himari.errors import ConfigError  # noqa: E402
from himari.plugin.api import EnvConfig, EnvSource  # noqa: E402
from himari.plugin.manager import get_plugins  # noqa: E402
from himari.training.rl import OnlineRLConfig, observation_filter, sequential_actions  # noqa: E402
from himari.training.rollout import EnvRollout  # noqa: E402

P = get_plugins()
SPEC = P.training_methods().get("vec-normalize")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not (cuda_available() and torch.cuda.is_available()), reason="needs a CUDA build of himari and a CUDA device")])]


def make_filter(gamma_of_model: float | None = 0.99, **config):
    """The filter exactly as a run builds it: the method's ``model_built`` on a model whose
    config has ``gamma`` (None: a model without one)."""
    method = SPEC.factory(SPEC.config(**config))
    model = SimpleNamespace(config=SimpleNamespace(gamma=gamma_of_model) if gamma_of_model is not None else None)
    return method.model_built(model, None)["normalizer"]


class Replay(vec_env.VecEnv):
    """A VecEnv that plays back a recorded stream: ``reset`` returns the next of ``resets``,
    ``step`` the next ``(obs, rewards, dones, terminal observations)`` of ``steps``."""

    def __init__(self, n: int, dim: int, resets: list, steps: list) -> None:
        super().__init__(n, gym.spaces.Box(-np.inf, np.inf, (dim,), np.float64), gym.spaces.Discrete(3))
        self.resets, self.steps = list(resets), list(steps)

    def reset(self):
        return self.resets.pop(0)

    def step_async(self, actions) -> None:
        pass

    def step_wait(self):
        obs, rewards, dones, finals = self.steps.pop(0)
        infos = [{"terminal_observation": finals[i].copy()} if dones[i] else {} for i in range(self.num_envs)]
        return obs, rewards, dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, name, indices=None):
        return [None] * self.num_envs

    def set_attr(self, name, value, indices=None) -> None:
        pass

    def env_method(self, name, *args, indices=None, **kwargs):
        return [None] * self.num_envs

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * self.num_envs


def sb3(venv, cfg: dict):
    """SB3's VecNormalize with the same settings (gamma 0.99 as the filter's default)."""
    return vec_env.VecNormalize(venv, gamma=cfg.get("gamma", 0.99), **{k: v for k, v in cfg.items() if k != "gamma"})


def assert_same_statistics(f, ref) -> None:
    if ref.norm_obs:  # SB3 keeps no observation statistics without it
        np.testing.assert_allclose(f.obs_rms.mean.cpu().numpy(), ref.obs_rms.mean, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(f.obs_rms.var.cpu().numpy(), ref.obs_rms.var, rtol=1e-6, atol=1e-9)
        assert float(f.obs_rms.count) == pytest.approx(ref.obs_rms.count, rel=1e-12)
    assert float(f.ret_rms.mean) == pytest.approx(float(ref.ret_rms.mean), rel=1e-6, abs=1e-12)
    assert float(f.ret_rms.var) == pytest.approx(float(ref.ret_rms.var), rel=1e-6, abs=1e-12)
    assert float(f.ret_rms.count) == pytest.approx(ref.ret_rms.count, rel=1e-12)


CONFIGS = [{}, {"norm_reward": False}, {"norm_obs": False},
           {"clip_obs": 2.0, "clip_reward": 0.5, "gamma": 0.9, "epsilon": 1e-4}]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["defaults", "obs-only", "reward-only", "other-settings"])
def test_equals_sb3_vecnormalize_on_one_stream(cfg) -> None:
    """A stream of heavy-tailed observations on very different scales, rewards with two spikes and
    random episode ends (with terminal observations), and a second reset half-way, fed to SB3's
    VecNormalize and to the filter as EnvRollout feeds it: normalised observations, rewards,
    terminal observations and every running statistic agree at every step. SB3 gets the same
    float32 numbers as float64 (it would average a float32 batch in float32; the filter always
    works in float64)."""
    rng = np.random.default_rng(0)
    n, dim, steps = 5, 6, 240
    loc = np.array([0.0, 3.0, -2.0, 500.0, 0.1, 0.0])
    scale = np.array([1e-3, 1.0, 5.0, 100.0, 0.02, 1.0])

    def observations():
        return (loc + scale * rng.standard_t(3, size=(n, dim))).astype(np.float32)

    resets = [observations(), observations()]
    stream = []
    for t in range(steps):
        rewards = rng.normal(0, 0.01, n).astype(np.float32)
        if t in (100, 200):  # a spike far beyond the return's spread: clipped
            rewards[t % n] = 100.0
        stream.append((observations(), rewards, rng.random(n) < 0.05, observations()))
    ref = sb3(Replay(n, dim, [r.astype(np.float64) for r in resets],
                     [(o.astype(np.float64), r, d, t.astype(np.float64)) for o, r, d, t in stream]), cfg)
    f = make_filter(gamma_of_model=cfg.get("gamma", 0.99), **{k: v for k, v in cfg.items() if k != "gamma"})

    clipped_obs = clipped_rewards = 0
    for t, (obs, rewards, dones, finals) in enumerate(stream):
        if t in (0, steps // 2):
            f.reset(n)
            got = f.observations(torch.from_numpy(resets[0 if t == 0 else 1]), update=True)
            np.testing.assert_allclose(got.numpy(), ref.reset(), rtol=1e-6, atol=1e-6)
        want_obs, want_rewards, want_dones, infos = ref.step(np.zeros(n, dtype=np.int64))
        got_obs = f.observations(torch.from_numpy(obs), update=True)
        got_rewards = f.rewards(torch.from_numpy(rewards), torch.from_numpy(dones), update=True)
        np.testing.assert_allclose(got_obs.numpy(), want_obs, rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
        np.testing.assert_allclose(got_rewards.numpy(), want_rewards, rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
        assert got_obs.dtype == torch.float32 and got_rewards.dtype == torch.float32
        for i in np.flatnonzero(dones):
            got_final = f.observations(torch.from_numpy(finals[i:i + 1]), update=False)[0]
            np.testing.assert_allclose(got_final.numpy(), infos[i]["terminal_observation"], rtol=1e-6, atol=1e-6)
        assert_same_statistics(f, ref)
        clipped_obs += int((np.abs(want_obs) == ref.clip_obs).sum())
        clipped_rewards += int((np.abs(want_rewards) == ref.clip_reward).sum())
    if cfg.get("norm_obs", True):
        assert clipped_obs > 0  # the stream reaches the clip, so the clip is compared too
    if cfg.get("norm_reward", True):
        assert clipped_rewards > 0
    assert int(f.steps) == steps


def test_frozen_numpy_path_equals_the_torch_path_and_never_updates() -> None:
    """Evaluation hands NumPy observations ([1, D] and windows [1, W, D]); they come back
    normalised exactly as training's torch path does at the same statistics, and the statistics
    do not move. An update from NumPy is refused (evaluation must never update)."""
    rng = np.random.default_rng(1)
    f = make_filter()
    for _ in range(20):
        f.observations(torch.from_numpy(rng.normal(2, 3, (4, 7)).astype(np.float32)), update=True)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    for shape in ((1, 7), (1, 5, 7)):
        obs = rng.normal(2, 30, shape).astype(np.float32)
        got = f.observations(obs, update=False)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == shape
        np.testing.assert_array_equal(got, f.observations(torch.from_numpy(obs), update=False).numpy())
        mean, var = f.obs_rms.mean.numpy(), f.obs_rms.var.numpy()
        np.testing.assert_allclose(got, np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10), rtol=1e-6, atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in f.state_dict().items())
    with pytest.raises(ValueError, match="vec-normalize"):
        f.observations(np.zeros((1, 7), np.float32), update=True)
    f.obs_rms.mean.add_(1.0)  # statistics changed in place: the frozen copy follows
    np.testing.assert_allclose(f.observations(np.zeros((1, 7), np.float32), update=False),
                               f.observations(torch.zeros(1, 7), update=False).numpy(), rtol=1e-6)


def test_gamma_comes_from_the_model_else_099_else_the_config() -> None:
    assert make_filter(gamma_of_model=0.9).gamma == 0.9
    assert make_filter(gamma_of_model=None).gamma == 0.99
    assert make_filter(gamma_of_model=0.9, gamma=0.5).gamma == 0.5


def test_statistics_of_another_width_are_refused() -> None:
    f = make_filter()
    f.observations(torch.zeros(2, 64), update=True)
    g = make_filter()
    g.load_state_dict(f.state_dict())  # unsized statistics take the saved width
    assert g.obs_rms.mean.shape == (64,)
    with pytest.raises(ConfigError, match="vec-normalize: its statistics have 64 observation columns, the "
                                          "observations 14"):
        g.observations(np.zeros((1, 14), np.float32), update=False)


@pytest.mark.parametrize("bad, message", [("clip_obs=0", "clip_obs must be > 0"),
                                          ("gamma=1.5", r"gamma must be in \[0, 1\]"),
                                          ("epsilon=-1", "epsilon must be > 0")])
def test_bad_settings_are_refused_naming_them(bad, message, small_prepared) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=message):
        merge_run_config(plugins=P, overrides={"model": "ppo-lstm", "data": str(small_prepared),
                                               "methods": "vec-normalize"}, sets=[f"vec-normalize.{bad}"])


def test_a_model_without_rollouts_is_refused(small_prepared) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match="'vec-normalize' does not apply to model 'baseline-mlp'"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "vec-normalize"})


def test_a_rollout_that_bypassed_the_filter_is_refused() -> None:
    """A model whose rollout does not go through EnvRollout would train on raw observations and
    be evaluated on normalised ones: the method stops the run at its first rollout."""
    method = SPEC.factory(SPEC.config())
    method.model_built(SimpleNamespace(), None)
    with pytest.raises(ConfigError, match="does not collect through EnvRollout"):
        method.on_rollout(None, None)
    method.filter.rewards(torch.zeros(2), torch.zeros(2, dtype=torch.bool), update=True)
    method.on_rollout(None, None)  # a step went through: fine
    with pytest.raises(ConfigError, match="does not collect through EnvRollout"):
        method.on_rollout(None, None)  # the next rollout saw none


# ----------------------------------------------------------------------- through EnvRollout


def _market(bars: int = 160):
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.003, bars)))  # calm: nobody goes bankrupt
    open_ = np.r_[close[0], close[:-1]]
    features = np.stack([np.arange(1, bars + 1), rng.normal(40, 8, bars), rng.standard_t(3, bars) * 1e-3],
                        axis=1).astype(np.float32)
    return open_, close, features


def _blind_policy(window: int):
    """Uniform actions whatever it sees (so a filtered and an unfiltered run take the same
    actions from the same torch seed); value = column 0 of the newest bar it sees, so a
    truncated episode's bootstrap value shows the final observation it was given."""

    def policy(obs, starts, state):
        newest = obs if obs.dim() == 2 else obs[:, -1, :]
        return torch.zeros(obs.shape[0], 3, device=obs.device), newest[:, 0].float(), state

    return policy, lambda n, device: ()


def _collect(window: int, device: str, filter_):
    """Three rollouts (a fresh env, a continued one, a rebuilt one) of 4 envs x 30 steps with
    7-step episodes; returns what each buffer holds and the observation after each."""
    open_, close, features = _market()
    env = EnvConfig()
    ctx = SimpleNamespace(seed=0, epoch=0, env=env, observation_filter=filter_,
                          env_source=EnvSource(open=open_, close=close, features=features, config=env))
    cfg = OnlineRLConfig(n_envs=4, rollout_steps=30, episode_length=7, n_minibatches=1)
    rollout = EnvRollout(cfg, obs_dim=features.shape[1] + 4, window=window)
    policy, initial = _blind_policy(window)
    out = []
    for k, reset in enumerate((True, False, True)):
        torch.manual_seed(k)
        buf = rollout.collect(ctx, reset, policy, initial, device)
        def host(x):  # a copy: the buffer is reused by the next rollout
            return x.detach().cpu().numpy().copy()

        out.append(SimpleNamespace(reset=reset, obs=host(buf.obs), rewards=host(buf.rewards), starts=host(buf.starts),
                                   finals=host(buf.final_values), actions=host(buf.actions), stats=dict(buf.stats),
                                   after=host(rollout._obs), after_starts=host(rollout._starts)))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window", [1, 3])
def test_envrollout_applies_it_as_sb3_on_the_env_stream(window, device) -> None:
    """The same three rollouts of a real VecTradingEnv collected without and with the filter
    (same actions). The raw stream (observations, rewards, episode ends, truncated episodes'
    final observations) replayed through SB3's VecNormalize gives what the filtered rollouts
    stored: the observations the policy saw, the rewards it learns from, the bootstrap values of
    the final observations, and the statistics. Windowed observations: SB3 follows the newest
    bar of each window and normalises the whole window with those per-column statistics. The
    rollout's ``reward_mean`` stays the env's own mean reward."""
    raw = _collect(window, device, None)
    f = make_filter().to(device)
    got = _collect(window, device, f)
    n, dim = raw[0].rewards.shape[1], raw[0].obs.shape[-1]
    newest = (lambda o: o) if window == 1 else (lambda o: o[..., -1, :])
    for r, g in zip(raw, got):
        np.testing.assert_array_equal(r.actions, g.actions)  # the same stream
        assert g.stats["reward_mean"] == pytest.approx(r.stats["reward_mean"], rel=1e-12)
    assert (np.concatenate([r.finals for r in raw]) != 0).sum() >= 8  # truncations were bootstrapped

    resets, steps = [], []
    for r in raw:
        if r.reset:
            resets.append(newest(r.obs[0]).astype(np.float64))
        nxt = [*r.obs[1:], r.after]
        ends = [*r.starts[1:], r.after_starts]
        for t in range(len(r.rewards)):
            finals = np.zeros((n, dim))
            finals[:, 0] = r.finals[t]  # column 0 of the final observation (the value the policy gave it)
            steps.append((newest(nxt[t]).astype(np.float64), r.rewards[t], ends[t].astype(bool), finals))
    ref = sb3(Replay(n, dim, resets, steps), {})

    def expect(raw_obs):  # the whole observation (window too) with SB3's statistics of now
        return ref._normalize_obs(raw_obs.astype(np.float64), ref.obs_rms).astype(np.float32)

    for r, g in zip(raw, got):
        if r.reset:
            ref.reset()
            np.testing.assert_allclose(g.obs[0], expect(r.obs[0]), rtol=1e-6, atol=1e-6)
        nxt_raw, nxt_got = [*r.obs[1:], r.after], [*g.obs[1:], g.after]
        for t in range(len(r.rewards)):
            _, rewards, dones, infos = ref.step(np.zeros(n, dtype=np.int64))
            np.testing.assert_allclose(g.rewards[t], rewards, rtol=1e-6, atol=1e-6, err_msg=f"rewards, step {t}")
            np.testing.assert_allclose(nxt_got[t], expect(nxt_raw[t]), rtol=1e-6, atol=1e-6, err_msg=f"obs {t + 1}")
            for i in np.flatnonzero(r.finals[t]):
                assert g.finals[t, i] == pytest.approx(infos[i]["terminal_observation"][0], rel=1e-6, abs=1e-6)
        filtered = g.stats["reward_mean_filtered"]
        assert filtered == pytest.approx(float(g.rewards.astype(np.float64).mean()), rel=1e-9)
    assert_same_statistics(f, ref)
    assert int(f.steps) == 90


def test_sequential_actions_applies_the_active_filter_frozen() -> None:
    """Inside ``observation_filter(f)`` every observation a policy is handed at evaluation is
    ``f``'s normalisation of the env's (window 1 and windowed), and the statistics do not move;
    outside it the policy sees the raw observation."""
    open_, close, features = _market(60)
    f = make_filter()
    for _ in range(5):
        f.observations(torch.from_numpy(np.random.default_rng(0).normal(30, 9, (4, 7)).astype(np.float32)),
                       update=True)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    for window in (1, 4):
        seen: dict[str, list] = {"raw": [], "filtered": []}

        def step(key):
            return lambda obs, starts: (seen[key].append(np.array(obs)), np.ones(1, np.int64))[1]

        sequential_actions(step("raw"), features, open_, close, [(10, 40)], EnvConfig(), window=window)
        with observation_filter(f):
            sequential_actions(step("filtered"), features, open_, close, [(10, 40)], EnvConfig(), window=window)
        assert len(seen["raw"]) == len(seen["filtered"]) == 29
        for raw_obs, filtered_obs in zip(seen["raw"], seen["filtered"]):
            want = np.clip((raw_obs - f.obs_rms.mean.numpy()) / np.sqrt(f.obs_rms.var.numpy() + 1e-8), -10, 10)
            np.testing.assert_allclose(filtered_obs, want, rtol=1e-6, atol=1e-6)
        assert not np.allclose(seen["raw"][5], seen["filtered"][5])
    assert all(torch.equal(before[k], v) for k, v in f.state_dict().items())


# --------------------------------------------------------------------------- whole runs

TINY = ["train.epochs=2", "train.max_steps_per_epoch=3", "train.progress=false", "train.patience=0",
        "train.log_every=2"]
TINY_PPO = ["ppo-lstm.n_envs=4", "ppo-lstm.n_minibatches=2", "ppo-lstm.rollout_steps=16",
            "ppo-lstm.episode_length=64", "ppo-lstm.env_episodes=8", "ppo-lstm.update_epochs=2"]


def _trainer(data, run_dir, model="ppo-lstm", sets=TINY_PPO):
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": model, "data": str(data), "methods": "vec-normalize"},
                           sets=[*TINY, *sets])
    return Trainer(run, plugins=P, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))


def _statistics(path):
    from himari.training.checkpoint import load_checkpoint

    return {k: v for k, v in load_checkpoint(path)["method_modules"].items() if k.startswith("vec-normalize__")}


def test_resume_continues_the_statistics_exactly(small_prepared, tmp_path) -> None:
    """A run interrupted after its first epoch and resumed ends with the statistics (and
    weights) of the uninterrupted run, in last.pt and best.pt; the statistics did move during
    training (the second epoch's are not the first's)."""
    from himari.training.checkpoint import load_checkpoint
    from himari.training.trainer import Trainer

    whole = _trainer(small_prepared, tmp_path / "whole")
    first_epoch = {}
    end_epoch = whole.end_epoch

    def keep_first(epoch):
        end_epoch(epoch)
        if epoch == 0:
            first_epoch.update(_statistics(tmp_path / "whole" / "checkpoints" / "last.pt"))

    whole.end_epoch = keep_first
    whole.fit()
    cut = _trainer(small_prepared, tmp_path / "cut")
    cut_end = cut.end_epoch

    def stop(epoch):
        cut_end(epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    cut.end_epoch = stop
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    Trainer.resume(tmp_path / "cut", plugins=P, console=Console(file=io.StringIO())).fit()
    for which in ("last", "best"):
        a = _statistics(tmp_path / "whole" / "checkpoints" / f"{which}.pt")
        b = _statistics(tmp_path / "cut" / "checkpoints" / f"{which}.pt")
        assert set(a) >= {"vec-normalize__normalizer.obs_rms.mean", "vec-normalize__normalizer.ret_rms.var",
                          "vec-normalize__normalizer.obs_rms.count", "vec-normalize__normalizer.steps"}
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
        wa = load_checkpoint(tmp_path / "whole" / "checkpoints" / f"{which}.pt")["network"]
        wb = load_checkpoint(tmp_path / "cut" / "checkpoints" / f"{which}.pt")["network"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), which
    last = _statistics(tmp_path / "whole" / "checkpoints" / "last.pt")
    assert int(last["vec-normalize__normalizer.steps"]) == 2 * 16
    assert not torch.equal(first_epoch["vec-normalize__normalizer.obs_rms.mean"],
                           last["vec-normalize__normalizer.obs_rms.mean"])


def test_backtest_acts_with_the_saved_statistics_frozen(small_prepared, tmp_path) -> None:
    """The restored policy's filter holds best.pt's statistics; acting (twice, on validation and
    test) leaves them as they were and gives the same actions, the ones the run scored; the
    same run with other statistics written into best.pt acts differently."""
    from himari.data import PreparedData
    from himari.evaluation.policy import action_distribution
    from himari.training.assemble import load_trained
    from himari.training.checkpoint import load_checkpoint, save_checkpoint

    run_dir = tmp_path / "run"
    summary = _trainer(small_prepared, run_dir).fit()
    data = PreparedData(small_prepared)
    test = data.split("test")
    policy = load_trained(run_dir)
    f = policy.observation_filter
    saved = _statistics(run_dir / "checkpoints" / "best.pt")
    assert torch.equal(f.obs_rms.mean, saved["vec-normalize__normalizer.obs_rms.mean"])
    assert int(f.steps) > 0 and summary["methods"]["vec-normalize"]["env_steps"] == int(f.steps)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    first = policy.actions(data, test)
    policy.actions(data, data.split("validation"))
    assert all(torch.equal(before[k], v) for k, v in f.state_dict().items())  # frozen
    np.testing.assert_array_equal(first, policy.actions(data, test))
    np.testing.assert_array_equal(first, load_trained(run_dir).actions(data, test))
    assert action_distribution(first, test) == summary["test"]["model"]["actions"]

    # A tiny run's policy barely depends on what it sees (it holds throughout): give best.pt
    # random weights of some size, so that what it sees shows in what it does, then move only
    # the statistics.
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    gen = torch.Generator().manual_seed(0)
    payload["network"] = {k: torch.randn(v.shape, generator=gen) * 0.5 if v.is_floating_point() else v
                          for k, v in payload["network"].items()}
    save_checkpoint(run_dir / "checkpoints" / "best.pt", payload)
    sensitive = load_trained(run_dir).actions(data, test)
    assert len(np.unique(sensitive)) > 1
    key = "vec-normalize__normalizer.obs_rms"
    payload["method_modules"][f"{key}.mean"] = payload["method_modules"][f"{key}.mean"] + 3.0
    payload["method_modules"][f"{key}.var"] = payload["method_modules"][f"{key}.var"] * 0.01
    save_checkpoint(run_dir / "checkpoints" / "best.pt", payload)
    moved = load_trained(run_dir)
    assert torch.equal(moved.observation_filter.obs_rms.mean, payload["method_modules"][f"{key}.mean"])
    assert not np.array_equal(sensitive, moved.actions(data, test))


@pytest.mark.slow
def test_flag_trader_trains_and_backtests_with_it(small_prepared, tmp_path) -> None:
    """Windowed observations: flag-trader (a tiny one) trains with the filter, whose statistics
    have one column per observation column (features and account), not per window row, and its
    backtest acts as the run scored."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from himari.data import PreparedData
    from himari.evaluation.policy import action_distribution
    from himari.training.assemble import load_trained

    tiny = ["flag-trader.n_layer=1", "flag-trader.n_head=2", "flag-trader.n_embd=16", "flag-trader.context_length=8",
            "flag-trader.lora_rank=2", "flag-trader.head_hidden=8", "flag-trader.episode_length=16",
            "flag-trader.n_envs=4", "flag-trader.n_minibatches=2", "flag-trader.rollout_steps=16",
            "flag-trader.env_episodes=4", "flag-trader.update_epochs=1", "train.epochs=1"]
    run_dir = tmp_path / "ft"
    summary = _trainer(small_prepared, run_dir, model="flag-trader", sets=tiny).fit()
    policy = load_trained(run_dir)
    f = policy.observation_filter
    assert f.obs_rms.mean.shape == (policy.context.n_features + 4,) and int(f.steps) > 0
    assert float(f.obs_rms.count) == pytest.approx(1e-4 + 4 * (1 + int(f.steps)))  # newest bars only
    data = PreparedData(small_prepared)
    test = data.split("test")
    assert action_distribution(policy.actions(data, test), test) == summary["test"]["model"]["actions"]
