"""maml (K2): meta-gradients against hand-derived values, Reptile against its formula, tasks that never
learn from the future of their window, resume equality of each mode, refusals, and the meta-gradient
replacing the batch gradient in the run."""

from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari.errors import ConfigError  # noqa: E402
from himari.plugin.manager import get_plugins  # noqa: E402
from himari_builtin.training.maml import MAML, MAMLConfig  # noqa: E402
from himari_builtin.training.maml.steps import functional_loss, meta_gradient  # noqa: E402
from himari_builtin.training.maml.tasks import regime_tasks, sample_tasks, terciles, windows  # noqa: E402

P = get_plugins()

# ----------------------------------------------------------------- a two-parameter model, by hand
#
# L(a, b; x, y) = 1/2 (a x + b - y)^2 on one example, so with r = a x + b - y:
#   grad L = r (x, 1),      Hessian H = [[x^2, x], [x, 1]].
# Support (x_s, y_s) = (2, 1), query (x_q, y_q) = (-1, 0.5), theta = (0.5, -0.2), alpha = 0.1, k = 1:
#   r_s = 0.5*2 - 0.2 - 1 = -0.2, grad L_s = (-0.4, -0.2), phi = theta - 0.1 grad = (0.54, -0.18)
#   r_q(phi) = -0.54 - 0.18 - 0.5 = -1.22, grad L_q(phi) = (1.22, -1.22)       (first-order MAML)
#   (I - alpha H_s) = [[0.6, -0.2], [-0.2, 0.9]]
#   second order = (I - alpha H_s) grad L_q(phi) = (0.732 + 0.244, -0.244 - 1.098) = (0.976, -1.342)
# Reptile, k = 2 on the support: phi1 = (0.54, -0.18); r_s(phi1) = 1.08 - 0.18 - 1 = -0.1,
#   grad = (-0.2, -0.1), phi2 = (0.56, -0.17); (theta - phi2) / (alpha k) = (-0.06, -0.03) / 0.2 = (-0.3, -0.15)

