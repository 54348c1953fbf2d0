"""Truncated episodes bootstrap from their final observation: ``gae`` by hand, and the values
``EnvRollout`` hands it (a stub policy whose value is a known function of what it sees)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.plugin.api import EnvConfig, EnvSource  # noqa: E402
from himari.training.rl import OnlineRLConfig, gae  # noqa: E402
from himari.training.rollout import EnvRollout, FinalObservations  # noqa: E402


def test_gae_bootstraps_truncations_and_not_terminations_by_hand():
    """gamma = lam = 0.5, three envs of three steps, rewards 1, 2, 3 and values 10, 20, 30:
    env 0 truncates at step 1 (final value 40), env 1 terminates there (no bootstrap), env 2
    truncates at the last step (final value 8; last_values ignored as last_starts is 1)."""
    r = torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3])
    v = torch.tensor([[10.0] * 3, [20.0] * 3, [30.0] * 3])
    starts = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    final = torch.tensor([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 0.0, 8.0]])
    adv, ret = gae(r, v, starts, torch.tensor([50.0, 50.0, 50.0]), torch.tensor([0.0, 0.0, 1.0]), gamma=0.5,
                   lam=0.5, final_values=final)
    # env 0: A2 = 3 + .5*50 - 30 = -2; A1 = 2 + .5*40 - 20 = 2 (cut); A0 = 1 + .5*20 - 10 + .25*2 = 1.5
    # env 1: A2 = -2; A1 = 2 - 20 = -18; A0 = 1 + .25*(-18) = -3.5
    # env 2: A2 = 3 + .5*8 - 30 = -23; A1 = 2 + .5*30 - 20 + .25*(-23) = -8.75; A0 = 1 + .25*(-8.75)
    want = torch.tensor([[1.5, -3.5, -1.1875], [2.0, -18.0, -8.75], [-2.0, -2.0, -23.0]])
    torch.testing.assert_close(adv, want)
    torch.testing.assert_close(ret, want + v)


def _ctx(open_, close, features, *, mode="long_flat", seed=0):
    env = EnvConfig(mode=mode)
    source = EnvSource(open=np.asarray(open_, np.float64), close=np.asarray(close, np.float64),
                       features=np.asarray(features, np.float32), config=env)
    return SimpleNamespace(seed=seed, epoch=0, env=env, env_source=source)


def _counting_policy(sell_bias: float = 0.0):
    """Value = feature 0 of the observation (the bar index) + 1000 x the observations this
    episode has fed the policy so far, this one included (the recurrent state counts them; an
    episode start zeroes it). V(final obs) with the episode's own state is therefore
    final bar + 1000 (length + 1); with a zeroed state it would be final bar + 1000."""

    def policy(obs, starts, state):
        (count,) = state
        if starts is not None:
            count = count * (1.0 - starts)[None, :, None]
        count = count + 1.0
        logits = torch.zeros(obs.shape[0], 3)
        logits[:, 0] = sell_bias
        return logits, obs[:, 0] + 1000.0 * count[0, :, 0], (count,)

    def initial_state(n, device):
        return (torch.zeros(1, n, 1, device=device),)

    return policy, initial_state


def test_rollout_bootstraps_truncated_episodes_with_their_own_state():
    T_bars, n_envs, steps = 120, 4, 30
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, T_bars)))  # calm: nobody goes bankrupt
    open_ = np.r_[close[0], close[:-1]]
    features = np.arange(T_bars, dtype=np.float32)[:, None]  # the bar index
    cfg = OnlineRLConfig(n_envs=n_envs, rollout_steps=steps, episode_length=7, n_minibatches=1, gamma=0.9,
                         gae_lambda=0.8)
    policy, initial_state = _counting_policy()
    rollout = EnvRollout(cfg, obs_dim=1 + 4)
    buf = rollout.collect(_ctx(open_, close, features), True, policy, initial_state, "cpu")
    assert rollout._final_slots > 1  # several truncations per env in one rollout

    # What the buffer recorded: starts[t] marks a new episode, obs[t, :, 0] the bar of step t's
    # observation. Every episode end here is a truncation after 7 steps.
    starts = buf.starts.numpy()
    bars = buf.obs[:, :, 0].numpy()
    ended = np.vstack([starts[1:], rollout._starts.numpy()[None]]) > 0
    want = np.zeros((steps, n_envs), dtype=np.float32)
    for i in range(n_envs):
        begun = 0
        for t in range(steps):
            if starts[t, i]:
                begun = t
            if ended[t, i]:
                length = t - begun + 1
                assert length == 7
                want[t, i] = (bars[t, i] + 1) + 1000.0 * (length + 1)
    assert ended.sum() >= n_envs * 3
    np.testing.assert_array_equal(buf.final_values.numpy(), want)

    # And GAE used them: an independent numpy recursion over the recorded rollout.
    r, v = buf.rewards.numpy().astype(np.float64), buf.values.numpy().astype(np.float64)
    _, last_value, _ = policy(rollout._obs, rollout._starts, rollout._state)  # the state after the last step
    adv = np.zeros_like(r)
    nxt = np.zeros(n_envs)
    for t in range(steps - 1, -1, -1):
        nonterminal = 1.0 - ended[t]
        next_v = last_value.numpy() if t == steps - 1 else v[t + 1]
        delta = r[t] + 0.9 * (next_v * nonterminal + want[t]) - v[t]
        nxt = delta + 0.9 * 0.8 * nonterminal * nxt
        adv[t] = nxt
    np.testing.assert_allclose(buf.advantages.numpy(), adv, rtol=1e-5, atol=1e-2)


def test_rollout_does_not_bootstrap_terminated_episodes():
    """A short position into a price that triples every 6 bars: every episode ends in
    bankruptcy (terminated) long before its length; none is bootstrapped."""
    T_bars = 120
    close = np.where(np.arange(T_bars) % 6 == 5, 300.0, 100.0)
    open_ = close.copy()
    features = np.arange(T_bars, dtype=np.float32)[:, None]
    cfg = OnlineRLConfig(n_envs=3, rollout_steps=24, episode_length=50, n_minibatches=1)
    policy, initial_state = _counting_policy(sell_bias=30.0)  # always SELL: short
    rollout = EnvRollout(cfg, obs_dim=1 + 4)
    buf = rollout.collect(_ctx(open_, close, features, mode="long_short"), True, policy, initial_state, "cpu")
    assert (buf.actions == 0).all()
    assert buf.starts[1:].sum() >= 3 * 2  # episodes ended (by bankruptcy: at most 6 steps each)
    assert buf.stats["episode_length"] <= 6
    np.testing.assert_array_equal(buf.final_values.numpy(), 0.0)


@pytest.mark.parametrize("slots", [1, 3])
def test_final_observations_record_every_step_as_on_the_gpu(slots):
    """The GPU path records at every step (a mask, no host check) and evaluates every slot:
    the same values as picking the truncations out by hand (two per env with three slots)."""
    n, steps = 3, 10
    fin = FinalObservations(steps, n, slots, "cpu")
    rng = np.random.default_rng(1)
    truncs = np.zeros((steps, n), dtype=bool)
    truncs[[1, 6] if slots > 1 else 6, 0] = True
    truncs[[3, 9] if slots > 1 else 3, 2] = True
    want = np.zeros((steps, n), dtype=np.float32)
    for t in range(steps):
        obs = torch.from_numpy(rng.normal(size=(n, 2)).astype(np.float32))
        state = (torch.from_numpy(rng.normal(size=(1, n, 1)).astype(np.float32)),)
        fin.record(t, torch.from_numpy(truncs[t]), obs, state)
        for i in np.flatnonzero(truncs[t]):
            want[t, i] = obs[i, 0] * 10 + state[0][0, i, 0]

    def policy(obs, starts, state):
        assert starts is None and state[0].shape == (1, n, 1)
        return None, obs[:, 0] * 10 + state[0][0, :, 0], state

    np.testing.assert_allclose(fin.values(policy, all_slots=True).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(fin.values(policy, all_slots=False).numpy(), want, rtol=1e-6)
    assert not bool(fin.overflowed())


def test_final_observations_report_more_truncations_than_slots():
    fin = FinalObservations(4, 2, 1, "cpu")
    for t in (0, 2):
        fin.record(t, torch.tensor([True, False]), torch.zeros(2, 3), ())
    assert bool(fin.overflowed())
