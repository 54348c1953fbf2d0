"""Execution rules inside the stateful models' sequential loops: the rules filter each decision
before it reaches the env, so the account the policy sees next follows the executed actions
(sequential_actions, ppo-lstm, cql, cgdt over its G targets); the confidence threshold reads the
softmax of the policy's logits (of the mean Q values for cql)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.engine import replay_actions  # noqa: E402
from himari.evaluation.execution import apply  # noqa: E402
from himari.trading import EnvConfig  # noqa: E402

from himari_tests_conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]  # noqa: E402


@dataclass(frozen=True)
class Rules:
    decision_interval: int = 1
    min_hold: int = 0
    confidence: float = 0.0


def market(n: int = 300, f: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.001, n))
    return open_, close, rng.normal(size=(n, f)).astype(np.float32)


def expected(raw, probs, rules, mode):
    """The rules applied by hand to one range's decisions (n - 1 of them; the last row takes
    none): what the model must have executed."""
    raw = np.r_[np.asarray(raw), 1]
    probs = np.r_[np.asarray(probs, dtype=np.float64), [[0.0, 1.0, 0.0]]]
    return apply(raw, probs, [(0, len(raw))], mode, rules)[:-1]


def change_gaps(actions, env):
    """Bars between consecutive position changes of actions replayed from flat."""
    pos = np.r_[0.0, np.asarray(replay_actions(np.ones(len(actions) + 1), np.ones(len(actions) + 1),
                                               np.r_[actions, 1].astype(np.int64), fee=0.0, slippage=0.0,
                                               mode=env.mode).position)]
    changes = np.flatnonzero(np.diff(pos) != 0)
    return np.diff(changes), len(changes)


def test_sequential_actions_feed_the_policy_the_executed_account() -> None:
    from himari.training.rl import sequential_actions

    open_, close, feats = market()
    rng = np.random.default_rng(1)
    seen, raws, probs = [], [], []

    def step(obs, starts):
        seen.append(obs[0].copy())
        raws.append(int(rng.integers(0, 3)))
        probs.append(rng.dirichlet(np.ones(3)))
        return np.array([raws[-1]]), probs[-1][None]

    env = EnvConfig(mode="long_short")
    rules = Rules(decision_interval=2, min_hold=5, confidence=0.4)
    ranges = [(10, 150), (160, 300)]
    acts = sequential_actions(step, feats, open_, close, ranges, env, execution=rules)
    obs = np.array(seen)
    for k, (a, b) in enumerate(ranges):
        part = slice(k * 139, (k + 1) * 139)
        mine = acts[k * 140:(k + 1) * 140]
        np.testing.assert_array_equal(mine[:-1], expected(raws[part], probs[part], rules, env.mode))
        assert mine[-1] == 1
        rep = replay_actions(open_[a:b], close[a:b], mine, fee=env.fee, slippage=env.slippage, mode=env.mode)
        np.testing.assert_array_equal(obs[part, 3:], np.asarray(rep.account)[:-1])
        gaps, n = change_gaps(mine, env)
        assert n >= 3 and gaps.min() >= 5
    assert not np.array_equal(acts[:139], np.array(raws[:139]))


PPO = [*TINY_ONLINE("ppo-lstm"), "execution.min_hold=8", "execution.confidence=0.34"]


def test_ppo_lstm_acts_under_min_hold_and_confidence(small_prepared, tmp_path) -> None:
    """A tiny ppo-lstm run with a minimum hold of 8 bars: the summary scored its actions under
    the run's rules, and (its logits replaced so that it trades) its evaluated test actions
    never change position within 8 bars, its LSTM saw the account of its executed actions, and
    its executed actions are the rules applied to its own logits."""
    from himari.data import PreparedData
    from himari.evaluation.policy import evaluate_actions
    from himari.training.assemble import load_trained
    from himari.training.config import ExecutionConfig

    s = tiny_run("ppo-lstm", small_prepared, tmp_path / "run", sets=PPO)
    assert s["execution"] == {"selected": False, "decision_interval": 1, "min_hold": 8, "confidence": 0.34}
    policy = load_trained(tmp_path / "run")
    assert policy.rules == ExecutionConfig(min_hold=8, confidence=0.34)
    data = PreparedData(small_prepared)
    (a, b), = ranges = data.split("test")
    env = policy.context.env
    counts = np.zeros(3, dtype=np.int64)
    scored = evaluate_actions(data.open, data.close, ranges, policy.actions(data, ranges, decision_counts=counts), env)
    judged = ("model_decisions", "collapsed", "dominant_action", "dominant_share")  # on the model's own decisions
    assert {k: v for k, v in s["test"]["model"].items() if k not in judged} == \
        {k: v for k, v in scored.items() if k not in judged}
    own = counts / counts.sum()
    assert [s["test"]["model"]["model_decisions"][a] for a in ("SELL", "HOLD", "BUY")] == own.tolist()
    assert s["test"]["model"]["collapsed"] == bool(own.max() > 0.9)

    net = policy.model.network
    real = net.step
    inputs, logits_seen = [], []

    def spy(x, starts, state):
        """The network's step, its logits replaced by a function of the bar's features (the
        tiny run holds throughout; this one trades)."""
        _, value, state = real(x, starts, state)
        logits = 3.0 * x[:, :3]
        inputs.append(x[0].numpy().copy())
        logits_seen.append(logits[0].float())
        return logits, value, state

    net.step = spy
    policy.execution = ExecutionConfig()  # no rules: how it trades on its own
    policy.actions(data, ranges)
    free = torch.softmax(torch.stack(logits_seen), -1).max(-1).values.numpy()
    policy.execution = ExecutionConfig(min_hold=8, confidence=float(np.quantile(free, 0.3)))
    inputs.clear()
    logits_seen.clear()
    acts = policy.actions(data, ranges)
    del net.step
    gaps, n = change_gaps(acts, env)
    assert n >= 2 and gaps.min() >= 8
    logits = torch.stack(logits_seen)
    raw = logits.argmax(-1).numpy()
    np.testing.assert_array_equal(acts[:-1], expected(raw, torch.softmax(logits, -1).numpy(), policy.rules, env.mode))
    rep = replay_actions(data.open[a:b], data.close[a:b], acts, fee=env.fee, slippage=env.slippage, mode=env.mode)
    np.testing.assert_allclose(np.array(inputs)[:, -4:], np.asarray(rep.account)[:-1], rtol=1e-6)
    raw_gaps, _ = change_gaps(raw, env)
    assert raw_gaps.min() < 8  # the rules held back changes the policy wanted


def test_cql_confidence_reads_the_softmax_of_its_mean_q_values(small_prepared) -> None:
    """cql under rules: its executed actions are the rules applied, by hand, to the arg-max and
    the softmax of the mean of its two Q heads (computed here by the torch network) at the
    account of its executed actions."""
    from himari_builtin.models.cql import CQL, CQLConfig

    from himari.plugin.api import ModelContext

    torch.manual_seed(0)
    model = CQL(CQLConfig(hidden_sizes=(8,)), ModelContext(n_features=3))
    with torch.no_grad():
        model.network.w1.mul_(4.0)  # spread the Q values: some decisions confident, some not
    open_, close, feats = market(200)
    env = EnvConfig()
    rules = Rules(min_hold=3, confidence=0.5)
    acts = model.act_sequence(feats, open_, close, [(0, 200)], env, execution=rules)
    rep = replay_actions(open_, close, acts, fee=env.fee, slippage=env.slippage, mode=env.mode)
    obs = torch.from_numpy(np.c_[feats, np.asarray(rep.account)].astype(np.float32))
    with torch.no_grad():
        q = model.network(model.network.inputs(obs)).mean(0).double()
    probs = torch.softmax(q, -1).numpy()
    raw = q.argmax(-1).numpy()
    np.testing.assert_array_equal(acts[:-1], expected(raw[:-1], probs[:-1], rules, env.mode))
    top = probs[:-1].max(1)
    acted = raw[:-1] != 1
    assert (acted & (top > 0.5)).any() and (acted & (top <= 0.5)).any()  # the threshold bit both ways
    assert acts[-1] == 1


def test_cgdt_filters_each_target_on_its_own(first_test_bars, monkeypatch) -> None:
    """cgdt's rollout over G targets under rules: each target's executed actions are the rules
    applied to its own logits (its own filter state); the action tokens of the history and the
    return-to-go tokens follow the executed actions."""
    import importlib

    from himari.plugin.api import ModelContext

    cgdt = importlib.import_module("himari_builtin.models.cgdt")
    cfg = cgdt.CGDTConfig(context_length=8, d_model=32, n_layers=2, n_heads=2, dropout=0.0, critic_dim=16,
                          critic_layers=1, critic_heads=2, gamma=1.0)
    torch.manual_seed(0)
    model = cgdt.CGDT(cfg, ModelContext(n_features=60))
    net = model.network.eval()
    with torch.no_grad():
        net.rtg_scale.fill_(2.0)
        net.rtg_bounds.copy_(torch.tensor([-1e6, 1e6]))
    seen: list = []
    real = cgdt.Decoder.logits

    def spy(self, rtg, state, prev=None):
        out = real(self, rtg, state, prev)
        seen.append((rtg.numpy().copy(), None if prev is None else prev.numpy().copy(), out.numpy().copy()))
        return out

    monkeypatch.setattr(cgdt.Decoder, "logits", spy)
    feats, open_, close = first_test_bars(150)
    env = EnvConfig(mode="long_short")
    targets = [40.0, -40.0, 0.0]
    with torch.no_grad():
        plain = cgdt.rollout_targets(net, cfg, feats, open_, close, targets, env)
    unfiltered = np.stack([s[2] for s in seen])
    top = torch.softmax(torch.from_numpy(unfiltered), -1).numpy().max(-1)[unfiltered.argmax(-1) != 1]
    threshold = float(np.quantile(top, 0.3))  # some of the unfiltered trades are below it
    rules = Rules(decision_interval=2, min_hold=6, confidence=threshold)
    seen.clear()
    with torch.no_grad():
        acts = cgdt.rollout_targets(net, cfg, feats, open_, close, targets, env, execution=rules)
    logits = np.stack([s[2] for s in seen], axis=1)  # [G, n - 1, 3]
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    for g in range(len(targets)):
        np.testing.assert_array_equal(acts[g, :-1], expected(logits[g].argmax(-1), probs[g], rules, env.mode))
        gaps, _ = change_gaps(acts[g], env)
        assert len(gaps) == 0 or gaps.min() >= 6
    assert not np.array_equal(acts, plain)
    # the action tokens are the executed actions
    prevs = np.stack([s[1] for s in seen[1:]], axis=1)
    np.testing.assert_array_equal(prevs, acts[:, :-2])
    # the return-to-go tokens follow the rewards of the executed actions
    rep = replay_actions(open_, close, acts.T.astype(np.int64), fee=env.fee, slippage=env.slippage, mode=env.mode)
    realised = np.asarray(rep.reward).T * cfg.reward_scale
    tokens = np.stack([s[0] for s in seen], axis=1) * 2.0
    want = np.array(targets)[:, None] - np.concatenate([np.zeros((3, 1)), np.cumsum(realised, axis=1)[:, :-1]], 1)
    np.testing.assert_allclose(tokens, want, rtol=1e-4, atol=1e-4)
    assert np.abs(realised).sum() > 0 and (acts != 1).sum() >= 6
    assert len({tuple(row) for row in acts}) > 1  # the targets act differently: one filter state each


def test_flag_trader_acts_under_rules_on_its_windows() -> None:
    """flag-trader under rules: its executed actions are the rules applied to its own logits, and
    the account columns of each window's newest row follow the executed actions."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig

    from himari.plugin.api import ModelContext

    torch.manual_seed(0)
    model = FlagTrader(FlagTraderConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, lora_rank=4,
                                        head_hidden=0), ModelContext(n_features=5))
    net = model.network
    open_, close, feats = market(160, 5)
    env = EnvConfig(mode="long_short")
    real = net.policy
    seen: list = []

    def spy(obs, starts, state):
        """The network's decision, its logits replaced by a function of the newest bar's
        features (the untrained network holds nearly always; this one trades)."""
        _, value, state = real(obs, starts, state)
        logits = 3.0 * obs[:, -1, :3]
        seen.append((obs[0, -1].numpy().copy(), logits[0].numpy().copy()))
        return logits, value, state

    net.policy = spy
    model.act_sequence(feats, open_, close, [(30, 160)], env)
    top = torch.softmax(torch.from_numpy(np.array([s[1] for s in seen])), -1).numpy().max(-1)
    rules = Rules(decision_interval=2, min_hold=4, confidence=float(np.quantile(top, 0.3)))
    seen.clear()
    acts = model.act_sequence(feats, open_, close, [(30, 160)], env, execution=rules)
    del net.policy
    logits = np.array([s[1] for s in seen])
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    np.testing.assert_array_equal(acts[:-1], expected(logits.argmax(-1), probs, rules, env.mode))
    rep = replay_actions(open_[30:], close[30:], acts, fee=env.fee, slippage=env.slippage, mode=env.mode)
    np.testing.assert_array_equal(np.array([s[0] for s in seen])[:, 5:], np.asarray(rep.account)[:-1])
    gaps, n = change_gaps(acts, env)
    assert n >= 3 and gaps.min() >= 4


