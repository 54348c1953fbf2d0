"""maml (K2) on the online-RL models: task rollouts confined to their window, query rollouts after
the support and its embargo and acting with the adapted weights, the first-order meta-gradient and
Reptile against a hand-derived PPO gradient, second order refused, resume equality for ppo-lstm
and flag-trader, and ``--adapt-bars`` adapting on rollouts over the adaptation bars only."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari_builtin.training.maml import MAML, MAMLConfig
from himari_builtin.training.maml.online import task_rollout
from himari_builtin.training.maml.tasks import Task
from himari_tests_conformance import TINY_ONLINE, check_training_method, tiny_run  # type: ignore[import-not-found]

from himari.errors import ConfigError
from himari.plugin.api import (
    ModelContext,
    PPOConfig,
    RolloutBuffer,
    TrainContext,
    ppo_loss,
)
from himari.plugin.manager import get_plugins
from himari.trading import EnvConfig

P = get_plugins()
MAML_SETS = ["maml.window=100", "maml.support=60"]

# ------------------------------------------------------- a softmax policy whose PPO gradient is known
#
# logits = W x (W: 3 x D), no value loss, no entropy bonus, no advantage normalisation, so the PPO
# loss of a batch is  L = mean_i max(-A_i r_i, -A_i clip(r_i)),  r_i = pi_W(a_i | x_i) / pi_old(a_i | x_i).
# Where the clip is inactive,  dL/dW = -mean_i A_i r_i (e_{a_i} - p_W(x_i)) x_i^T  (p: the softmax).
# A rollout collected by weights W_c stores log pi_{W_c}(a | x) as the old log-probabilities, so
# at W = W_c every ratio is 1.

D, T, N = 3, 4, 2
CFG = PPOConfig(clip_range=0.2, clip_range_vf=0.0, ent_coef=0.0, vf_coef=0.0, normalize_advantage=False)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def window_data(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A task window's observations, actions and advantages (fixed by its first bar)."""
    rng = np.random.default_rng(start)
    return (rng.normal(size=(T, N, D)), rng.integers(0, 3, size=(T, N)), rng.normal(size=(T, N)))


def ppo_grad(w: np.ndarray, w_old: np.ndarray, start: int) -> np.ndarray:
    """dL/dW at ``w`` on the window's data collected by ``w_old`` (clip inactive: checked)."""
    x, a, adv = window_data(start)
    x, a, adv = x.reshape(-1, D), a.reshape(-1), adv.reshape(-1)
    p, p_old = softmax(x @ w.T), softmax(x @ w_old.T)
    ratio = p[np.arange(len(a)), a] / p_old[np.arange(len(a)), a]
    assert np.all(np.abs(ratio - 1) < CFG.clip_range)
    onehot = np.eye(3)[a]
    return -np.mean((adv * ratio)[:, None, None] * (onehot - p)[:, :, None] * x[:, None, :], axis=0)


class SoftmaxPolicy:
    """An online-RL model in miniature: ``task_rollout`` returns the window's fixed data with the
    log-probabilities of the weights it is collected with, and records each rollout."""

    paradigm = "online-rl"

    def __init__(self, w: np.ndarray) -> None:
        self.network = torch.nn.Linear(D, 3, bias=False).double()
        with torch.no_grad():
            self.network.weight.copy_(torch.from_numpy(w))
        self.collected: list[tuple[tuple[int, int], np.ndarray]] = []

    def rollout(self, ctx, reset):  # never called here: marks the model as online RL
        raise AssertionError

    def task_rollout(self, ctx):
        rows = ctx.env_source.rows
        x, a, adv = window_data(int(rows[0]))
        w = self.network.weight.detach().numpy().copy()
        self.collected.append(((int(rows[0]), int(rows[-1]) + 1), w))
        buf = RolloutBuffer(T, N, D)
        buf.obs = torch.from_numpy(x)
        buf.actions.copy_(torch.from_numpy(a))
        buf.advantages = torch.from_numpy(adv)
        logp = np.log(softmax(x @ w.T))
        buf.logprobs = torch.from_numpy(np.take_along_axis(logp, a[..., None], -1)[..., 0])
        buf.values = torch.zeros(T, N, dtype=torch.float64)
        buf.returns = torch.zeros(T, N, dtype=torch.float64)
        return buf

    def loss(self, batch, ctx):
        logits = self.network(batch["obs"])
        return ppo_loss(logits, torch.zeros_like(batch["values"]), batch, CFG)


