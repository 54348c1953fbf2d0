"""reward-shaping (K7): the benchmark-relative term on hand-worked series, the env terms set
through the method, each term logged, the bare CLI flags setting the method, bad input refused."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.plugin.api import EnvConfig, EnvSource
from himari.plugin.manager import get_plugins

torch = pytest.importorskip("torch")

P = get_plugins()
SPEC = P.training_methods().get("reward-shaping")

BUY, SELL = 2, 0


def _market(close: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bars whose open is the previous close (no gaps); bar 0 is padding before the episode."""
    c = np.asarray(close, dtype=np.float64)
    return np.r_[c[0], c[:-1]], c


def _rollout(close: list[float], decide, env: EnvConfig, method) -> tuple[np.ndarray, np.ndarray, dict]:
    """One episode of a scripted policy through the real env and ``EnvRollout`` (the market
    starts at bar 1: ``warmup=1``), then the method's ``on_rollout``. ``decide(bar)`` is the
    action at that bar (the feature column holds the bar index). Returns the env's rewards, the
    shaped rewards and the rollout stats."""
    from himari.training.rl import OnlineRLConfig
    from himari.training.rollout import EnvRollout

    open_, c = _market(close)
    n = len(c)
    steps = n - 2  # decisions at bars 1 .. n-2
    feats = np.arange(n, dtype=np.float32)[:, None]
    env = method.env_config(env, None)
    ctx = SimpleNamespace(seed=0, epoch=0, rank=0,
                          env_source=EnvSource(open=open_, close=c, features=feats, config=env, warmup=1))
    cfg = OnlineRLConfig(n_envs=1, rollout_steps=steps, episode_length=steps, n_minibatches=1)

    def policy(obs, starts, state):
        bar = int(round(float(obs[0, 0])))
        logits = torch.full((1, 3), -1e9)
        logits[0, decide(bar)] = 0.0
        return logits, torch.zeros(1), state

    buf = EnvRollout(cfg, obs_dim=5).collect(ctx, True, policy, lambda n_envs, device: (), "cpu")
    assert buf.bars[:, 0].tolist() == list(range(1, n - 1))  # the bar each step decided at
    raw = buf.rewards[:, 0].double().numpy().copy()
    method.on_rollout(buf, ctx)
    return raw, buf.rewards[:, 0].double().numpy(), buf.stats


FREE = EnvConfig(fee=0.0, slippage=0.0)
BULL = [100.0, 100.0, 110.0, 121.0, 133.1, 146.41]   # +10% a bar
TOP = [100.0, 100.0, 110.0, 121.0, 100.0, 90.0]      # up, then down


def test_refused_on_rewards_a_filter_has_already_normalised() -> None:
    """vec-normalize's reward scaling runs during collection, before on_rollout: the benchmark
    term would be subtracted from rescaled rewards, so the combination is refused by name."""
    method = SPEC.factory(SPEC.config())
    buf = SimpleNamespace(bars=torch.zeros((2, 1), dtype=torch.long), rewards=torch.zeros((2, 1)), stats={})
    ctx = SimpleNamespace(observation_filter=SimpleNamespace(norm_reward=True),
                          env_source=EnvSource(open=np.ones(3), close=np.ones(3), features=np.zeros((3, 1)),
                                               config=FREE, warmup=0))
    with pytest.raises(ConfigError, match="benchmark_weight.*vec-normalize.norm_reward=false"):
        method.on_rollout(buf, ctx)
    ctx.observation_filter = SimpleNamespace(norm_reward=False)  # observations only: allowed
    method.on_rollout(buf, ctx)
    assert buf.rewards.abs().sum() == 0  # a flat market: zero benchmark return


def test_always_long_earns_zero_in_a_bull_market() -> None:
    """By hand: long from open[2] = close[1] = 100, each step's log equity return is
    log(close[t+1]/close[t]) = log 1.1, exactly the buy-and-hold return subtracted."""
    method = SPEC.factory(SPEC.config())
    raw, shaped, stats = _rollout(BULL, lambda bar: BUY, FREE, method)
    np.testing.assert_allclose(raw, [math.log(1.1)] * 4, rtol=1e-6)  # unshaped: free reward
    np.testing.assert_allclose(shaped, 0.0, atol=1e-7)
    assert stats["reward_benchmark"] == pytest.approx(math.log(1.1), rel=1e-9)
    assert stats["reward_mean"] == pytest.approx(0.0, abs=1e-7)