def test_cgdt_selection_keeps_the_target_tuned_under_the_chosen_rules(small_prepared, tmp_path) -> None:
    """cgdt tunes its target return-to-go on validation under the rules in effect; after the
    rules are chosen there, best.pt holds the target tuned under the chosen ones, so himari
    backtest scores the test split exactly as the run did."""
    from himari_tests_conformance import TINY_MODEL  # type: ignore[import-not-found]

    from himari.plugin.manager import get_plugins
    from himari.training.checkpoint import load_checkpoint
    from himari.training.leaderboard import backtest

    if "cgdt" not in get_plugins().models():
        pytest.skip("cgdt is not registered")
    sets = [*TINY_MODEL["cgdt"], "cgdt.target_quantiles=[0.1, 0.5, 0.9]", "execution.select=true",
            "execution.grid_decision_interval=[1, 12]", "execution.grid_min_hold=[0]",
            "execution.grid_confidence=[0.0, 0.4]"]
    s = tiny_run("cgdt", small_prepared, tmp_path / "run", sets=sets)
    assert s["execution"]["selected"] and len(s["execution"]["grid"]) == 4
    entries, _ = backtest([str(tmp_path / "run")], split="test")
    assert entries[0].metrics == s["test"]["model"]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", model="cgdt")["network"]
    assert float(state["target_rtg"]) in state["rtg_grid"].tolist()
