"""PPO-LSTM and the reusable online-RL pieces (himari.training.rl): GAE against a hand-computed
example, the LSTM state reset at episode starts, the sequence-batched loss against a per-step
loop, the evaluation rollout's account columns against the env's, determinism, resume and
``himari backtest`` on a run. Tiny budgets throughout."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from himari_tests_conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

SETS = TINY_ONLINE("ppo-lstm")


def _net(obs_dim: int = 6, hidden: int = 5):
    from himari_builtin.models.ppo_lstm.network import ActorCritic

    torch.manual_seed(0)
    return ActorCritic(obs_dim, 3, (7,), hidden)


def test_gae_hand_computed() -> None:
    from himari.training.rl import gae

    # step 1 ends an episode (obs 2 starts a new one): no bootstrap across it
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    starts = torch.tensor([[1.0], [0.0], [1.0]])
    adv, ret = gae(r, v, starts, torch.tensor([2.0]), torch.tensor([0.0]), gamma=0.9, lam=0.8)
    # A2 = 3 + 0.9*2 - 1.5 = 3.3; A1 = 2 - 1 = 1 (terminal); A0 = 1 + 0.9*1 - 0.5 + 0.9*0.8*1 = 2.12
    torch.testing.assert_close(adv[:, 0], torch.tensor([2.12, 1.0, 3.3]))
    torch.testing.assert_close(ret[:, 0], torch.tensor([2.62, 2.0, 4.8]))
    # last observation starting an episode: no bootstrap of the last step either
    adv2, _ = gae(r, v, starts, torch.tensor([2.0]), torch.tensor([1.0]), gamma=0.9, lam=0.8)
    assert float(adv2[2, 0]) == pytest.approx(1.5)


def test_state_resets_at_episode_starts() -> None:
    net = _net()
    T, B = 9, 3
    obs = torch.randn(T, B, 6)
    starts = torch.zeros(T, B)
    starts[4, 1] = 1.0  # env 1 starts a new episode at step 4
    h0 = (torch.randn(1, B, 5), torch.randn(1, B, 5))
    with torch.no_grad():
        logits, values, _ = net.forward_sequence(obs, starts, h0)
        # env 1 from step 4 on equals a fresh sequence from a zero state
        fresh_logits, fresh_values, _ = net.forward_sequence(obs[4:, 1:2], torch.zeros(T - 4, 1),
                                                             net.initial_state(1))
        torch.testing.assert_close(logits[4:, 1:2], fresh_logits)
        torch.testing.assert_close(values[4:, 1:2], fresh_values)
        # the other envs are untouched by env 1's reset
        base_logits, _, _ = net.forward_sequence(obs, torch.zeros(T, B), h0)
        torch.testing.assert_close(logits[:, [0, 2]], base_logits[:, [0, 2]])
        torch.testing.assert_close(logits[:4, 1], base_logits[:4, 1])
        assert not torch.allclose(logits[4:, 1], base_logits[4:, 1])
        # the one-step path of rollouts and evaluation matches the sequence path step by step
        st = h0
        for t in range(T):
            lg, v, st = net.step(obs[t], starts[t] if bool(starts[t].any()) else None, st)
            torch.testing.assert_close(lg, logits[t], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(v, values[t], rtol=1e-5, atol=1e-6)


def _per_step(net, obs, starts, state):
    """The slow reference: one LSTM step at a time, zeroing the state where an episode starts."""
    h, c = state
    outs = []
    for t in range(obs.shape[0]):
        keep = (1.0 - starts[t]).view(1, -1, 1)
        h, c = h * keep, c * keep
        x = net.encoder(obs[t])
        out, (h, c) = net.lstm(x[None], (h, c))
        outs.append(out[0])
    out = torch.stack(outs)
    return net.actor(out), net.critic(out)[..., 0]


def test_sequence_batched_loss_equals_per_step_loop() -> None:
    from himari_builtin.models.ppo_lstm import PPOLSTM, PPOLSTMConfig

    from himari.plugin import ModelContext

    torch.manual_seed(1)
    model = PPOLSTM(PPOLSTMConfig(encoder_sizes=(8,), lstm_hidden=6), ModelContext(n_features=4))
    T, B = 12, 4
    starts = torch.zeros(T, B)
    starts[0, :] = 1.0
    starts[5, 0] = starts[5, 2] = starts[9, 3] = 1.0
    batch = {"obs": torch.randn(T, B, 8), "actions": torch.randint(0, 3, (T, B)), "starts": starts,
             "logprobs": torch.log(torch.full((T, B), 1 / 3)) + 0.05 * torch.randn(T, B),
             "values": torch.randn(T, B), "advantages": torch.randn(T, B), "returns": torch.randn(T, B),
             "state": (torch.randn(1, B, 6), torch.randn(1, B, 6))}
    net = model.network
    loss, _ = model.loss(batch, None)
    grads = torch.autograd.grad(loss, list(net.parameters()))

    original = net.forward_sequence
    net.forward_sequence = lambda o, s, st: (*_per_step(net, o, s, st), None)  # type: ignore[method-assign]
    try:
        ref_loss, _ = model.loss(batch, None)
        ref_grads = torch.autograd.grad(ref_loss, list(net.parameters()))
    finally:
        net.forward_sequence = original  # type: ignore[method-assign]
    torch.testing.assert_close(loss, ref_loss)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-6)


def test_evaluation_rollout_sees_the_env_account() -> None:
    """sequential_actions feeds the policy the account columns replay_actions (the env's reward
    code) gives for the same actions, from a flat account at each range start."""
    from himari.engine import replay_actions
    from himari.plugin import EnvConfig
    from himari.training.rl import sequential_actions

    rng = np.random.default_rng(0)
    n, F = 300, 3
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.001, n))
    feats = rng.normal(size=(n, F)).astype(np.float32)
    seen: list[np.ndarray] = []
    starts_seen: list[bool] = []

    def step(obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        seen.append(obs[0].copy())
        starts_seen.append(bool(starts[0]))
        return np.array([int(rng.integers(0, 3))])

    env = EnvConfig(fee=1e-3, slippage=5e-4, mode="long_short")
    ranges = [(10, 150), (160, 300)]
    actions = sequential_actions(step, feats, open_, close, ranges, env)
    assert actions.shape == (280,) and actions[139] == 1 and actions[-1] == 1
    obs = np.array(seen)
    assert starts_seen == [True] + [False] * 138 + [True] + [False] * 138
    for k, (a, b) in enumerate(ranges):
        rep = replay_actions(open_[a:b], close[a:b], actions[k * 140:(k + 1) * 140], fee=env.fee,
                             slippage=env.slippage, mode=env.mode)
        part = obs[k * 139:(k + 1) * 139]
        np.testing.assert_array_equal(part[:, :F], feats[a:b - 1])
        np.testing.assert_array_equal(part[:, F:], np.asarray(rep.account)[:-1])


def test_deterministic_under_a_seed(small_prepared, tmp_path) -> None:
    a = tiny_run("ppo-lstm", small_prepared, tmp_path / "a", sets=SETS)
    b = tiny_run("ppo-lstm", small_prepared, tmp_path / "b", sets=SETS)
    for key in ("validation", "test", "history", "steps"):
        assert a[key] == b[key], key
    wa = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["network"]
    wb = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["network"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("rollout/reward_mean" in r for r in records)
    assert a["test"]["model"]["actions"].keys() == {"SELL", "HOLD", "BUY"}
    assert "collapsed" in a and set(a["collapsed"]) == {"validation", "test"}


def test_resume_redoes_the_interrupted_epoch_exactly(small_prepared, tmp_path, monkeypatch) -> None:
    from rich.console import Console

    from himari_builtin.models import ppo_lstm

    from himari.training.trainer import Trainer

    sets = [*SETS, "train.epochs=2", "train.max_steps_per_epoch=0", "train.patience=0", "train.log_every=1"]
    full = tiny_run("ppo-lstm", small_prepared, tmp_path / "full", sets=sets)

    original = ppo_lstm.PPOLSTM.rollout
    calls = {"n": 0}

    def failing(self, ctx, reset):
        if ctx.epoch == 1 and not reset:
            raise KeyboardInterrupt  # killed mid-epoch 2
        calls["n"] += 1
        return original(self, ctx, reset)

    monkeypatch.setattr(ppo_lstm.PPOLSTM, "rollout", failing)
    with pytest.raises(KeyboardInterrupt):
        tiny_run("ppo-lstm", small_prepared, tmp_path / "killed", sets=sets)
    monkeypatch.setattr(ppo_lstm.PPOLSTM, "rollout", original)
    assert not (tmp_path / "killed" / "summary.json").exists()
    resumed = Trainer.resume(tmp_path / "killed", console=Console(file=io.StringIO())).fit()
    assert resumed["resumed_from_step"] == 16  # the end of epoch 1: 4 rollouts x 2 passes x 2 minibatches
    for key in ("validation", "test", "history", "best_epoch", "steps"):
        assert full[key] == resumed[key], key
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == (tmp_path / "killed" / "metrics.jsonl").read_text()


def test_backtest_of_a_run_matches_its_summary(small_prepared, tmp_path) -> None:
    from himari.training.leaderboard import backtest

    summary = tiny_run("ppo-lstm", small_prepared, tmp_path / "run", sets=SETS)
    entries, _ = backtest([str(tmp_path / "run"), "buy-and-hold"], split="test")
    run = next(e for e in entries if e.kind == "run")
    assert run.metrics == summary["test"]["model"]


def test_a_restored_policy_decides_sequentially_from_the_prices(small_prepared, tmp_path) -> None:
    """A restored ppo-lstm is stateful: its actions come from act_sequence over each range from a
    flat account (the last row of each range takes no decision), and act alone refuses."""
    from himari.data import PreparedData
    from himari.errors import HimariError
    from himari.training.assemble import load_trained

    tiny_run("ppo-lstm", small_prepared, tmp_path / "run", sets=SETS)
    policy = load_trained(tmp_path / "run")
    data = PreparedData(small_prepared)
    (a, b), = data.split("test")
    assert policy.stateful
    whole = policy.actions(data, [(a, b)])
    halves = policy.actions(data, [(a, a + 40), (a + 40, b)])
    assert whole[39] != 1 or halves[39] == 1  # row a + 39 ends the first range: HOLD there
    assert halves[39] == 1 and whole[-1] == 1
    np.testing.assert_array_equal(halves[:39], whole[:39])  # same rows from the same flat start
    with pytest.raises(HimariError, match="act_sequence"):
        policy.model.act(policy.features(data), np.arange(a, a + 10))


def test_parameter_count_at_the_default_config() -> None:
    from himari_builtin.models.ppo_lstm import PPOLSTMConfig, parameter_count

    from himari.plugin import ModelContext

    from himari_builtin.models.ppo_lstm import PPOLSTM

    total = parameter_count(PPOLSTMConfig(), 60).total
    assert total == 289_636 and abs(total - 289_668) / 289_668 < 0.05  # the seed's network: 289,668
    assert sum(p.numel() for p in PPOLSTM(PPOLSTMConfig(), ModelContext()).network.parameters()) == total


def test_cli_online_rl_and_reward_shaping_options(small_prepared, tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app

    run_dir = tmp_path / "cli"
    args = ["train", "ppo-lstm", "--data", str(small_prepared), "--run-dir", str(run_dir), "--epochs", "1",
            "--env-episodes", "2", "--n-envs", "4", "--rollout-steps", "16", "--turnover-penalty", "0.001",
            "--drawdown-penalty", "0.5", "--dsr-weight", "0.01", "--set", "ppo-lstm.episode_length=32",
            "--set", "ppo-lstm.n_minibatches=2", "--set", "train.progress=false"]
    # the flags turn reward-shaping on beside the recipe's vec-normalize (they replaced its methods,
    # silently dropping vec-normalize); its reward normalisation and the benchmark term clash
    clash = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert clash.exit_code == 2 and "set vec-normalize.norm_reward=false" in clash.output, clash.output
    assert not run_dir.exists()
    out = CliRunner().invoke(app, [*args, "--set", "vec-normalize.norm_reward=false"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "1 rollout of 4 envs x 16 steps (64 env steps)" in out.output  # 2 episodes x 32 steps
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    shaping = cfg["plugins"]["reward-shaping"]  # the flags set the reward-shaping method
    assert cfg["methods"] == ["vec-normalize", "reward-shaping"]
    assert shaping["turnover_penalty"] == 0.001 and shaping["drawdown_penalty"] == 0.5
    assert shaping["dsr_weight"] == 0.01
    assert (cfg["plugins"]["ppo-lstm"]["env_episodes"], cfg["plugins"]["ppo-lstm"]["n_envs"],
            cfg["plugins"]["ppo-lstm"]["rollout_steps"]) == (2, 4, 16)
    bad = CliRunner().invoke(app, ["train", "baseline-mlp", "--n-envs", "4"])
    assert bad.exit_code == 2 and "online-RL" in bad.output