def test_a_timed_exit_earns_the_fall_it_avoided() -> None:
    """Long at bars 1-2, SELL at bar 3 (filled at open[4] = close[3] = 121): by hand the shaped
    rewards are 0, 0, -log(100/121), -log(90/100) (flat while the asset falls); always long in
    the same market earns 0."""
    method = SPEC.factory(SPEC.config())
    _, shaped, _ = _rollout(TOP, lambda bar: BUY if bar < 3 else SELL, FREE, method)
    np.testing.assert_allclose(shaped, [0.0, 0.0, math.log(121 / 100), math.log(100 / 90)], atol=1e-6)
    assert shaped.sum() == pytest.approx(math.log(121 / 90), abs=1e-6) and shaped.sum() > 0
    _, long_only, _ = _rollout(TOP, lambda bar: BUY, FREE, method)
    np.testing.assert_allclose(long_only, 0.0, atol=1e-7)


def test_with_costs_always_long_pays_exactly_its_entry_fill() -> None:
    """fee f and slippage s: the one fill buys 1 / ((1 + s)(1 + f)) of a unit per unit of
    cash, so the episode's shaped reward is -log((1 + s)(1 + f)), all on the first step."""
    method = SPEC.factory(SPEC.config())
    _, shaped, _ = _rollout(BULL, lambda bar: BUY, EnvConfig(fee=1e-3, slippage=5e-4), method)
    np.testing.assert_allclose(shaped, [-math.log(1.0005 * 1.001), 0, 0, 0], atol=1e-7)


def test_weight_zero_leaves_the_env_reward_and_half_weight_halves_the_term() -> None:
    _, off, _ = _rollout(BULL, lambda bar: BUY, FREE, SPEC.factory(SPEC.config(benchmark_weight=0.0)))
    np.testing.assert_allclose(off, [math.log(1.1)] * 4, rtol=1e-6)
    _, half, stats = _rollout(BULL, lambda bar: BUY, FREE, SPEC.factory(SPEC.config(benchmark_weight=0.5)))
    np.testing.assert_allclose(half, [0.5 * math.log(1.1)] * 4, rtol=1e-5)
    assert stats["reward_benchmark"] == pytest.approx(0.5 * math.log(1.1), rel=1e-9)  # the amount subtracted


def test_every_shaping_coefficient_reaches_the_env_and_the_dsr_term_turns_on() -> None:
    method = SPEC.factory(SPEC.config(drawdown_penalty=0.5, turnover_penalty=0.002, dsr_weight=0.3, dsr_decay=0.05))
    env = method.env_config(EnvConfig(fee=1e-3), None)
    assert (env.drawdown_penalty, env.turnover_penalty, env.dsr_weight, env.dsr_decay) == (0.5, 0.002, 0.3, 0.05)
    assert env.fee == 1e-3  # the rest of the env is the run's
    _, _, off = _rollout(TOP, lambda bar: BUY, FREE, SPEC.factory(SPEC.config(benchmark_weight=0.0)))
    _, _, on = _rollout(TOP, lambda bar: BUY, FREE, SPEC.factory(SPEC.config(benchmark_weight=0.0, dsr_weight=1.0)))
    assert off["reward_dsr"] == 0.0 and on["reward_dsr"] != 0.0
    assert on["reward_mean"] - off["reward_mean"] == pytest.approx(on["reward_dsr"], rel=1e-5)


@pytest.mark.parametrize("field, value", [("dsr_decay", 0.0), ("dsr_decay", 1.5), ("turnover_penalty", -0.1),
                                          ("dsr_weight", math.inf), ("benchmark_weight", math.nan)])
def test_bad_coefficients_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SPEC.config(**{field: value})


def test_a_rollout_with_a_step_of_unknown_bar_is_refused() -> None:
    from himari.errors import HimariError

    method = SPEC.factory(SPEC.config())
    bars = torch.tensor([[1], [-1]], dtype=torch.long)  # the second step's bar was not recorded
    buf = SimpleNamespace(bars=bars, rewards=torch.zeros((2, 1)), stats={})
    ctx = SimpleNamespace(env_source=EnvSource(open=np.ones(3), close=np.ones(3), features=np.zeros((3, 1)),
                                               config=FREE, warmup=0))
    with pytest.raises(HimariError, match="rollout.bars"):
        method.on_rollout(buf, ctx)