THETA = np.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.5], [-0.1, 0.2, 0.3]])
TASK = Task(support_start=10, support_end=30, query_start=36, query_end=50, regime=0)


def _method(mode: str, steps: int, alpha: float = 0.05) -> tuple[MAML, SoftmaxPolicy, TrainContext]:
    n = 100
    ctx = TrainContext(data=SimpleNamespace(open=np.ones(n), close=np.ones(n)), features=np.zeros((n, D), np.float32),
                       labels=np.zeros(n), splits={}, env=EnvConfig(), seed=0)
    model = SoftmaxPolicy(THETA)
    method = MAML(MAMLConfig(mode=mode, inner_steps=steps, inner_lr=alpha, tasks_per_step=1))
    method.tasks, method._model = [TASK], model
    return method, model, ctx


def test_first_order_meta_gradient_is_the_query_gradient_at_the_adapted_weights() -> None:
    """phi = theta - alpha dL_support(theta); the query rollout is collected by phi (so its ratios
    are 1 at phi) and the meta-gradient is dL_query(phi): pinned against the formula in NumPy."""
    alpha = 0.05
    method, model, ctx = _method("first-order", steps=1, alpha=alpha)
    method.on_rollout(None, ctx)
    phi = THETA - alpha * ppo_grad(THETA, THETA, TASK.support_start)
    (support_window, w_support), (query_window, w_query) = model.collected
    assert support_window == (10, 30) and query_window == (36, 50)
    np.testing.assert_allclose(w_support, THETA, atol=0)
    np.testing.assert_allclose(w_query, phi, atol=1e-12)  # the query acts with the adapted weights
    np.testing.assert_array_equal(model.network.weight.detach().numpy(), THETA)  # ... and theta is back
    model.network.weight.grad = torch.full_like(model.network.weight, 99.0)
    logs = method.before_optimizer_step(model, None, ctx)
    want = ppo_grad(phi, phi, TASK.query_start)
    np.testing.assert_allclose(model.network.weight.grad.numpy(), want, rtol=1e-5, atol=1e-7)  # ppo_loss works in float32
    assert not np.allclose(want, ppo_grad(THETA, THETA, TASK.query_start), atol=1e-4)  # theta's would differ
    assert set(logs) == {"support_loss", "query_loss", "regimes"}
    assert method.state_dict() == {"meta_steps": 1, "cycles": 1}


def test_later_steps_of_a_cycle_reuse_its_rollouts_with_ppo_ratios() -> None:
    """After the weights move, the same cycle's rollouts are reused: phi is recomputed from the
    new theta (the support's old log-probabilities are theta_0's) and the query gradient carries
    the ratio pi_phi / pi_phi0, as PPO reuses a rollout."""
    alpha = 0.05
    method, model, ctx = _method("first-order", steps=1, alpha=alpha)
    method.on_rollout(None, ctx)
    phi0 = THETA - alpha * ppo_grad(THETA, THETA, TASK.support_start)
    theta1 = THETA + 0.02
    with torch.no_grad():
        model.network.weight.copy_(torch.from_numpy(theta1))
    method.before_optimizer_step(model, None, ctx)
    phi1 = theta1 - alpha * ppo_grad(theta1, THETA, TASK.support_start)
    np.testing.assert_allclose(model.network.weight.grad.numpy(), ppo_grad(phi1, phi0, TASK.query_start),
                               rtol=1e-5, atol=1e-7)  # ppo_loss works in float32
    assert len(model.collected) == 2  # no new rollout inside the cycle


