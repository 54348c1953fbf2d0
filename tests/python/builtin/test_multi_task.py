"""multi-task (K4): the targets against a hand computation (boundary masking included), the
auxiliary gradient reaching the trunk and not the action head, the trunk accessors of the
built-in models, uncertainty weighting against its formula, heads saved and restored with the
checkpoints (resume exact with cgdt and flag-trader too), a learnable return target learnt, and
bad configs refused."""

from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.plugin.api import ModelContext, TrainContext  # noqa: E402
from himari.plugin.manager import get_plugins  # noqa: E402
from himari_builtin.training.multi_task.config import MultiTaskConfig  # noqa: E402
from himari_builtin.training.multi_task.method import MultiTask  # noqa: E402
from himari_builtin.training.multi_task.targets import horizon_targets, intersect  # noqa: E402

P = get_plugins()


# ------------------------------------------------------------------------------ targets


def test_targets_equal_a_hand_computation_with_boundaries_masked() -> None:
    close = np.array([100.0, 101.0, 99.0, 102.0, 104.0, 103.0, 50.0, 52.0, 51.0, 53.0])
    ranges = [(0, 6), (6, 10)]  # two split ranges: a horizon must not cross from one to the other
    out = horizon_targets(close, ranges, horizon=2)
    L = math.log
    expected_ret = {0: L(99 / 100), 1: L(102 / 101), 2: L(104 / 99), 3: L(103 / 102), 6: L(51 / 50), 7: L(53 / 52)}
    expected_vol = {0: math.hypot(L(101 / 100), L(99 / 101)), 1: math.hypot(L(99 / 101), L(102 / 99)),
                    2: math.hypot(L(102 / 99), L(104 / 102)), 3: math.hypot(L(104 / 102), L(103 / 104)),
                    6: math.hypot(L(52 / 50), L(51 / 52)), 7: math.hypot(L(51 / 52), L(53 / 51))}
    for t in range(10):
        if t in expected_ret:
            assert out[t, 0] == pytest.approx(expected_ret[t], abs=1e-12), t
            assert out[t, 1] == pytest.approx(expected_vol[t], abs=1e-12), t
        else:  # rows 4, 5 would read row 6+ (the next range), rows 8, 9 run past the end
            assert np.isnan(out[t]).all(), t


def test_a_gap_inside_a_split_masks_the_rows_whose_horizon_crosses_it() -> None:
    close = np.exp(np.arange(10) * 0.01)
    ranges = intersect([(0, 10)], [(0, 4), (4, 10)])  # a missing bar between rows 3 and 4
    out = horizon_targets(close, ranges, horizon=2)
    defined = np.flatnonzero(np.isfinite(out[:, 0]))
    assert defined.tolist() == [0, 1, 4, 5, 6, 7]
    np.testing.assert_allclose(out[defined, 0], 0.02)
    np.testing.assert_allclose(out[defined, 1], math.sqrt(2) * 0.01)


def test_standardisation_masked_error_and_correlation_by_hand() -> None:
    from himari_builtin.training.multi_task.heads import masked_mse, pearson
    from himari_builtin.training.multi_task.targets import standardise

    targets = np.array([[1.0, np.nan], [3.0, 5.0], [np.nan, 5.0], [2.0, np.nan]])
    mean, std = standardise(targets)
    np.testing.assert_allclose(mean, [2.0, 0.0])  # column 1 is constant where defined: 0 and 1
    np.testing.assert_allclose(std, [math.sqrt(2 / 3), 1.0])  # population std of 1, 3, 2
    pred, target = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, float("nan"), 1.0, 8.0])
    valid = torch.tensor([True, False, True, False])
    assert float(masked_mse(pred, target, valid)) == pytest.approx((1 + 4) / 2)  # mean over the valid two
    assert float(masked_mse(pred, target, torch.zeros(4, dtype=torch.bool))) == 0.0
    assert math.isnan(pearson(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])))
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(0.9933992677987828)
    with pytest.raises(ValueError, match="horizon must be >= 1, got 0"):
        horizon_targets(np.ones(5), [(0, 5)], horizon=0)


# ------------------------------------------------------------------------------ fixtures