THETA = (0.5, -0.2)
SUPPORT = (torch.tensor([2.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
QUERY = (torch.tensor([-1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))


class Line(torch.nn.Module):
    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x):
        return self.a * x + self.b


class LineModel:
    """A model plugin in miniature: its loss reads ``self.network``, as the built-ins' do."""

    paradigm = "supervised"

    def __init__(self, a: float = THETA[0], b: float = THETA[1]) -> None:
        self.network = Line(a, b)

    def loss(self, batch, ctx):
        x, y = batch
        return 0.5 * ((self.network(x) - y) ** 2).mean(), {}

    def dataset(self, ctx, split):
        from torch.utils.data import TensorDataset

        rows = np.concatenate([np.arange(a, b) for a, b in ctx.splits[split]]).astype(np.int64)
        return TensorDataset(torch.from_numpy(ctx.features[rows, 0]), torch.from_numpy(ctx.features[rows, 1]))


def _grads(mode: str, steps: int = 1) -> tuple[float, float]:
    model = LineModel()
    loss_of, params = functional_loss(model, None)
    g, _ = meta_gradient(loss_of, params, SUPPORT, QUERY, mode=mode, steps=steps, alpha=0.1)
    return float(g["a"]), float(g["b"])


def test_first_order_meta_gradient_by_hand() -> None:
    assert _grads("first-order") == pytest.approx((1.22, -1.22), abs=1e-12)


def test_second_order_meta_gradient_by_hand() -> None:
    assert _grads("second-order") == pytest.approx((0.976, -1.342), abs=1e-12)


def test_reptile_update_is_its_formula() -> None:
    assert _grads("reptile", steps=2) == pytest.approx((-0.3, -0.15), abs=1e-12)


def test_meta_step_leaves_the_weights_alone() -> None:
    """The inner loop works on copies: the model's weights are still theta afterwards."""
    model = LineModel()
    loss_of, params = functional_loss(model, None)
    for mode in ("first-order", "second-order", "reptile"):
        meta_gradient(loss_of, params, SUPPORT, QUERY, mode=mode, steps=2, alpha=0.1)
    assert (model.network.a.item(), model.network.b.item()) == THETA


def test_second_order_step_lowers_the_loss_after_adaptation() -> None:
    """What MAML optimises: a small step along the second-order meta-gradient lowers the query loss
    *after* one inner step, L_q(theta' - alpha grad L_s(theta')), by about eps |g|^2."""
    def adapted_query_loss(a: float, b: float) -> float:
        r_s = a * 2 + b - 1
        pa, pb = a - 0.1 * r_s * 2, b - 0.1 * r_s
        return 0.5 * (pa * -1 + pb - 0.5) ** 2

    g = _grads("second-order")
    eps = 1e-3
    before = adapted_query_loss(*THETA)
    after = adapted_query_loss(THETA[0] - eps * g[0], THETA[1] - eps * g[1])
    assert after < before
    assert (before - after) == pytest.approx(eps * (g[0] ** 2 + g[1] ** 2), rel=1e-2)


# ------------------------------------------------------------------------------ tasks and leakage


def test_windows_support_then_embargo_then_query() -> None:
    assert windows([(10, 40), (50, 61)], window=10, support=6, embargo=2) == [
        (10, 16, 18, 20), (20, 26, 28, 30), (30, 36, 38, 40), (50, 56, 58, 60)]


def test_windows_must_leave_query_bars() -> None:
    with pytest.raises(ValueError, match="leaves no query bars after support 6 \\+ embargo 4"):
        windows([(0, 40)], window=10, support=6, embargo=4)


def test_terciles_by_hand() -> None:
    assert terciles(np.array([5.0, 1.0, 3.0, 2.0, 6.0, 4.0])).tolist() == [2, 0, 1, 0, 2, 1]
    # boundaries 0 and 1/3 (numpy's linear quantiles): a value at a boundary stays below it
    assert terciles(np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])).tolist() == [0, 0, 0, 0, 2, 2]


def test_regime_is_three_times_the_volatility_tercile_plus_the_trend_tercile() -> None:
    """Nine support sets made by hand: calm, middling and wild volatility (alternating returns of
    0.1%, 1% and 5%) crossed with a falling, flat and rising trend (the support's last close
    against its first): window k gets regime k, the falling ones the lowest trend tercile."""
    window, support = 20, 11  # 10 support returns: the alternation sums to 0
    close = []
    for vol in (0.001, 0.01, 0.05):
        for drift in (-0.02, 0.0, 0.02):
            steps = vol * (-1.0) ** np.arange(support - 1) + drift / (support - 1)
            logc = np.r_[0.0, np.cumsum(steps)]
            close.extend(np.exp(np.r_[logc, np.full(window - support, logc[-1])]))
    tasks = regime_tasks(np.array(close), [(0, len(close))], window=window, support=support, embargo=2)
    assert [t.regime for t in tasks] == list(range(9))


def test_regimes_come_from_the_support_closes_only() -> None:
    """Changing every query bar's close leaves every window's regime unchanged."""
    rng = np.random.default_rng(3)
    close = np.exp(np.cumsum(rng.normal(0, 0.01, 3000)))
    tasks = regime_tasks(close, [(0, 3000)], window=100, support=60, embargo=6)
    changed = close.copy()
    for t in tasks:
        changed[t.support_end:t.query_end] *= rng.uniform(0.5, 2.0, t.query_end - t.support_end)
    assert [t.regime for t in regime_tasks(changed, [(0, 3000)], 100, 60, 6)] == [t.regime for t in tasks]
    assert len({t.regime for t in tasks}) == 9


def test_no_query_row_precedes_or_falls_within_the_embargo_of_its_support(small_prepared) -> None:
    """On the prepared data the run trains on: every query row comes after every support row and
    after the reach of every support label (row + lookahead), inside one train range."""
    from himari.data import PreparedData
    from himari.plugin.api import TrainContext

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    ctx = TrainContext(data=data, features=np.asarray(data.features), labels=np.asarray(data.labels),
                       splits=splits, env=None)
    method = MAML(MAMLConfig(window=100, support=60))
    method.model_built(LineModel(), ctx)
    lookahead = data.lookahead
    assert method.tasks and lookahead >= 1
    for t in method.tasks:
        support = np.arange(t.support_start, t.support_end)
        query = np.arange(t.query_start, t.query_end)
        assert query.min() > support.max() + lookahead  # no label of the support reads a query bar
        assert any(a <= support.min() and query.max() < b for a, b in splits["train"])
    for step in range(20):
        assert set(sample_tasks(method.tasks, 4, seed=0, step=step)) <= set(method.tasks)


def test_sampling_is_uniform_over_regimes_not_windows() -> None:
    from himari_builtin.training.maml.tasks import Task

    tasks = [Task(0, 1, 2, 3, regime=0)] * 99 + [Task(10, 11, 12, 13, regime=5)]
    picked = [t.regime for s in range(400) for t in sample_tasks(tasks, 1, seed=1, step=s)]
    assert 0.4 < picked.count(5) / len(picked) < 0.6


def test_embargo_below_lookahead_is_refused(small_prepared, tmp_path) -> None:
    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    with pytest.raises(ConfigError, match="maml: embargo 2 is less than the labels' lookahead of 6"):
        tiny_run("baseline-mlp", small_prepared, tmp_path / "r", methods="maml", sets=["maml.embargo=2",
                                                                                     "maml.window=100",
                                                                                     "maml.support=60"])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("field, value, words", [("inner_lr", "0", "inner_lr"), ("inner_steps", "0", "inner_steps"),
                                                 ("support", "300", "window 288"), ("mode", "third", "mode")])
def test_bad_config_is_refused(field, value, words, small_prepared, tmp_path) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=words):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "maml"}, sets=[f"maml.{field}={value}"])