def test_reptile_online_is_theta_minus_phi_over_alpha_k_without_a_query_rollout() -> None:
    alpha, k = 0.05, 2
    method, model, ctx = _method("reptile", steps=k, alpha=alpha)
    method.on_rollout(None, ctx)
    assert [w for w, _ in model.collected] == [(10, 30)]
    phi1 = THETA - alpha * ppo_grad(THETA, THETA, TASK.support_start)
    phi2 = phi1 - alpha * ppo_grad(phi1, THETA, TASK.support_start)
    method.before_optimizer_step(model, None, ctx)
    np.testing.assert_allclose(model.network.weight.grad.numpy(), (THETA - phi2) / (alpha * k), rtol=1e-5,
                               atol=1e-7)


def test_each_cycle_samples_its_tasks_and_seeds_from_the_cycle() -> None:
    """Cycle c's tasks come from (seed, c) and its envs from (seed, c, task): a resumed run that
    restores ``cycles`` collects the same task rollouts."""
    seeds = []

    class Spy(SoftmaxPolicy):
        def task_rollout(self, ctx):
            seeds.append(ctx.seed)
            return super().task_rollout(ctx)

    method, _, ctx = _method("first-order", steps=1)
    method._model = Spy(THETA)
    for _ in range(3):
        method.on_rollout(None, ctx)
    again, _, _ = _method("first-order", steps=1)
    again._model = Spy(THETA)
    again.load_state_dict({"meta_steps": 0, "cycles": 2})
    again.on_rollout(None, ctx)
    assert seeds[6:8] == seeds[4:6] and len(set(seeds[:6])) == 6


# ------------------------------------------------------------------- the real models' task rollouts


def _ppo_lstm() -> object:
    from himari_builtin.models.ppo_lstm import PPOLSTM, PPOLSTMConfig

    torch.manual_seed(0)
    return PPOLSTM(PPOLSTMConfig(n_envs=4, n_minibatches=2, rollout_steps=16, episode_length=64,
                                 encoder_sizes=(16,), lstm_hidden=16), ModelContext(n_features=60))


def _flag_trader() -> object:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig

    torch.manual_seed(0)
    return FlagTrader(FlagTraderConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, lora_rank=4,
                                       head_hidden=16, n_envs=4, n_minibatches=2, rollout_steps=16,
                                       episode_length=16), ModelContext(n_features=60))


def _context(small_prepared: Path, **changes) -> TrainContext:
    from himari.data import PreparedData

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    view = SimpleNamespace(open=np.array(data.open, dtype=np.float64), close=np.array(data.close, dtype=np.float64),
                           lookahead=data.lookahead)
    return TrainContext(data=view, features=np.array(data.features, dtype=np.float32), labels=np.asarray(data.labels),
                        **{"splits": splits, "env": EnvConfig(), "seed": 0, **changes})


@pytest.mark.parametrize("build, window", [(_ppo_lstm, 1), (_flag_trader, 16)], ids=["ppo-lstm", "flag-trader"])
def test_a_rollout_env_over_a_window_never_reads_bars_outside_it(build, window, small_prepared) -> None:
    """Rewriting every bar outside [a, b) (prices and features) leaves a task rollout unchanged,
    and its decisions (with their observation windows) lie inside [a, b - 1). The window is short
    enough for the 16-step rollout to run episodes through its end (the last decision is at bar
    b - 2, filled at b - 1), so a market reaching past b would be read."""
    model = build()
    ctx = _context(small_prepared)
    a = 1000
    b = a + window + 11
    moved = _context(small_prepared)
    rng = np.random.default_rng(0)
    outside = np.r_[0:a, b:len(moved.features)]
    moved.features[outside] = rng.normal(size=(len(outside), moved.features.shape[1])).astype(np.float32) * 5
    scale = np.exp(rng.normal(0, 0.1, len(outside)))
    moved.data.open[outside] *= scale
    moved.data.close[outside] *= scale
    bufs = []
    for c in (ctx, moved):
        torch.manual_seed(1)
        bufs.append(task_rollout(model, c, a, b, seed=7))
    for field in ("obs", "rewards", "actions", "logprobs", "values", "bars", "rows"):
        assert torch.equal(getattr(bufs[0], field), getattr(bufs[1], field)), field
    rows = bufs[0].rows
    assert int(rows.min()) >= a + window - 1 and int(rows.max()) == b - 2
    assert float(bufs[0].rewards.abs().sum()) > 0  # it traded: prices were read