def fake_market(close: np.ndarray, features: np.ndarray, splits: dict, horizon: int = 1) -> TrainContext:
    """A TrainContext over hand-made bars (one symbol, no gaps)."""
    n = len(close)
    data = SimpleNamespace(close=close, open=close, timestamps=np.arange(n, dtype=np.int64) * 300_000_000_000,
                           metadata={"interval_seconds": 300, "labeler": {"params": {"horizon": horizon}}},
                           segments=[SimpleNamespace(start=0, stop=n, first=0)])
    labels = np.ones(n, dtype=np.int8)
    labels[::3] = 2
    labels[1::3] = 0
    return TrainContext(data=data, features=features.astype(np.float32), labels=labels, splits=splits,
                        env=ModelContext().env, device="cpu", seed=0)


def baseline(n_features: int, **overrides):
    spec = P.models().get("baseline-mlp")
    return spec.factory(spec.config(**overrides), ModelContext(n_features=n_features))


# ------------------------------------------------------------------------------ the trunk


def test_auxiliary_gradient_reaches_the_trunk_not_the_action_layer() -> None:
    rng = np.random.default_rng(0)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    ctx = fake_market(close, rng.normal(size=(n, 6)), {"train": [(0, 300)], "validation": [(300, 400)]})
    model = baseline(6, hidden_sizes=(16, 8), dropout=0.0)
    method = MultiTask(MultiTaskConfig(horizon=3))
    modules = method.model_built(model, ctx)
    assert set(modules) == {"heads"}
    batch = model.dataset(ctx, "train")[torch.arange(64)]
    terms = method.loss_terms(model, batch, ctx)
    assert set(terms) == {"return", "volatility"}
    sum(terms.values()).backward()
    first, action = model.network[0], model.network[-1]
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0  # the trunk learns
    assert action.weight.grad is None  # the action layer is not on the auxiliary path
    assert all(p.grad is not None for p in modules["heads"].parameters())


def test_baseline_trunk_leaves_batchnorm_running_statistics_alone() -> None:
    model = baseline(5, hidden_sizes=(8,))
    model.network.train()
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    h, rows = model.trunk((torch.randn(32, 5), torch.zeros(32, dtype=torch.long), torch.arange(32)))
    assert h.shape == (32, 8) and rows.tolist() == list(range(32))
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, before[k]), k


ONLINE = {"ppo-lstm": ["ppo-lstm.encoder_sizes=[16]", "ppo-lstm.lstm_hidden=8"],
          "flag-trader": ["flag-trader.n_layer=1", "flag-trader.n_head=2", "flag-trader.n_embd=16",
                          "flag-trader.context_length=4", "flag-trader.lora_rank=2", "flag-trader.head_hidden=0"]}


def set_up(model: str, data, tmp_path, sets=()):
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": model, "data": str(data)},
                           sets=["train.progress=false", "recipe=none", *sets])
    trainer = Trainer(run, plugins=P, run_dir=tmp_path / "r", console=Console(file=io.StringIO()))
    trainer._setup()
    return trainer


@pytest.mark.parametrize("model", ["ppo-lstm", "flag-trader"])
def test_online_trunks_are_what_the_actor_reads_and_rollouts_record_prepared_rows(model, small_prepared,
                                                                                   tmp_path) -> None:
    """The rows a rollout records are the prepared rows of the observations' bars (the features
    stored with each step equal the run's features at that row), and the policy head applied
    to ``trunk`` gives the model's own logits."""
    from himari_tests_conformance import skip_without_extras  # type: ignore[import-not-found]

    from himari.training.online import default_env_source

    skip_without_extras(P.models().get(model))
    trainer = set_up(model, small_prepared, tmp_path, [f"{model}.n_envs=4", f"{model}.rollout_steps=32",
                                                       f"{model}.episode_length=16", *ONLINE[model]])
    trainer.ctx.env_source = default_env_source(trainer)
    m = trainer.model
    buf = m.rollout(trainer.ctx, True)
    rows = buf.rows
    assert bool((rows >= 0).all())
    n_features = trainer.features.shape[1]
    newest = buf.obs[..., -1, :n_features] if buf.obs.dim() == 4 else buf.obs[..., :n_features]
    np.testing.assert_array_equal(newest.numpy(), trainer.features[rows.numpy()])
    batch = buf[torch.arange(4)]
    m.network.eval()
    h, r = m.trunk(batch)
    assert torch.equal(r, rows) and h.shape == (32, 4, m.trunk_size())
    if model == "ppo-lstm":
        logits, _, _ = m.network.forward_sequence(batch["obs"], batch["starts"], batch["state"])
        torch.testing.assert_close(m.network.actor(h), logits)
    else:
        logits, _ = m.network(batch["obs"].reshape(-1, *batch["obs"].shape[2:]))
        torch.testing.assert_close(m.network.policy_head(h.reshape(-1, h.shape[-1])), logits)


