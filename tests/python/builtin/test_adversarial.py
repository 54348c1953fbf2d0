"""adversarial (K5): FGSM/PGD perturbations inside the epsilon ball, against hand-worked cases;
only market columns of train batches move; config errors; a real run keeps its data clean."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari_builtin.training.adversarial import (
    Adversarial,
    AdversarialConfig,
    perturb_batch,
)

from himari.evaluation.attacks import linf_attack
from himari.plugin.api import ModelContext

F, ACCOUNT = 5, 2  # market features, then account columns (as cql's states)
W = np.array([0.5, -1.0, 2.0, 0.0, -0.25])


class LinearModel:
    """Logits ``[-s, 0, s]`` with ``s = w . x[:F]`` (account columns weigh nothing), cross-entropy.

    The loss of a row labelled BUY is ``L(s) = -s + log(e^-s + 1 + e^s)``, strictly decreasing
    in s (its derivative is ``-1 + (e^s - e^-s) / Z < 0``), so the worst point of the L-inf ball
    is where s is lowest: ``x - epsilon * sign(w)``, exactly FGSM's step. For a SELL row it is
    ``x + epsilon * sign(w)``."""

    paradigm = "supervised"

    def __init__(self, weight: np.ndarray = W, account_weight: float = 0.0) -> None:
        lin = torch.nn.Linear(F + ACCOUNT, 3, bias=False)
        with torch.no_grad():
            w = torch.tensor(np.r_[weight, [account_weight] * ACCOUNT], dtype=torch.float32)
            lin.weight.copy_(torch.stack([-w, torch.zeros_like(w), w]))
        self.network = lin
        self.calls = 0

    def loss(self, batch, ctx):
        self.calls += 1
        x, y = batch
        return torch.nn.functional.cross_entropy(self.network(x), y), {}


class Ctx:
    model = ModelContext(n_features=F)


def hand_loss(s: np.ndarray, label: np.ndarray) -> float:
    """Mean cross-entropy of logits [-s, 0, s] (numpy, independent of torch)."""
    logits = np.stack([-s, np.zeros_like(s), s], axis=1)
    logz = np.log(np.exp(logits).sum(1))
    return float(np.mean(logz - logits[np.arange(len(s)), label]))


def batch(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F + ACCOUNT)).astype(np.float32)
    y = np.where(np.arange(n) % 2 == 0, 2, 0)  # BUY, SELL, BUY, ...
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def test_fgsm_and_pgd_on_a_linear_loss_reach_the_exact_optimum() -> None:
    """loss = w . x: the maximiser over the box is x + eps sign(w), loss + eps ||w||_1."""
    x = torch.tensor([[0.3, -0.2, 1.0, 0.7, 0.0]], dtype=torch.float64)
    w = torch.tensor(W, dtype=torch.float64)
    eps = 0.1
    clean = float((x * w).sum())
    fgsm = linf_attack(lambda z: (z * w).sum(), x, eps, attack="fgsm")
    pgd = linf_attack(lambda z: (z * w).sum(), x, eps, attack="pgd", steps=3, random_start=True)
    want = x.numpy() + eps * np.sign(W)
    np.testing.assert_allclose(fgsm.numpy(), want, atol=1e-12)
    moving = W != 0  # 3 steps of 2.5 eps / 3 cross the box; a zero gradient keeps the random start
    np.testing.assert_allclose(pgd.numpy()[:, moving], want[:, moving], atol=1e-12)
    assert np.abs(pgd.numpy() - x.numpy()).max() <= eps + 1e-12
    l_fgsm, l_pgd = float((fgsm * w).sum()), float((pgd * w).sum())
    assert l_fgsm == pytest.approx(clean + eps * np.abs(W).sum(), abs=1e-12)
    assert l_pgd >= l_fgsm - 1e-12 and l_fgsm > clean


def test_pgd_beats_fgsm_beats_clean_on_a_curved_loss() -> None:
    """loss = -(x - 0.3)^2 from x = 0, eps = 0.5: FGSM jumps to 0.5 (loss -0.04, clean -0.09);
    PGD with 10 steps of 0.125 from x walks 0.125, 0.25, 0.375, 0.25, ... and ends at 0.25
    (loss -0.0025)."""
    x = torch.zeros(1, 1, dtype=torch.float64)

    def f(z):
        return -((z - 0.3) ** 2).sum()

    fgsm = linf_attack(f, x, 0.5, attack="fgsm")
    pgd = linf_attack(f, x, 0.5, attack="pgd", steps=10, random_start=False)
    assert float(fgsm) == pytest.approx(0.5)
    assert float(pgd) == pytest.approx(0.25)
    assert float(f(pgd)) == pytest.approx(-0.0025) and float(f(fgsm)) == pytest.approx(-0.04)
    assert float(f(pgd)) > float(f(fgsm)) > float(f(x))


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_perturbation_is_within_epsilon_and_only_on_market_columns(attack) -> None:
    torch.manual_seed(0)
    model = LinearModel(account_weight=3.0)  # the account columns would pay to move: they must not
    x, y = batch(40)
    cfg = AdversarialConfig(attack=attack, epsilon=0.07, steps=5, ratio=0.25)
    x_adv, y_adv = perturb_batch(model, (x, y), Ctx(), cfg)
    n_adv = 10  # round(0.25 * 40)
    delta = (x_adv - x).numpy()
    assert np.abs(delta).max() <= 0.07 + 1e-6
    assert np.abs(delta[:n_adv, :F][:, W != 0]).min() > 0.07 - 1e-6  # a linear loss pushes to the corner
    np.testing.assert_array_equal(delta[:n_adv, F:], 0.0)  # account state untouched
    np.testing.assert_array_equal(delta[n_adv:], 0.0)  # clean share of the batch untouched
    assert torch.equal(y_adv, y)


def test_adversarial_rows_are_the_worst_case_and_raise_the_loss() -> None:
    """On the linear model FGSM and PGD both find the exact worst point of the ball; the loss
    there, computed by hand, exceeds the clean loss by the amount the hand formula says."""
    x, y = batch(8)
    eps = 0.05
    w_sign = np.sign(W)
    direction = np.where(y.numpy()[:, None] == 2, -1.0, 1.0) * w_sign  # BUY rows lower s, SELL rows raise it
    want = x.numpy().copy()
    want[:, :F] += eps * direction
    s_clean = x.numpy()[:, :F] @ W
    s_worst = want[:, :F] @ W
    clean_loss = hand_loss(s_clean, y.numpy())
    worst_loss = hand_loss(s_worst, y.numpy())
    losses = {}
    for attack in ("fgsm", "pgd"):
        torch.manual_seed(1)
        x_adv, _ = perturb_batch(LinearModel(), (x, y), Ctx(), AdversarialConfig(attack=attack, epsilon=eps, ratio=1.0))
        cols = np.r_[np.flatnonzero(W != 0), np.arange(F, F + ACCOUNT)]  # a weightless column may keep PGD's start
        np.testing.assert_allclose(x_adv.numpy()[:, cols], want[:, cols], atol=1e-6)
        losses[attack] = hand_loss(x_adv.numpy()[:, :F] @ W, y.numpy())
    assert losses["fgsm"] == pytest.approx(worst_loss, abs=1e-6)
    assert losses["pgd"] >= losses["fgsm"] - 1e-6
    assert losses["fgsm"] > clean_loss + 0.01
    # s moves by eps * ||w||_1 = 0.05 * 3.75 against each row's label
    np.testing.assert_allclose(np.abs(s_worst - s_clean), eps * np.abs(W).sum(), rtol=1e-6)


def test_attack_runs_in_eval_mode_and_leaves_the_network_as_it_was() -> None:
    """Batch-norm running statistics are not fed the attack's forwards, and no parameter
    receives a gradient from it."""
    model = LinearModel()
    model.network = torch.nn.Sequential(torch.nn.Linear(F + ACCOUNT, 4), torch.nn.BatchNorm1d(4),
                                        torch.nn.Linear(4, 3))
    model.network.train()
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    perturb_batch(model, batch(16), Ctx(), AdversarialConfig(epsilon=0.1, steps=4, ratio=1.0))
    assert model.network.training
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.network.parameters())
    assert model.calls == 4  # one forward and backward per PGD step


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attack_differentiates_a_recurrent_network_in_eval_mode_on_the_gpu() -> None:
    """cuDNN's LSTM has no backward in eval mode (ppo-lstm's adversarial rollouts and
    ``himari robustness`` attack an eval-mode LSTM): FGSM on the GPU moves each input by
    epsilon in the sign of the gradient the same network gives on the CPU."""
    import copy

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 8, batch_first=True).eval()
    x = torch.randn(3, 6, 4)
    reference = x.clone().requires_grad_(True)
    lstm(reference)[0].square().sum().backward()
    gpu = copy.deepcopy(lstm).cuda()
    adv = linf_attack(lambda z: gpu(z)[0].square().sum(), x.cuda(), 0.1, attack="fgsm")
    torch.testing.assert_close(adv.cpu(), x + 0.1 * reference.grad.sign())
    assert not gpu.training


def test_only_the_train_split_is_wrapped() -> None:
    method = Adversarial(AdversarialConfig())
    model = LinearModel()
    method.model_built(model, Ctx())
    data = torch.utils.data.TensorDataset(*batch(10))
    assert method.dataset(data, Ctx(), "validation") is data
    wrapped = method.dataset(data, Ctx(), "train")
    x_before = data.tensors[0].clone()
    x_adv, _ = wrapped[torch.arange(10)]
    assert len(wrapped) == 10 and not torch.equal(x_adv, x_before)
    assert torch.equal(data.tensors[0], x_before)  # the dataset itself is never written
    assert Adversarial(AdversarialConfig(ratio=0.0)).dataset(data, Ctx(), "train") is data


@pytest.mark.parametrize("field, value", [("epsilon", "-0.1"), ("ratio", "1.5"), ("steps", "0"), ("attack", "cw")])
def test_bad_config_is_refused_naming_the_method_and_field(field, value, small_prepared: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    run = tmp_path / "run"
    out = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--method", "adversarial",
                                   "--set", f"adversarial.{field}={value}", "--run-dir", str(run)],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 2, out.output
    assert "adversarial" in out.output and field in out.output and value.lstrip("-") in out.output
    assert not run.exists()


def test_a_run_trains_on_perturbed_rows_but_validates_and_scores_on_clean_ones(small_prepared: Path,
                                                                               tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config
    from himari.training.preprocess import run_preprocessors
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                       "methods": ["adversarial"]},
                           sets=["train.epochs=1", "train.batch_size=256", "train.max_steps_per_epoch=3",
                                 "train.patience=0", "adversarial.epsilon=0.5", "adversarial.ratio=1.0"])
    trainer = Trainer(run, plugins=plugins, run_dir=tmp_path / "run", console=Console(file=io.StringIO()))
    trainer.fit()
    assert type(trainer.train_ds).__name__ == "_Adversarial"
    assert type(trainer.val_ds).__name__ == "TensorDataset"  # the model's own, unwrapped
    idx = torch.arange(64)
    x_clean = trainer.train_ds.inner[idx][0]
    x_adv = trainer.train_ds[idx][0]
    assert 0.5 - 1e-5 <= float((x_adv - x_clean).abs().max()) <= 0.5 + 1e-5
    # evaluation reads the run's features, which are the plain preprocessing output, never written
    clean, _ = run_preprocessors(trainer.data, np.asarray(trainer.data.features), run.preprocess,
                                 run.plugin_configs, plugins, trainer.splits, seed=run.train.seed)
    np.testing.assert_array_equal(trainer.features, clean)
    assert math.isfinite(trainer.state["loss_sum"])


def test_adversarial_training_moves_weight_to_robust_features_and_flips_less() -> None:
    """Feature 0 carries the label with a large scale (signal 0.5, noise 0.5); twenty small
    features carry it at a scale of 0.05 each: jointly more informative, but an epsilon of 0.05
    erases them. Plain training leans on the small ones; FGSM training at that epsilon moves the
    weight to feature 0, and FGSM then flips fewer decisions of held-out rows."""
    from himari.evaluation.robustness import measure
    from himari.trading import EnvConfig

    k = 20

    def data(n: int, seed: int):
        rng = np.random.default_rng(seed)
        sign = rng.choice([-1.0, 1.0], n)
        x = np.empty((n, k + 1), np.float32)
        x[:, 0] = sign * 0.5 + rng.normal(0, 0.5, n)
        x[:, 1:] = sign[:, None] * 0.05 + rng.normal(0, 0.05, (n, k))
        return x, np.where(sign > 0, 2, 0).astype(np.int64)

    class Ctx21:
        model = ModelContext(n_features=k + 1)

    def train(adversarial: bool) -> LinearModel:
        torch.manual_seed(0)
        model = LinearModel()
        model.network = torch.nn.Linear(k + 1, 3, bias=False)
        x, y = data(2000, 0)
        ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        if adversarial:
            method = Adversarial(AdversarialConfig(attack="fgsm", epsilon=0.05, ratio=1.0))
            method.model_built(model, Ctx21())
            ds = method.dataset(ds, Ctx21(), "train")
        opt = torch.optim.Adam(model.network.parameters(), lr=0.05)
        for step in range(200):
            idx = torch.from_numpy(np.random.default_rng(step).choice(2000, 256, replace=False))
            opt.zero_grad()
            model.loss(ds[idx], Ctx21())[0].backward()
            opt.step()
        return model

    class Policy:
        def __init__(self, model: LinearModel) -> None:
            self.network = model.network

        def act(self, features, rows):
            with torch.no_grad():
                return self.network(torch.from_numpy(np.ascontiguousarray(features[rows]))).argmax(-1).numpy()

        def action_logits(self, batch):
            return self.network(batch[0])

    x_test, _ = data(1000, 1)
    close = np.linspace(100.0, 110.0, 1000)
    flips, share = {}, {}
    for adversarial in (False, True):
        model = train(adversarial)
        w = model.network.weight.detach().numpy()
        share[adversarial] = np.abs(w[:, 0]).sum() / np.abs(w).sum()
        out = measure(Policy(model), "linear", x_test, close, close, [(0, 1000)], EnvConfig(), None, [0.05],
                      pgd_steps=3)
        flips[adversarial] = next(r["flip_rate"] for r in out["results"] if r["attack"] == "fgsm")
    assert share[True] > 2 * share[False]
    assert flips[True] < 0.8 * flips[False]


def test_ratio_rounds_the_rows_and_a_set_step_size_is_the_step() -> None:
    """round(0.3 x 5) = 2 rows move (not int's 1); one PGD step of the configured 0.01 from the
    clean input moves each weighted market column by exactly 0.01 (the default step, 2.5 eps, would
    reach the box's edge), toward the lower s for BUY rows and the higher for SELL rows."""
    x, y = batch(5)
    cfg = AdversarialConfig(attack="pgd", epsilon=0.05, steps=1, step_size=0.01, ratio=0.3, random_start=False)
    out = perturb_batch(LinearModel(), (x, y), Ctx(), cfg)[0]
    moved = (out != x).any(dim=1)
    assert moved.tolist() == [True, True, False, False, False]
    step = np.where(y.numpy()[:2, None] == 2, -1.0, 1.0) * np.sign(W)[None, :] * 0.01
    np.testing.assert_allclose((out - x)[:2, :F].numpy(), step, atol=1e-7)
    assert torch.equal(out[:2, F:], x[:2, F:])  # account columns stay


def test_the_rollout_counter_restarts_every_epoch() -> None:
    """The counter seeds PGD's random start of each rollout: a resumed run redoes its epoch from
    rollout 0 and draws what the uninterrupted run drew."""
    method = Adversarial(AdversarialConfig(rollouts=True))
    method.rollouts = 7
    method.epoch_start(3, None)
    assert method.rollouts == 0