def test_query_rollouts_start_after_the_support_and_its_embargo(small_prepared) -> None:
    """On the prepared data a run trains on: each cycle's support rollout runs on the task's
    support bars, its query rollout on bars that all come after the support's last bar plus the
    embargo (>= the labels' lookahead), inside one train range."""
    model = _ppo_lstm()
    seen = []
    inner = model.task_rollout

    def spy(ctx):
        buf = inner(ctx)
        seen.append((ctx.env_source.rows, buf.rows.clone()))
        return buf

    model.task_rollout = spy
    ctx = _context(small_prepared)
    method = MAML(MAMLConfig(window=100, support=60, tasks_per_step=3))
    method.model_built(model, ctx)
    lookahead = int(ctx.data.lookahead)
    assert lookahead >= 1 and method.tasks
    for _ in range(3):
        method.on_rollout(None, ctx)
        assert len(seen) == 6
        for (s_rows, s_buf), (q_rows, q_buf) in zip(seen[0::2], seen[1::2]):
            support_last = int(s_rows[-1])
            assert len(s_rows) == 60 and len(q_rows) == 100 - 60 - lookahead
            assert int(q_rows[0]) > support_last + lookahead and int(q_buf.min()) > support_last + lookahead
            assert int(s_buf.max()) <= support_last
            assert any(a <= int(s_rows[0]) and int(q_rows[-1]) < b for a, b in ctx.splits["train"])
        seen.clear()


def test_a_window_too_short_for_the_observations_is_a_clear_error(small_prepared) -> None:
    model = _ppo_lstm()
    with pytest.raises(ConfigError, match="maml: a task's 2 bars are too short for the model's rollouts"):
        task_rollout(model, _context(small_prepared), 100, 102, seed=0)


def test_second_order_is_refused_for_online_models(small_prepared, tmp_path) -> None:
    with pytest.raises(ConfigError, match="second-order is not available for online-RL models"):
        tiny_run("ppo-lstm", small_prepared, tmp_path / "r", methods="maml",
                 sets=[*TINY_ONLINE("ppo-lstm"), *MAML_SETS, "maml.mode=second-order"])
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------- in the run


@pytest.mark.parametrize("mode", ["first-order", "reptile"])
def test_ppo_lstm_with_maml_resumes_exactly(mode, small_prepared, tmp_path) -> None:
    check_training_method("maml", "ppo-lstm", small_prepared, tmp_path, plugins=P,
                          extra_sets=[*MAML_SETS, f"maml.mode={mode}", "maml.tasks_per_step=2"])


def test_flag_trader_with_maml_resumes_exactly(small_prepared, tmp_path) -> None:
    check_training_method("maml", "flag-trader", small_prepared, tmp_path, plugins=P,
                          extra_sets=[*MAML_SETS, "maml.tasks_per_step=2"])