def test_rollout_steps_off_prepared_rows_take_no_auxiliary_loss(small_prepared, tmp_path) -> None:
    """An env source without prepared rows (a synthetic market) records -1 rows, and the
    method gives those steps no target: the auxiliary loss is exactly 0 (with a gradient path)."""
    from dataclasses import replace

    from himari.training.online import default_env_source

    trainer = set_up("ppo-lstm", small_prepared, tmp_path, ["ppo-lstm.n_envs=4", "ppo-lstm.rollout_steps=8",
                                                            "ppo-lstm.episode_length=16", *ONLINE["ppo-lstm"]],
                     )
    method = MultiTask(MultiTaskConfig())
    method.model_built(trainer.model, trainer.ctx)
    trainer.ctx.env_source = replace(default_env_source(trainer), rows=None)
    buf = trainer.model.rollout(trainer.ctx, True)
    assert bool((buf.rows == -1).all())
    terms = method.loss_terms(trainer.model, buf[torch.arange(4)], trainer.ctx)
    assert all(t.detach().item() == 0.0 and t.requires_grad for t in terms.values())


def test_validate_false_skips_the_epoch_scores(small_prepared, tmp_path) -> None:
    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    tiny_run("baseline-mlp", small_prepared, tmp_path / "r", plugins=P, methods="multi-task",
             sets=["multi-task.validate=false"])
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any("validation/sharpe" in r for r in records)
    assert not any(k.startswith("validation/multi-task/") for r in records for k in r)


@pytest.mark.parametrize("model", ["ppo-lstm", "flag-trader"])
def test_trunk_sequence_follows_the_policys_own_path(model, small_prepared, tmp_path) -> None:
    """Validation scoring of a stateful model: at each row the trunk's action head gives the
    action ``act_sequence`` takes there; the last row of each range has no decision (NaN)."""
    from himari_tests_conformance import skip_without_extras  # type: ignore[import-not-found]

    skip_without_extras(P.models().get(model))
    trainer = set_up(model, small_prepared, tmp_path, ONLINE[model])
    m, data = trainer.model, trainer.data
    ranges = [(a, min(b, a + 40)) for a, b in trainer.splits["validation"]][:1] + [(100, 130)]
    m.network.eval()
    h = m.trunk_sequence(trainer.features, data.open, data.close, ranges, trainer.env)
    actions = m.act_sequence(trainer.features, data.open, data.close, ranges, trainer.env)
    head = m.network.actor if model == "ppo-lstm" else m.network.policy_head
    ends = np.cumsum([b - a for a, b in ranges]) - 1
    assert np.isnan(h[ends]).all() and np.isfinite(np.delete(h, ends, axis=0)).all()
    with torch.no_grad():
        chosen = head(torch.from_numpy(np.delete(h, ends, axis=0))).argmax(-1).numpy()
    np.testing.assert_array_equal(chosen, np.delete(actions, ends))


def test_cgdt_trunk_is_what_the_action_head_reads(small_prepared, tmp_path) -> None:
    trainer = set_up("cgdt", small_prepared, tmp_path, ["cgdt.context_length=8", "cgdt.d_model=16",
                                                        "cgdt.n_layers=1", "cgdt.n_heads=2", "cgdt.critic_dim=8",
                                                        "cgdt.critic_layers=1", "cgdt.critic_heads=2"])
    m = trainer.model
    m.network.eval()
    obs, actions, rtg, rows = batch = trainer.train_ds[torch.arange(5)]
    h, r = m.trunk(batch)
    assert torch.equal(r, rows) and h.shape == (5, 8, 16)
    np.testing.assert_array_equal(obs[..., :trainer.features.shape[1]].numpy(), trainer.features[rows.numpy()])
    net = m.network
    logits = net.policy(rtg.float() / net.rtg_scale, net.states(obs.float()), actions.long())
    torch.testing.assert_close(net.policy.head(h), logits)


