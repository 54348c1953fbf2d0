"""Datasets for the five model families: views, determinism, split boundaries, env agreement."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.data.datasets import (  # noqa: E402
    SequenceDataset,
    TabularDataset,
    TrajectoryDataset,
    TransitionDataset,
    discounted_returns,
)
from himari.data.prepared import PreparedData  # noqa: E402
from himari.errors import DataError  # noqa: E402

SPLITS = ("train", "validation", "test")


def _build(kind, d, split, **kw):
    if kind == "tabular":
        return TabularDataset(d, split, **kw)
    if kind == "transitions":
        return TransitionDataset(d, split, **kw)
    if kind == "trajectories":
        return TrajectoryDataset(d, split, context_length=64, stride=7, **kw)
    return SequenceDataset(d, split, length=256, stride=5, **kw)


KINDS = ("tabular", "transitions", "trajectories", "sequences")


@pytest.mark.parametrize("kind", KINDS)
def test_items_never_cross_a_split_boundary(prepared_dir, kind):
    d = PreparedData(prepared_dir)
    for split in SPLITS:
        ds = _build(kind, d, split)
        ranges = d.split(split)
        assert len(ds) > 0
        for i in range(len(ds)):
            first, last = ds.rows(i)
            assert any(a <= first and last < b for a, b in ranges), (kind, split, i)
    for fold in range(3):
        ds = _build(kind, d, "test", fold=fold) if kind != "trajectories" else TrajectoryDataset(d, "test", fold=fold, context_length=32)
        ranges = d.split("test", fold=fold)
        assert all(any(a <= ds.rows(i)[0] and ds.rows(i)[1] < b for a, b in ranges) for i in range(0, len(ds), 17))


def test_tabular_items_are_views(prepared_dir):
    d = PreparedData(prepared_dir)
    ds = TabularDataset(d, "train")
    x, y = ds[3]
    t = ds.rows(3)[0]
    assert x.dtype == torch.float32 and x.shape == (60,) and y.dtype == torch.long
    assert np.shares_memory(x.numpy(), d.features)
    assert int(y) == int(d.labels[t]) and (d.labels[ds.index] >= 0).all()
    # the states come from the features given (a run's preprocessed features), row for row
    other = np.arange(d.num_samples * 60, dtype=np.float32).reshape(d.num_samples, 60)
    xo, _ = TabularDataset(d, "train", features=other)[3]
    np.testing.assert_array_equal(xo.numpy(), other[t])
    with pytest.raises(DataError, match="one row per prepared row"):
        TabularDataset(d, "train", features=other[:-1])


def test_sequences_are_views_ending_at_the_label(prepared_dir):
    d = PreparedData(prepared_dir)
    ds = SequenceDataset(d, "validation", length=256)
    x, y = ds[0]
    first, last = ds.rows(0)
    assert x.shape == (256, 60) and np.shares_memory(x.numpy(), d.features)
    np.testing.assert_array_equal(x.numpy(), d.features[first:last + 1])
    assert int(y) == int(d.labels[last])


def test_transitions_match_the_env(prepared_dir):
    """Offline transitions equal what VecTradingEnv returns for the same actions and costs."""
    from himari import engine

    d = PreparedData(prepared_dir)
    reward = engine.RewardConfig(drawdown_penalty=0.5, turnover_penalty=1e-4)
    ds = TransitionDataset(d, "validation", actions="random", seed=4, fee=2e-3, slippage=1e-3, reward=reward)
    (a, b), = d.split("validation")
    n = b - a
    market = engine.Market(np.asarray(d.open[a:b]), np.asarray(d.close[a:b]), np.asarray(d.features[a:b]))
    env = engine.VecTradingEnv(market, n_envs=1, episode_length=n - 1, fee=2e-3, slippage=1e-3,
                               reward=reward, window=1, random_start=False, warmup=0)
    obs, _ = env.reset()
    steps = min(300, n - 2)
    for t in range(steps):
        s, act, r, s2, done = ds[t]
        np.testing.assert_allclose(s.numpy(), obs[0, 0], rtol=1e-6, atol=1e-7)
        obs, rew, term, trunc, _ = env.step(np.array([int(act)]))
        np.testing.assert_allclose(float(r), float(rew[0]), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s2.numpy(), obs[0, 0], rtol=1e-6, atol=1e-7)
        assert not bool(done)
    assert bool(ds[len(ds) - 1][4])
    assert ds.obs_dim == 64


def test_trajectories_returns_to_go_and_timesteps(prepared_dir):
    d = PreparedData(prepared_dir)
    ds = TrajectoryDataset(d, "train", context_length=64, gamma=0.99)
    states, actions, rewards, rtg, steps = ds[10]
    assert states.shape == (64, 64) and actions.shape == (64,) and rtg.shape == (64,)
    assert np.shares_memory(states.numpy(), ds.observations)
    np.testing.assert_array_equal(steps.numpy(), np.arange(10, 74))
    r = ds.rewards[: ds.index[-1] + 1].astype(np.float64)
    g = np.zeros(len(r) + 1)
    for t in range(len(r) - 1, -1, -1):
        g[t] = r[t] + 0.99 * g[t + 1]
    np.testing.assert_allclose(ds.returns_to_go[: len(r)], g[:-1], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(discounted_returns(np.ones(3), 0.5), [1.75, 1.5, 1.0])
    labels = np.asarray(d.labels)
    (a, _), = d.split("train")
    np.testing.assert_array_equal(actions.numpy(), np.where(labels[a + 10:a + 74] >= 0, labels[a + 10:a + 74], 1))


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_under_seed(prepared_dir, kind):
    d = PreparedData(prepared_dir)
    kw = {"actions": "random", "epsilon": 0.0} if kind in ("transitions", "trajectories") else {}
    one, two = _build(kind, d, "train", seed=7, **kw), _build(kind, d, "train", seed=7, **kw)
    assert len(one) == len(two)
    for i in (0, len(one) // 2, len(one) - 1):
        for u, v in zip(one[i], two[i]):
            assert torch.equal(u, v)
    np.testing.assert_array_equal(one.permutation(3), two.permutation(3))
    assert not np.array_equal(one.permutation(3), one.permutation(4))
    if kw:
        other = _build(kind, d, "train", seed=8, **kw)
        assert not np.array_equal(other.actions, one.actions)


def test_behaviour_policy_callable_and_epsilon(prepared_dir):
    d = PreparedData(prepared_dir)
    always_buy = TransitionDataset(d, "test", actions=lambda f: np.full(len(f), 2))
    assert (always_buy.actions == 2).all()
    noisy = TransitionDataset(d, "test", actions=lambda f: np.full(len(f), 2), epsilon=0.5, seed=1)
    assert 0.2 < (noisy.actions != 2).mean() < 0.5
    from himari.errors import DataError

    with pytest.raises(DataError):
        TransitionDataset(d, "test", actions=lambda f: np.full(len(f), 5))


def test_benchmark_weight_makes_rewards_excess_returns_over_holding(prepared_dir):
    """Worked by hand, without costs: always long, the first step earns ``log(close[1] / open[1])``
    (filled at the next open) and each later one the asset's own ``log(close[t+1] / close[t])``,
    so the excess over holding is ``log(close[0] / open[1])`` and then exactly 0; never in the
    market, the excess is minus the asset's return. The returns-to-go follow the excess rewards."""
    d = PreparedData(prepared_dir)
    (a, b), = d.split("validation")
    close, open_ = np.asarray(d.close[a:b], dtype=np.float64), np.asarray(d.open[a:b], dtype=np.float64)
    held = np.log(close[1:] / close[:-1])
    for action, want in ((2, np.r_[np.log(close[0] / open_[1]), np.zeros(b - a - 2)]), (1, -held)):
        acts = np.full(d.num_samples, action, dtype=np.int64)
        kw = {"actions": acts, "fee": 0.0, "slippage": 0.0, "context_length": 16, "gamma": 1.0}
        plain = TrajectoryDataset(d, "validation", **kw)
        excess = TrajectoryDataset(d, "validation", benchmark_weight=1.0, **kw)
        np.testing.assert_allclose(excess.rewards[: b - a - 1], want, atol=1e-7)
        np.testing.assert_allclose(plain.rewards[: b - a - 1] - excess.rewards[: b - a - 1], held, atol=1e-7)
        np.testing.assert_allclose(excess.returns_to_go[: b - a - 1], np.cumsum(want[::-1])[::-1], atol=1e-5)
    with pytest.raises(DataError, match="benchmark_weight"):
        TransitionDataset(d, "validation", benchmark_weight=-1.0)