def test_env_terms_come_from_the_method_and_each_term_is_in_the_stats() -> None:
    """The drawdown coefficient reaches the env: in TOP, always long falls from 1.21 to 0.9;
    by hand the drawdown grows by 1 - 1/1.21 at bar 3 and by (1 - 0.9/1.21) - (1 - 1/1.21)
    at bar 4, each charged drawdown_penalty times; the turnover term charges the one entry."""
    method = SPEC.factory(SPEC.config(drawdown_penalty=2.0, turnover_penalty=0.01, benchmark_weight=0.0))
    raw, _, stats = _rollout(TOP, lambda bar: BUY, FREE, method)
    dd3, dd4 = 1 - 1 / 1.21, 1 - 0.9 / 1.21
    expect = [math.log(1.1) - 0.01, math.log(1.1), math.log(100 / 121) - 2 * dd3, math.log(0.9) - 2 * (dd4 - dd3)]
    np.testing.assert_allclose(raw, expect, rtol=1e-5)
    assert stats["reward_turnover_penalty"] == pytest.approx(0.01 / 4)
    assert stats["reward_drawdown_penalty"] == pytest.approx(2 * dd4 / 4, rel=1e-6)
    assert stats["reward_log_return"] == pytest.approx(math.log(0.9) / 4, rel=1e-6)
    assert {"reward_dsr", "reward_benchmark", "reward_mean"} <= set(stats)


def test_run_logs_every_term_and_sets_the_env(small_prepared, tmp_path) -> None:
    from himari_tests_conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    summary = tiny_run("ppo-lstm", small_prepared, tmp_path / "run", methods="reward-shaping",
                       sets=[*TINY_ONLINE("ppo-lstm"), "reward-shaping.drawdown_penalty=0.5", "train.log_every=1"])
    assert summary["steps"] >= 1
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*records)
    for term in ("log_return", "drawdown_penalty", "turnover_penalty", "dsr", "benchmark"):
        assert f"rollout/reward_{term}" in keys, term
    step = next(r for r in records if "rollout/reward_benchmark" in r)
    # the shaped mean is the env's terms less the benchmark term (dsr and turnover are off)
    assert step["rollout/reward_mean"] == pytest.approx(
        step["rollout/reward_log_return"] - step["rollout/reward_drawdown_penalty"]
        - step["rollout/reward_benchmark"], abs=1e-6)


def test_the_reward_normalising_filter_is_refused_before_the_first_rollout(small_prepared, tmp_path,
                                                                          monkeypatch) -> None:
    """The refusal came at the first rollout, after its cost (minutes for a large flag-trader)."""
    from himari_builtin.models.ppo_lstm.model import PPOLSTM
    from himari_tests_conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    rollouts = []
    monkeypatch.setattr(PPOLSTM, "rollout", lambda self, ctx, reset: rollouts.append(reset))
    with pytest.raises(ConfigError, match="benchmark_weight.*vec-normalize.norm_reward=false"):
        tiny_run("ppo-lstm", small_prepared, tmp_path / "run", methods="vec-normalize,reward-shaping",
                 sets=[*TINY_ONLINE("ppo-lstm"), "reward-shaping.drawdown_penalty=0.1"])
    assert rollouts == []
    assert not (tmp_path / "run").exists()


def test_refused_with_a_supervised_model_and_with_shaping_given_twice(small_prepared, tmp_path) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match="reward-shaping.*baseline-mlp|baseline-mlp.*reward-shaping"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "methods": "reward-shaping"})
    with pytest.raises(ConfigError, match=r"plugins\.reward-shaping.*benchmark_weight.*-1"):
        merge_run_config(plugins=P, overrides={"model": "ppo-lstm", "methods": "reward-shaping",
                                               "plugins.reward-shaping.benchmark_weight": -1.0})
    method = SPEC.factory(SPEC.config())
    with pytest.raises(ConfigError, match=r"env\.turnover_penalty=0\.01"):
        method.env_config(EnvConfig(turnover_penalty=0.01), None)


def test_cli_flags_set_the_method(small_prepared, tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app

    run_dir = tmp_path / "cli"
    args = ["train", "ppo-lstm", "--data", str(small_prepared), "--run-dir", str(run_dir), "--epochs", "1",
            "--env-episodes", "2", "--n-envs", "4", "--rollout-steps", "16", "--turnover-penalty", "0.001",
            "--set", "ppo-lstm.episode_length=32", "--set", "ppo-lstm.n_minibatches=2", "--set", "train.progress=false",
            "--set", "reward-shaping.benchmark_weight=0"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["methods"] == ["vec-normalize", "reward-shaping"]  # added to the recipe's, not replacing them
    assert cfg["plugins"]["reward-shaping"]["turnover_penalty"] == 0.001
    assert cfg["env"]["turnover_penalty"] == 0.0  # one place only
    bad_dir = tmp_path / "bad"
    bad = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(bad_dir),
                                   "--dsr-weight", "0.1"])
    assert bad.exit_code == 2 and "reward-shaping" in bad.output and not bad_dir.exists()