# ------------------------------------------------------------------------------ uncertainty weighting


class FixedTrunk:
    """A model whose trunk is given: h [4, 2] at rows 0..3."""

    network = torch.nn.Linear(1, 1)

    def __init__(self, h):
        self.h = h

    def trunk_size(self):
        return 2

    def trunk(self, batch):
        return self.h, torch.arange(4)


def test_uncertainty_weighting_equals_the_formula_on_hand_numbers() -> None:
    close = np.array([1.0, math.e ** 0.1, math.e ** 0.3, math.e ** 0.2, math.e ** 0.6, 1.0, 1.0, 1.0])
    ctx = fake_market(close, np.zeros((8, 1)), {"train": [(0, 8)]})
    method = MultiTask(MultiTaskConfig(horizon=1, return_weight=1.0, volatility_weight=0.5, uncertainty=True))
    model = FixedTrunk(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
    heads = method.model_built(model, ctx)["heads"]
    with torch.no_grad():
        heads.heads[0].weight.copy_(torch.tensor([[0.5, -0.5]]))
        heads.heads[0].bias.fill_(0.1)
        heads.heads[1].weight.copy_(torch.tensor([[1.0, 2.0]]))
        heads.heads[1].bias.fill_(0.0)
        heads.log_var.copy_(torch.tensor([0.2, -0.4]))
        heads.mean.copy_(torch.tensor([0.0, 0.0], dtype=torch.float64))  # hand-set scale: targets as they are
        heads.std.copy_(torch.tensor([1.0, 1.0], dtype=torch.float64))
    r = [0.1, 0.2, -0.1, 0.4]  # log returns of bars 1..4: row t's return target, |r| its volatility
    method._train_z = torch.tensor([[x, abs(x)] for x in r] + [[0.0, 0.0]] * 3 + [[math.nan, math.nan]],
                                   dtype=torch.float32)
    pred_ret = [0.6, -0.4, 0.1, 0.1]  # 0.5 h0 - 0.5 h1 + 0.1
    pred_vol = [1.0, 2.0, 3.0, 0.0]   # h0 + 2 h1
    mse_ret = sum((p - y) ** 2 for p, y in zip(pred_ret, r)) / 4
    mse_vol = sum((p - abs(y)) ** 2 for p, y in zip(pred_vol, r)) / 4
    terms = method.loss_terms(model, None, ctx)
    assert terms["return"].detach().item() == pytest.approx(1.0 * (math.exp(-0.2) * mse_ret + 0.2), rel=1e-6)
    assert terms["volatility"].detach().item() == pytest.approx(0.5 * (math.exp(0.4) * mse_vol - 0.4), rel=1e-6)
    logs = method.before_optimizer_step(model, None, ctx)
    assert logs["return_mse"] == pytest.approx(mse_ret, rel=1e-6)
    assert logs["volatility_log_var"] == pytest.approx(-0.4, rel=1e-6)


def test_uncertainty_weighting_settles_the_log_variance_at_the_log_of_the_loss() -> None:
    """d/ds (exp(-s) L + s) = 0 at s = log L: a noisier task is weighted down to 1 / L."""
    from himari_builtin.training.multi_task.heads import uncertainty_weighted

    losses = torch.tensor([0.25, 4.0])
    s = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        uncertainty_weighted(losses, s).sum().backward()
        opt.step()
    torch.testing.assert_close(s.detach(), torch.log(losses), atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------ learning


def test_a_learnable_return_target_is_learnt() -> None:
    """The next bar's log return is 0.01 x feature 0 (plus small noise): after training
    baseline-mlp with the method, the return head's validation correlation with the realised
    return is high; an untrained head's is not."""
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.normal(size=(n, 4))
    r = 0.01 * x[:, 0] + rng.normal(0, 0.001, n)  # row t's next return (bar t+1 over bar t)
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r[:-1])]))
    ctx = fake_market(close, x, {"train": [(0, 2400)], "validation": [(2400, n)]}, horizon=1)
    torch.manual_seed(0)
    model = baseline(4, hidden_sizes=(32,), dropout=0.0)
    method = MultiTask(MultiTaskConfig(volatility_weight=0.0))
    heads = method.model_built(model, ctx)["heads"]
    val = model.dataset(ctx, "validation")
    model.network.eval()
    with torch.no_grad():
        before = method.report("validation", ctx, val)["return_corr"]
    train = model.dataset(ctx, "train")
    opt = torch.optim.Adam([*model.network.parameters(), *heads.parameters()], lr=3e-3)
    model.network.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = train[torch.randint(0, len(train), (128,), generator=g)]
        loss, _ = model.loss(batch, ctx)
        loss = loss + sum(method.loss_terms(model, batch, ctx).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.network.eval()
    with torch.no_grad():
        after = method.report("validation", ctx, val)
    assert after["return_corr"] > 0.95, after
    assert abs(before) < 0.5
    assert after["return_mae"] < 0.2 * np.mean(np.abs(r))  # in the target's units (log return)
    assert after["rows"] == 599  # the last validation row's horizon runs past the data


# ------------------------------------------------------------------------------ runs


def test_heads_are_checkpointed_restored_and_validation_is_logged(small_prepared, tmp_path) -> None:
    from himari.training.assemble import load_trained
    from himari.training.checkpoint import load_checkpoint
    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    summary = tiny_run("baseline-mlp", small_prepared, tmp_path / "r", plugins=P, methods="multi-task",
                       sets=["train.epochs=2", "multi-task.uncertainty=true"])
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "validation/sharpe" in r]
    assert len(epochs) == 2
    for r in epochs:
        for key in ("return_mae", "return_corr", "volatility_mae", "volatility_corr", "rows"):
            assert np.isfinite(r[f"validation/multi-task/{key}"]), key
    assert any("train/multi-task/return_mse" in r and "train/multi-task/return_log_var" in r for r in records)
    report = summary["methods"]["multi-task"]
    assert report["horizon"] == 5 and set(report) >= {"validation", "test", "log_var"}
    saved = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")["method_modules"]
    assert {"multi-task__heads.log_var", "multi-task__heads.mean", "multi-task__heads.heads.0.weight"} <= set(saved)
    policy = load_trained(tmp_path / "r", plugins=P)
    restored = policy.method_modules.state_dict()
    for k, v in saved.items():
        assert torch.equal(restored[k].cpu(), v), k
    assert float(saved["multi-task__heads.std"][0]) > 0