def test_adapt_takes_k_ppo_steps_on_a_rollout_over_the_adaptation_bars_only(small_prepared) -> None:
    """``adapt`` on an online-RL model: one rollout over ctx.splits["adapt_bars"] exactly, then
    the weights are theta - alpha dL(rollout) (k = 1), L the mean of the PPO losses of the model's
    two minibatches of consecutive envs, pinned by autograd on a copy."""
    model = _ppo_lstm()
    theta = copy.deepcopy(model)
    captured = []
    inner = model.task_rollout

    def spy(ctx):
        captured.append((ctx.env_source.rows, inner(ctx)))
        return captured[-1][1]

    model.task_rollout = spy
    ctx = _context(small_prepared, splits={"adapt": [(2000, 2094)], "adapt_bars": [(2000, 2100)]})
    MAML(MAMLConfig(inner_steps=1, inner_lr=0.5)).adapt(model, ctx)
    (rows, buf), = captured
    np.testing.assert_array_equal(rows, np.arange(2000, 2100))
    theta.network.train()
    loss = (theta.loss(buf[torch.arange(0, 2)], ctx)[0] + theta.loss(buf[torch.arange(2, 4)], ctx)[0]) / 2
    params = [p for p in theta.network.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    for (name, p), g, p0 in zip(model.network.named_parameters(), grads, params):
        torch.testing.assert_close(p.detach(), p0.detach() - 0.5 * g, rtol=1e-5, atol=1e-6, msg=name)
    assert any(float(g.abs().max()) > 0 for g in grads)


def test_backtest_adapt_bars_scores_an_online_maml_run_adapted_and_not(small_prepared, tmp_path) -> None:
    """``himari backtest RUN --adapt-bars N`` on a ppo-lstm maml run: both the unadapted run and
    its adapted copy act on the bars after the first N from a flat account; the adapted copy acts
    otherwise, and the trained weights are back afterwards."""
    from himari.data import PreparedData
    from himari.training.assemble import load_trained
    from himari.training.leaderboard import backtest

    run_dir = tmp_path / "run"
    tiny_run("ppo-lstm", small_prepared, run_dir, methods="maml",
             sets=[*TINY_ONLINE("ppo-lstm"), *MAML_SETS, "maml.inner_lr=5.0"])
    n = 300
    data = PreparedData(small_prepared)
    (a, b), = data.split("test")
    unadapted = load_trained(run_dir, plugins=P).actions(data, [(a + n, b)])
    entries, context = backtest([str(run_dir)], split="test", adapt_bars=n)
    by_name = {e.name: e for e in entries}
    np.testing.assert_array_equal(by_name[str(run_dir)].actions, unadapted)
    adapted = by_name[f"{run_dir} adapted"].actions
    assert len(adapted) == b - a - n and context["adapted_on"] == [[a, a + n]]
    assert not np.array_equal(adapted, unadapted)
    again, _ = backtest([str(run_dir)], split="test", adapt_bars=n)  # the same adaptation again: seeded
    np.testing.assert_array_equal(next(e for e in again if e.name.endswith(" adapted")).actions, adapted)
    # it adapted on rollouts, reading no label: no label rows are claimed, and the labels' lookahead
    # does not bound N (it was refused at N <= lookahead)
    assert "adapt_label_rows" not in context
    short, context = backtest([str(run_dir)], split="test", adapt_bars=int(data.lookahead))
    assert context["adapted_on"] == [[a, a + int(data.lookahead)]]


def test_a_task_loss_in_parts_is_the_mean_of_the_parts() -> None:
    """Parts (an online task rollout in the model's minibatches) are differentiated one by one and
    averaged: for a loss that is a mean over examples, the same loss and gradient as the whole."""
    from himari_builtin.training.maml.steps import Parts, loss_and_grads

    w = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [-2.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 2.0, -1.0], dtype=torch.float64)

    def loss_of(params, batch):
        return 0.5 * ((batch[0] @ params["w"] - batch[1]) ** 2).mean()

    whole_loss, (whole_grad,) = loss_and_grads(loss_of, {"w": w}, (x, y), create_graph=False)
    part_loss, (part_grad,) = loss_and_grads(loss_of, {"w": w}, Parts([(x[:2], y[:2]), (x[2:], y[2:])]), False)
    r = x.numpy() @ w.detach().numpy() - y.numpy()
    np.testing.assert_allclose(whole_grad.numpy(), (r[:, None] * x.numpy()).mean(0), rtol=1e-12)
    np.testing.assert_allclose(part_grad.numpy(), whole_grad.numpy(), rtol=1e-12)
    assert float(part_loss) == pytest.approx(float(whole_loss.detach()), rel=1e-12)
