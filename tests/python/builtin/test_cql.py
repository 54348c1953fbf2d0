"""The cql model plugin: its pieces against hand computations, and its sequential acting."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.plugin.api import ModelContext  # noqa: E402
from himari.training.loop import host_floats  # noqa: E402
from himari_builtin.models.cql import (  # noqa: E402
    CQL,
    CQLConfig,
    conservative_gap,
    parameter_count,
    polyak_,
    td_targets,
)

from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]  # noqa: E402


def _lse(xs: list[float]) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_conservative_gap_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.5, 0.25, 4.0]])
    a = torch.tensor([0, 2, 1])
    got = conservative_gap(q, a).tolist()
    want = [_lse([1, 2, 3]) - 1.0, math.log(3.0), _lse([-1.5, 0.25, 4.0]) - 0.25]
    assert got == pytest.approx(want, abs=1e-6)
    assert want[0] == pytest.approx(2.4076059644, abs=1e-9)


def test_loss_logs_the_gap_and_alpha_weights_it() -> None:
    cfg = CQLConfig(hidden_sizes=(8,), alpha=0.5)
    model = CQL(cfg, ModelContext(n_features=60))
    g = torch.Generator().manual_seed(0)
    s, s2 = torch.randn(5, 64, generator=g), torch.randn(5, 64, generator=g)
    a, r, d = torch.tensor([0, 1, 2, 1, 0]), torch.randn(5, generator=g), torch.zeros(5)
    model.network.eval()
    with torch.no_grad():
        loss, logs = model.loss((s, a, r, s2, d), None)
        logs = host_floats(logs)  # the values the Trainer logs
        q = model.network(model.network.inputs(s))
    gaps = []
    for head in range(2):
        rows = [_lse(q[head, i].tolist()) - float(q[head, i, a[i]]) for i in range(5)]
        gaps.append(sum(rows) / 5)
    assert logs["cql_gap"] == pytest.approx(sum(gaps) / 2, abs=1e-5)
    assert float(loss) == pytest.approx(logs["td_loss"] + 0.5 * sum(gaps), abs=1e-4)
    assert logs["alpha"] == pytest.approx(0.5)


def test_td_loss_of_each_head_and_the_lagrangian_alpha_gradient_by_hand() -> None:
    """The TD loss is each head's own squared error against the shared min target, summed; with
    ``lagrangian`` the loss's gradient in log_alpha is ``-alpha (gap - target_gap)`` (alpha grows
    while the gap is above its target), and the Q heads see ``alpha`` times both gaps."""
    g = torch.Generator().manual_seed(1)
    s, s2 = torch.randn(6, 64, generator=g), torch.randn(6, 64, generator=g)
    a, r, d = torch.tensor([0, 1, 2, 1, 0, 2]), torch.randn(6, generator=g), torch.tensor([0., 0., 1., 0., 0., 0.])
    for target_gap in (0.01, 50.0):  # the gap is above the first and below the second
        cfg = CQLConfig(hidden_sizes=(8,), alpha=0.7, lagrangian=True, target_gap=target_gap, gamma=0.9)
        torch.manual_seed(0)
        model = CQL(cfg, ModelContext(n_features=60))
        net = model.network.eval()
        with torch.no_grad():  # targets apart from the online weights, so the heads' errors differ
            for tw, _ in net.layers(True):
                tw.mul_(1.5)
        loss, logs = model.loss((s, a, r, s2, d), None)
        with torch.no_grad():
            q, tq = net(net.inputs(s)), net.target_forward(net.inputs(s2))
            y = r + 0.9 * (1 - d) * torch.minimum(tq[0], tq[1]).max(dim=-1).values
            td = sum(((q[h].gather(1, a[:, None])[:, 0] - y) ** 2).mean() for h in range(2))
        assert float(logs["td_loss"]) == pytest.approx(float(td), rel=1e-5)
        assert float((q[0].gather(1, a[:, None])[:, 0] - y).pow(2).mean()) != pytest.approx(
            float((q[1].gather(1, a[:, None])[:, 0] - y).pow(2).mean()), rel=1e-3)
        loss.backward()
        gap = float(logs["cql_gap"])
        assert net.log_alpha.grad.item() == pytest.approx(-0.7 * (gap - target_gap), rel=1e-5)
        assert (net.log_alpha.grad.item() < 0) == (gap > target_gap)


def test_polyak_update() -> None:
    t, s = torch.zeros(3), torch.ones(3)
    polyak_([t], [s], 0.1)
    assert t.tolist() == pytest.approx([0.1] * 3)
    polyak_([t], [s], 0.1)
    assert t.tolist() == pytest.approx([0.19] * 3)

    net = CQL(CQLConfig(hidden_sizes=(4,), tau=0.25), ModelContext()).network
    assert torch.equal(net.target_w0, net.w0)  # targets start as copies
    before = net.target_w1.clone()
    with torch.no_grad():
        net.w1.add_(1.0)
    net.polyak(0.25)
    assert torch.allclose(net.target_w1, before + 0.25)
    assert not net.target_w1.requires_grad and "target_w1" not in dict(net.named_parameters())


def test_polyak_runs_only_in_training_steps() -> None:
    model = CQL(CQLConfig(hidden_sizes=(4,), tau=0.5), ModelContext())
    net = model.network
    with torch.no_grad():
        net.w0.add_(1.0)
    batch = (torch.zeros(2, 64), torch.tensor([0, 1]), torch.zeros(2), torch.zeros(2, 64), torch.zeros(2))
    before = net.target_w0.clone()
    net.eval()
    with torch.no_grad():
        model.loss(batch, None)  # validation loss: no update
    assert torch.equal(net.target_w0, before)
    net.train()
    model.loss(batch, None)
    assert torch.allclose(net.target_w0, before + 0.5)


def test_td_targets_min_and_double_dqn() -> None:
    t1 = torch.tensor([[1.0, 5.0, 2.0], [0.0, 1.0, 2.0]])
    t2 = torch.tensor([[3.0, 4.0, 0.0], [2.0, 1.0, 0.0]])
    r = torch.tensor([0.5, -1.0])
    done = torch.tensor([0.0, 1.0])
    y1, y2 = td_targets(r, done, 0.9, (t1, t2), None, "min")
    # min over heads: [1, 4, 0] -> max 4; the second row is terminal
    assert y1.tolist() == pytest.approx([0.5 + 0.9 * 4.0, -1.0])
    assert torch.equal(y1, y2)
    o1 = torch.tensor([[0.0, 0.0, 1.0], [9.0, 0.0, 0.0]])
    o2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 9.0, 0.0]])
    y1, y2 = td_targets(r, torch.zeros(2), 0.9, (t1, t2), (o1, o2), "double-dqn")
    assert y1.tolist() == pytest.approx([0.5 + 0.9 * 2.0, -1.0 + 0.9 * 0.0])  # Q'_1 at argmax Q_1
    assert y2.tolist() == pytest.approx([0.5 + 0.9 * 3.0, -1.0 + 0.9 * 1.0])  # Q'_2 at argmax Q_2
    with pytest.raises(ValueError):
        td_targets(r, done, 0.9, (t1, t2), None, "double-dqn")


@pytest.mark.parametrize("lagrangian", [False, True])
def test_parameter_count(lagrangian: bool) -> None:
    cfg = CQLConfig(lagrangian=lagrangian)
    net = CQL(cfg, ModelContext(n_features=60)).network
    total = sum(p.numel() for p in net.parameters())
    assert parameter_count(cfg, 60) == (total, total)
    assert abs(total - 116_995) / 116_995 < 0.05
    assert total == 117_186 + int(lagrangian)


def test_act_feeds_back_its_own_position(small_prepared) -> None:
    """A Q-network that prefers BUY when flat and SELL when long alternates: the account state
    act_sequence feeds the network follows its own earlier actions, each range from flat."""
    from himari.data import PreparedData
    from himari.trading import EnvConfig

    model = CQL(CQLConfig(hidden_sizes=(1,)), ModelContext(n_features=60))
    net = model.network
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.w0[:, 60, 0] = 1.0  # hidden unit = relu(position)
        net.w1[:, 0, :] = torch.tensor([1.0, 0.0, -1.0])  # SELL up, BUY down when long
        net.b1[:, 0, :] = torch.tensor([0.0, -1.0, 0.5])
    data = PreparedData(small_prepared)
    (a, _), = data.split("test")
    feats, o, c = np.asarray(data.features), np.asarray(data.open), np.asarray(data.close)
    acts = model.act_sequence(feats, o, c, [(a, a + 10)], EnvConfig())
    assert acts.tolist() == [2, 0, 2, 0, 2, 0, 2, 0, 2, 1]  # the last row of a range takes no decision
    acts = model.act_sequence(feats, o, c, [(a, a + 4), (a + 5, a + 9)], EnvConfig())
    assert acts.tolist() == [2, 0, 2, 1, 2, 0, 2, 1]
    with pytest.raises(Exception, match="act_sequence"):
        model.act(feats, np.arange(a, a + 3))


def test_decisions_counted_under_rules_exclude_each_ranges_last_row(small_prepared) -> None:
    """Under execution rules the decisions cql counts (the action mix judged for collapse) are
    the rows that decide: a range of 10 rows decides 9, two of 4 decide 3 each, as for every
    other policy (the stateless filter and the online models never count a range's last row).
    Catches: stepping the filter on the last row too, one phantom decision per range."""
    from types import SimpleNamespace

    from himari.data import PreparedData
    from himari.evaluation.execution import model_actions
    from himari.trading import EnvConfig

    model = CQL(CQLConfig(hidden_sizes=(1,)), ModelContext(n_features=60))
    with torch.no_grad():
        for p in model.network.parameters():
            p.zero_()
        model.network.b1[:, 0, :] = torch.tensor([0.0, 0.0, 1.0])  # always BUY
    data = PreparedData(small_prepared)
    (a, _), = data.split("test")
    feats, o, c = np.asarray(data.features), np.asarray(data.open), np.asarray(data.close)
    rules = SimpleNamespace(decision_interval=1, min_hold=3, confidence=0.0)
    for ranges, decided in (([(a, a + 10)], 9), ([(a, a + 4), (a + 5, a + 9)], 6)):
        counts = np.zeros(3, dtype=np.int64)
        acts = model_actions(model, feats, o, c, ranges, EnvConfig(), rules, decision_counts=counts)
        assert counts.tolist() == [0, 0, decided]
        assert acts[-1] == 1 and len(acts) == decided + len(ranges)


def test_training_is_deterministic(small_prepared, tmp_path) -> None:
    from himari.training.checkpoint import load_checkpoint

    sets = ["cql.hidden_sizes=[16, 16]", "cql.target=double-dqn", "cql.lagrangian=true"]
    s1 = tiny_run("cql", small_prepared, tmp_path / "a", sets=sets)
    s2 = tiny_run("cql", small_prepared, tmp_path / "b", sets=sets)
    assert s1["test"]["model"] == s2["test"]["model"]
    w1 = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt", model="cql")["network"]
    w2 = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", model="cql")["network"]
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert any("train/td_loss" in x and "train/cql_gap" in x and "train/q_data" in x for x in lines)


def test_states_are_the_runs_features_and_rewards_the_runs_shaping(small_prepared) -> None:
    """The transitions carry the run's (preprocessed) features as they are, and rewards from the
    env's reward code with the run's costs and shaping, times reward_scale."""
    from himari.data import PreparedData
    from himari.engine import replay_actions
    from himari.plugin.api import TrainContext
    from himari.trading import EnvConfig

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    feats = np.random.default_rng(0).normal(size=np.asarray(data.features).shape).astype(np.float32)
    env = EnvConfig(fee=2e-3, turnover_penalty=0.01, drawdown_penalty=0.5)
    ctx = TrainContext(data=data, features=feats, labels=np.asarray(data.labels), splits=splits, env=env)
    model = CQL(CQLConfig(epsilon=0.0, reward_scale=10.0), ModelContext(env=env))
    ds = model.dataset(ctx, "train")
    (a, b), = splits["train"]
    s, act, r, s2, done = ds[torch.arange(0, 50)]
    np.testing.assert_array_equal(s[:, :60].numpy(), feats[a:a + 50])
    np.testing.assert_array_equal(s2[:, :60].numpy(), feats[a + 1:a + 51])
    labels = np.asarray(data.labels)[a:b]
    behaviour = np.where(labels >= 0, labels, 1).astype(np.int8)
    ref = replay_actions(np.asarray(data.open[a:b]), np.asarray(data.close[a:b]), behaviour, fee=2e-3,
                         slippage=env.slippage, reward=env.reward())
    np.testing.assert_allclose(r.numpy(), 10.0 * np.asarray(ref.reward[:50], dtype=np.float32), rtol=1e-6)
    np.testing.assert_array_equal(act.numpy(), behaviour[:50])


def test_benchmark_weight_subtracts_holding_the_asset_from_each_reward(small_prepared) -> None:
    """With ``benchmark_weight`` 1 each reward is the plain one less ``log(close[t+1] / close[t])``
    (times reward_scale): the excess over holding the asset over the same step."""
    from himari.data import PreparedData
    from himari.plugin.api import TrainContext
    from himari.trading import EnvConfig

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    feats = np.asarray(data.features, dtype=np.float32)
    ctx = TrainContext(data=data, features=feats, labels=np.asarray(data.labels), splits=splits, env=EnvConfig())
    (a, b), = splits["train"]
    steps = torch.arange(0, b - a - 1)
    plain = CQL(CQLConfig(), ModelContext()).dataset(ctx, "train")[steps][2].numpy().astype(np.float64)
    excess = CQL(CQLConfig(benchmark_weight=1.0), ModelContext()).dataset(ctx, "train")[steps][2].numpy()
    close = np.asarray(data.close[a:b], dtype=np.float64)
    np.testing.assert_allclose(plain - excess, 100.0 * np.log(close[1:] / close[:-1]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="benchmark_weight"):
        CQLConfig(benchmark_weight=float("nan"))


def test_the_default_recipe_decides_hourly(small_prepared, tmp_path) -> None:
    """``himari train cql`` with no options decides every 12 bars with the model's own rewards,
    ``--set recipe=none`` every bar; the run's config records which, and a user's own
    ``execution.decision_interval`` wins over the recipe's."""
    import yaml
    from typer.testing import CliRunner

    from himari.cli import app

    for extra, want in (((), 12), (("--set", "recipe=none"), 1), (("--set", "execution.decision_interval=3"), 3)):
        run_dir = tmp_path / f"run-{len(extra)}-{want}"
        res = CliRunner().invoke(app, ["train", "cql", "--data", str(small_prepared), "--run-dir", str(run_dir),
                                       "--epochs", "1", "--set", "train.max_steps_per_epoch=2", *extra])
        assert res.exit_code == 0, res.output
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["execution"]["decision_interval"] == want
        assert config["plugins"]["cql"]["benchmark_weight"] == 0.0