@pytest.mark.parametrize("model", ["cql", "cgdt"])
def test_other_models_are_refused(model, small_prepared) -> None:
    from himari.training.config import merge_run_config

    with pytest.raises(ConfigError, match=f"'maml'.*'{model}'"):
        merge_run_config(plugins=P, overrides={"model": model, "data": str(small_prepared), "methods": "maml"})


# ------------------------------------------------------------------------------------- in the run


def test_the_meta_gradient_replaces_the_batch_gradient(small_prepared) -> None:
    """before_optimizer_step writes the mean of its sampled tasks' first-order meta-gradients,
    whatever gradient the batch left (pinned against meta_gradient called on the same tasks)."""
    from himari.data import PreparedData
    from himari.plugin.api import TrainContext

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    feats = np.random.default_rng(0).normal(size=(len(data.close), 2))
    ctx = TrainContext(data=data, features=feats, labels=np.asarray(data.labels), splits=splits, env=None)
    model = LineModel()
    method = MAML(MAMLConfig(window=100, support=60, tasks_per_step=3, inner_steps=2))
    method.model_built(model, ctx)
    for p in model.network.parameters():
        p.grad = torch.full_like(p, 123.0)
    method.before_optimizer_step(model, None, ctx)
    loss_of, params = functional_loss(LineModel(), ctx)
    expected = {"a": 0.0, "b": 0.0}
    for t in sample_tasks(method.tasks, 3, seed=0, step=0):
        s = (torch.from_numpy(feats[t.support_start:t.support_end, 0]), torch.from_numpy(feats[t.support_start:t.support_end, 1]))
        q = (torch.from_numpy(feats[t.query_start:t.query_end, 0]), torch.from_numpy(feats[t.query_start:t.query_end, 1]))
        g, _ = meta_gradient(loss_of, params, s, q, mode="first-order", steps=2, alpha=0.01)
        for k in expected:
            expected[k] += float(g[k]) / 3
    assert float(model.network.a.grad) == pytest.approx(expected["a"], rel=1e-9)
    assert float(model.network.b.grad) == pytest.approx(expected["b"], rel=1e-9)
    assert method.state_dict() == {"meta_steps": 1, "cycles": 0}


@pytest.mark.parametrize("mode", ["second-order", "reptile"])
def test_resume_is_exact_in_every_mode(mode, small_prepared, tmp_path) -> None:
    """The harness resumes the default (first-order); the other two modes resume the same way."""
    from himari_tests_conformance import check_training_method  # type: ignore[import-not-found]

    check_training_method("maml", "baseline-mlp", small_prepared, tmp_path, plugins=P,
                          extra_sets=[f"maml.mode={mode}", "maml.inner_steps=2", "maml.window=100", "maml.support=60"])


def test_adapt_runs_the_inner_loop_on_the_adaptation_rows_in_place() -> None:
    """backtest --adapt-bars' hook: k SGD steps of alpha on ctx.splits["adapt"]'s examples, written
    into the model (the Reptile case above: two steps on the support point give (0.56, -0.17)); a row
    outside the range (a far-off point) is not used."""
    from himari.plugin.api import TrainContext

    feats = np.array([[2.0, 1.0], [100.0, -100.0]])
    ctx = TrainContext(data=None, features=feats, labels=np.zeros(2), splits={"adapt": [(0, 1)]}, env=None)
    model = LineModel()
    MAML(MAMLConfig(inner_steps=2, inner_lr=0.1)).adapt(model, ctx)
    assert (model.network.a.item(), model.network.b.item()) == pytest.approx((0.56, -0.17), abs=1e-12)


def test_frozen_parameters_get_no_meta_gradient() -> None:
    """A frozen weight is neither adapted nor given a gradient (the optimiser would otherwise move it)."""
    from himari.plugin.api import TrainContext

    feats = np.random.default_rng(0).normal(size=(400, 2))
    ctx = TrainContext(data=None, features=feats, labels=np.zeros(400), splits={}, env=None)
    model = LineModel()
    model.network.b.requires_grad_(False)
    method = MAML(MAMLConfig(window=100, support=60, embargo=6))
    method.tasks, method._model = regime_tasks(np.exp(feats[:, 0] * 0.01), [(0, 400)], 100, 60, 6), model
    method.before_optimizer_step(model, None, ctx)
    assert model.network.b.grad is None and model.network.a.grad is not None