def test_cql_is_refused_before_anything_runs(small_prepared, tmp_path) -> None:
    from himari.errors import ConfigError
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match="multi-task.*cql"):
        merge_run_config(plugins=P, overrides={"model": "cql", "data": str(small_prepared), "methods": "multi-task"})


@pytest.mark.parametrize("field, value", [("return_weight", -1.0), ("volatility_weight", float("nan")),
                                          ("horizon", -2), ("head_hidden", -1)])
def test_bad_config_values_are_refused_naming_the_field(field, value, small_prepared) -> None:
    from himari.errors import ConfigError
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=f"multi-task.*{field}"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "multi-task"}, sets=[f"multi-task.{field}={value}"])


def test_both_weights_zero_is_refused(small_prepared) -> None:
    from himari.errors import ConfigError
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match="both 0"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "multi-task"},
                         sets=["multi-task.return_weight=0", "multi-task.volatility_weight=0"])


def test_a_horizon_longer_than_every_train_range_is_refused_and_leaves_nothing(small_prepared, tmp_path) -> None:
    from himari.errors import ConfigError
    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    with pytest.raises(ConfigError, match="multi-task: horizon 100000"):
        tiny_run("baseline-mlp", small_prepared, tmp_path / "r", plugins=P, methods="multi-task",
                 sets=["multi-task.horizon=100000"])
    assert not (tmp_path / "r").exists()
