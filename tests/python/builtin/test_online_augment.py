"""online-augment (A8): each transform measured on large batches against its definition, each
batch shape (rows, windows, transitions with s and s' consistent, rollouts), the account columns
and labels untouched, the train split only (validation batches, evaluation inputs and the env's
market are clean), seeding and a mid-epoch resume. Epoch-boundary resume of every compatible
built-in model comes from the conformance harness (test_other_plugins.py)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from himari.errors import ConfigError
from himari.plugin.manager import get_plugins

P = get_plugins()
SPEC = P.training_methods().get("online-augment")
OFF = {"jitter_p": 0.0, "scaling_p": 0.0, "warp_p": 0.0, "noise_p": 0.0}


def _config(**changes: Any) -> Any:
    return SPEC.config(**{**OFF, **changes})


def _augment(x: torch.Tensor, std: Any = None, seed: int = 0, warp: bool = True, **changes: Any) -> torch.Tensor:
    from himari_builtin.training.online_augment import augment

    std = torch.ones(x.shape[-1]) if std is None else torch.tensor(std, dtype=torch.float32)
    return augment(x, _config(**changes), torch.Generator().manual_seed(seed), std, warp=warp)


def _ctx(n_features: int, features: np.ndarray | None = None, seed: int = 0) -> Any:
    from himari.plugin.api import ModelContext

    if features is None:
        features = np.random.default_rng(0).normal(size=(100, n_features)).astype(np.float32)
    return SimpleNamespace(seed=seed, rank=0, model=ModelContext(n_features=n_features), features=features,
                           splits={"train": [(0, len(features))]})


def _method(paradigm: str, **changes: Any) -> Any:
    method = SPEC.factory(_config(**changes))
    method.model_built(SimpleNamespace(paradigm=paradigm), None)
    return method


def test_spec_and_the_input_noise_alias() -> None:
    assert SPEC.code == "A8" and set(SPEC.paradigms) == {"supervised", "sequence", "offline-rl", "online-rl"}
    assert "input-noise" in P.training_methods().names()  # kept for existing run configs


@pytest.mark.parametrize("values, message", [
    ({"jitter_p": 1.5}, r"jitter_p must be a probability in \[0, 1\], got 1.5"),
    ({"warp_p": -0.1}, r"warp_p must be a probability"),
    ({"scaling_std": -1.0}, r"scaling_std must be a finite number >= 0, got -1.0"),
    ({"warp_knots": 0}, r"warp_knots must be >= 1, got 0"),
])
def test_bad_config_is_refused(values: dict[str, Any], message: str) -> None:
    from himari.plugin.config import build_config

    with pytest.raises(ConfigError, match=message):
        build_config(SPEC.config, values, "online-augment")


# ------------------------------------------------------------------------ each transform


def test_scaling_multiplies_each_feature_of_a_sample_by_one_factor() -> None:
    x = torch.rand(20_000, 8, 3) + 1.0
    out = _augment(x, scaling_p=1.0, scaling_std=0.1)
    ratio = out / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)  # constant along time
    r = ratio[:, 0].double()
    assert abs(float(r.mean()) - 1.0) < 0.003 and abs(float(r.std()) - 0.1) < 0.003
    assert float(np.corrcoef(r[:, 0], r[:, 1])[0, 1]) ** 2 < 0.001  # one factor per feature


@pytest.mark.parametrize("transform", ["scaling", "warp", "jitter", "noise"])
def test_probability_picks_samples_and_leaves_the_others_exactly(transform: str) -> None:
    x = torch.rand(20_000, 4, 3) + 1.0
    out = _augment(x, **{f"{transform}_p": 0.3, f"{transform}_std": 0.1})
    changed = (out != x).flatten(1).any(1)
    assert abs(float(changed.double().mean()) - 0.3) < 0.015
    assert torch.equal(out[~changed], x[~changed])


def test_jitter_follows_each_feature_s_train_std() -> None:
    x = torch.zeros(200_000, 1, 3)
    out = _augment(x, std=[1.0, 10.0, 0.1], jitter_p=1.0, jitter_std=0.03)[:, 0].double()
    np.testing.assert_allclose(out.std(0).numpy(), [0.03, 0.3, 0.003], rtol=0.01)
    assert float((out.mean(0) / out.std(0)).abs().max()) < 0.012  # zero mean (4.5 standard errors)


def test_noise_is_absolute() -> None:
    x = torch.zeros(200_000, 1, 3)
    out = _augment(x, std=[1.0, 10.0, 0.1], noise_p=1.0, noise_std=0.2)[:, 0].double()
    np.testing.assert_allclose(out.std(0).numpy(), [0.2, 0.2, 0.2], rtol=0.01)


def test_magnitude_warping_is_a_smooth_curve_through_random_knots() -> None:
    """On x = 1 the output is the curve. L = 51 with 4 interior knots puts the 6 knots on steps
    0, 10, ..., 50: there the curve is N(1, 0.2^2), independent knot to knot; between them it
    moves in small steps (a jitter-like curve would jump as far in one step as in ten)."""
    x = torch.ones(20_000, 51, 2)
    curve = _augment(x, warp_p=1.0, warp_std=0.2, warp_knots=4).double()
    knots = curve[:, ::10]
    assert abs(float(knots.mean()) - 1.0) < 0.003 and abs(float(knots.std()) - 0.2) < 0.003
    k = knots[:, :, 0].numpy()
    assert abs(np.corrcoef(k[:, 0], k[:, 1])[0, 1]) < 0.03  # knots are independent
    assert abs(np.corrcoef(k[:, 0], curve[:, 0, 1].numpy())[0, 1]) < 0.03  # so are features
    one_step = (curve[:, 1:] - curve[:, :-1]).abs().mean()
    ten_steps = (curve[:, 10:] - curve[:, :-10]).abs().mean()
    assert float(one_step) < 0.2 * float(ten_steps)
    second = (curve[:, 2:] - 2 * curve[:, 1:-1] + curve[:, :-2]).abs().mean()
    assert float(second) < 0.3 * float(one_step)  # no kinks (i.i.d. steps: 1.7 times the first differences)
    # cubic pieces, not straight lines: it bends between knots too (straight lines joined at the
    # knots: no bend between them, about 1e-6 of the bend at the knots; cubic: about a quarter)
    bend = (curve[:, 2:] - 2 * curve[:, 1:-1] + curve[:, :-2]).abs()  # column j: step j + 1
    assert float(bend[:, [4, 14, 24, 34, 44]].mean()) > 0.1 * float(bend[:, [9, 19, 29, 39]].mean())
    # multiplicative: on another input the output is that input times the same curve
    y = torch.rand(20_000, 51, 2) + 0.5
    torch.testing.assert_close(_augment(y, warp_p=1.0, warp_std=0.2, warp_knots=4), y * curve.float())


def test_no_time_axis_no_warping() -> None:
    x = torch.rand(100, 1, 3)
    assert torch.equal(_augment(x, warp_p=1.0, warp_std=0.5), x)
    x = torch.rand(100, 2, 3)
    assert torch.equal(_augment(x, warp=False, warp_p=1.0, warp_std=0.5), x)


def test_multiplicative_before_additive() -> None:
    """Scaling then noise: out - x * factor is the noise, whatever the factor (the noise is not
    scaled)."""
    x = torch.full((100_000, 1, 1), 5.0)
    out = _augment(x, scaling_p=1.0, scaling_std=0.5, noise_p=1.0, noise_std=0.1)
    assert abs(float(out.std()) - float(np.hypot(2.5, 0.1))) < 0.02


# ------------------------------------------------------------------------- batch shapes


def test_rows_keep_their_labels_and_the_source_is_not_written() -> None:
    method = _method("supervised", scaling_p=1.0, scaling_std=0.1, jitter_p=1.0)
    x, y = torch.rand(64, 5) + 1.0, torch.randint(0, 3, (64,))
    x0 = x.clone()
    out = method.augment_batch((x, y), _ctx(5))
    assert torch.equal(x, x0) and torch.equal(out[1], y) and not torch.equal(out[0], x)
    assert method.state_dict() == {"batches": 1, "rollouts": 0}


def test_transitions_augment_s_and_next_s_consistently() -> None:
    """Scaling: one factor per transition and feature for s and s'; the 4 account columns, the
    action, reward and done are untouched; jitter is drawn per step."""
    F = 5
    g = torch.Generator().manual_seed(0)
    s, s2 = torch.rand(4096, F + 4, generator=g) + 1.0, torch.rand(4096, F + 4, generator=g) + 1.0
    a, r, d = torch.randint(0, 3, (4096,)), torch.randn(4096), torch.zeros(4096)
    out = _method("offline-rl", scaling_p=1.0, scaling_std=0.1).augment_batch((s, a, r, s2, d), _ctx(F))
    torch.testing.assert_close(out[0][:, :F] / s[:, :F], out[3][:, :F] / s2[:, :F])
    warped = _method("offline-rl", warp_p=1.0, warp_std=0.5).augment_batch((s, a, r, s2, d), _ctx(F))
    assert torch.equal(warped[0], s) and torch.equal(warped[3], s2)  # s and s' are no time axis: no warping
    assert float((out[0][:, :F] / s[:, :F]).std()) > 0.05
    assert torch.equal(out[0][:, F:], s[:, F:]) and torch.equal(out[3][:, F:], s2[:, F:])
    assert out[1] is a and out[2] is r and out[4] is d
    out = _method("offline-rl", jitter_p=1.0, jitter_std=0.5).augment_batch((s, a, r, s2, d), _ctx(F))
    e1, e2 = (out[0] - s)[:, :F].flatten().numpy(), (out[3] - s2)[:, :F].flatten().numpy()
    assert abs(np.corrcoef(e1, e2)[0, 1]) < 0.05 and e1.std() > 0.1


def test_windows_are_warped_along_their_steps_and_keep_account_columns() -> None:
    F = 3
    x = torch.ones(512, 33, F + 4)
    out = _method("offline-rl", warp_p=1.0, warp_std=0.2).augment_batch((x, torch.zeros(512, 33)), _ctx(F))[0]
    assert torch.equal(out[..., F:], x[..., F:])
    assert float(out[..., :F].std(dim=1).mean()) > 0.05  # varies along the window


def test_rollouts_one_sample_per_env_sequence() -> None:
    """[T, N, D]: a scaling factor per env and feature, constant along the T steps; [T, N, W, D]:
    one per window, constant along its W bars."""
    F, T, N = 4, 16, 64
    obs = torch.rand(T, N, F + 4) + 1.0
    buf = SimpleNamespace(obs=obs.clone())
    method = _method("online-rl", scaling_p=1.0, scaling_std=0.1)
    method.on_rollout(buf, _ctx(F))
    ratio = buf.obs[..., :F] / obs[..., :F]
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    assert float(ratio[0].std()) > 0.05 and torch.equal(buf.obs[..., F:], obs[..., F:])
    obs = torch.rand(T, N, 8, F + 4) + 1.0
    buf = SimpleNamespace(obs=obs.clone())
    method.on_rollout(buf, _ctx(F))
    ratio = buf.obs[..., :F] / obs[..., :F]
    torch.testing.assert_close(ratio, ratio[:, :, :1].expand_as(ratio))
    assert float(ratio[:, :, 0].std(dim=0).mean()) > 0.05  # windows of one env differ along T
    assert method.state_dict() == {"batches": 0, "rollouts": 2}


def test_bad_shapes_name_the_method() -> None:
    method = _method("supervised", jitter_p=1.0)
    with pytest.raises(ConfigError, match=r"online-augment: batch inputs have 3 columns, fewer than the run's 5"):
        method.augment_batch((torch.zeros(2, 3), torch.zeros(2)), _ctx(5))
    with pytest.raises(ConfigError, match=r"online-augment: expected a batch whose first item is the input"):
        method.augment_batch({"x": torch.zeros(2, 5)}, _ctx(5))


def test_draws_follow_the_counter_and_the_seed() -> None:
    x = (torch.rand(32, 5) + 1.0, torch.zeros(32))
    a, b = _method("supervised", jitter_p=1.0), _method("supervised", jitter_p=1.0)
    first = a.augment_batch(x, _ctx(5))[0]
    assert not torch.equal(a.augment_batch(x, _ctx(5))[0], first)  # a new batch, new draws
    b.load_state_dict({"batches": 2, "rollouts": 0})  # as restored from a checkpoint after two batches
    assert torch.equal(b.augment_batch(x, _ctx(5))[0], a.augment_batch(x, _ctx(5))[0])
    c = _method("supervised", jitter_p=1.0)
    assert torch.equal(c.augment_batch(x, _ctx(5))[0], first)
    d = _method("supervised", jitter_p=1.0)
    assert not torch.equal(d.augment_batch(x, _ctx(5, seed=1))[0], first)
    e, other_rank = _method("supervised", jitter_p=1.0), _ctx(5)
    other_rank.rank = 1  # data-parallel ranks draw their own numbers
    assert not torch.equal(e.augment_batch(x, other_rank)[0], first)


def test_rollouts_and_batches_draw_from_streams_of_their_own() -> None:
    """A rollout of one step ([1, N, D]: N samples of one step) and a batch of N rows are the same
    input to the transforms, both at counter 0: their draws differ."""
    rows = torch.rand(32, 5) + 1.0
    batch = _method("online-rl", jitter_p=1.0).augment_batch((rows, torch.zeros(32)), _ctx(5))[0]
    buf = SimpleNamespace(obs=rows[None].clone())
    _method("online-rl", jitter_p=1.0).on_rollout(buf, _ctx(5))
    assert not torch.equal(buf.obs[0], batch) and not torch.equal(buf.obs[0], rows)


def test_feature_std_is_of_the_train_rows_only() -> None:
    f = np.concatenate([np.tile([[-1.0], [1.0]], (50, 1)), np.tile([[-100.0], [100.0]], (50, 1))]).astype(np.float32)
    ctx = _ctx(1, f)
    ctx.splits = {"train": [(0, 100)], "validation": [(100, 200)]}
    np.testing.assert_allclose(_method("supervised")._feature_std(ctx, "cpu").numpy(), [1.0])


def test_feature_std_skips_non_finite_values() -> None:
    f = np.array([[0.0, np.nan], [2.0, np.nan], [np.inf, np.nan]], dtype=np.float32)
    method = _method("supervised")
    np.testing.assert_allclose(method._feature_std(_ctx(2, f), "cpu").numpy(), [1.0, 0.0])


# ------------------------------------------------------------------ in a run: train split only


def _trainer(model: str, prepared: Path, run_dir: Path, methods: str, sets: list[str]) -> Any:
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": model, "data": str(prepared), "methods": methods},
                           sets=["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=4",
                                 "train.progress=false", "train.patience=0", *sets])
    return Trainer(run, plugins=P, run_dir=run_dir, console=Console(file=io.StringIO()))


STRONG = [f"online-augment.{k}={v}" for k, v in {"jitter_p": 1.0, "jitter_std": 0.5, "scaling_p": 1.0,
                                                  "warp_p": 1.0}.items()]


def test_only_training_batches_change(small_prepared, tmp_path, monkeypatch) -> None:
    """baseline-mlp: every training batch differs from the clean rows; every validation batch and
    every evaluation input is the clean data, identical to a run without the method."""
    from himari_builtin.models.baseline_mlp.model import BaselineMLP

    seen: dict[str, list[Any]] = {"train": [], "validation": [], "act": []}
    loss, act = BaselineMLP.loss, BaselineMLP.act

    def spy_loss(self: Any, batch: Any, ctx: Any) -> Any:
        seen["train" if self.network.training else "validation"].append(batch[0].clone())
        return loss(self, batch, ctx)

    def spy_act(self: Any, features: Any, rows: Any) -> Any:
        seen["act"].append(np.array(features, copy=True))
        return act(self, features, rows)

    monkeypatch.setattr(BaselineMLP, "loss", spy_loss)
    monkeypatch.setattr(BaselineMLP, "act", spy_act)
    plain = _trainer("baseline-mlp", small_prepared, tmp_path / "plain", "", [])
    plain.fit()
    clean = {k: list(v) for k, v in seen.items()}
    for v in seen.values():
        v.clear()
    aug = _trainer("baseline-mlp", small_prepared, tmp_path / "aug", "online-augment", STRONG)
    summary = aug.fit()
    assert len(seen["train"]) == 4 and len(clean["train"]) == 4
    train_rows = torch.from_numpy(np.asarray(plain.features))
    for x in seen["train"]:
        exact = (x[:, None, :] == train_rows[None, :, :]).all(-1).any(-1)  # a row equal to some clean row
        assert not bool(exact.any())
    assert len(seen["validation"]) == len(clean["validation"]) >= 1
    for a, b in zip(seen["validation"], clean["validation"]):
        assert torch.equal(a, b)
    assert len(seen["act"]) == len(clean["act"]) >= 1
    for a, b in zip(seen["act"], clean["act"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(aug.features, plain.features)
    assert summary["validation"]["model"]["n_trades"] >= 0


def test_online_rl_evaluation_and_market_stay_clean(small_prepared, tmp_path, monkeypatch) -> None:
    """ppo-lstm: the rollouts' stored observations are augmented before the updates; the training
    env's market features and every evaluation input are the run's clean features."""
    from himari_builtin.models.ppo_lstm.model import PPOLSTM

    from himari_tests_conformance import TINY_ONLINE  # type: ignore[import-not-found]

    seen: dict[str, list[Any]] = {"act": [], "loss": []}
    act_sequence, loss = PPOLSTM.act_sequence, PPOLSTM.loss

    def spy_act(self: Any, features: Any, *args: Any, **kwargs: Any) -> Any:
        seen["act"].append(np.array(features, copy=True))
        return act_sequence(self, features, *args, **kwargs)

    def spy_loss(self: Any, batch: Any, ctx: Any) -> Any:
        seen["loss"].append((batch["obs"].clone(), ctx.env_source.features.copy()))
        return loss(self, batch, ctx)

    monkeypatch.setattr(PPOLSTM, "act_sequence", spy_act)
    monkeypatch.setattr(PPOLSTM, "loss", spy_loss)
    trainer = _trainer("ppo-lstm", small_prepared, tmp_path / "ppo", "online-augment",
                       [*TINY_ONLINE("ppo-lstm"), *STRONG])
    trainer.fit()
    a, b = trainer.ctx.env_source.rows[0], trainer.ctx.env_source.rows[-1] + 1
    clean = np.asarray(trainer.features)
    for obs, market in seen["loss"]:
        np.testing.assert_array_equal(market, clean[a:b])
        F = clean.shape[1]
        flat = obs[..., :F].reshape(-1, F)
        exact = (flat[:, None, :] == torch.from_numpy(clean[a:b])[None]).all(-1).any(-1)
        assert not bool(exact.any())  # no stored observation is a clean bar's features
    assert seen["act"] and all(np.array_equal(f, clean) for f in seen["act"])


def test_mid_epoch_resume_draws_what_an_uninterrupted_run_draws(small_prepared, tmp_path) -> None:
    """Interrupted after step 5 of an epoch with checkpoints every 2 steps, resumed from step 4:
    the batch counter comes back with the checkpoint, so the weights end identical."""
    from rich.console import Console

    from himari.training.checkpoint import load_checkpoint
    from himari.training.trainer import Trainer

    sets = [*STRONG, "train.max_steps_per_epoch=8", "train.checkpoint_every=2"]
    _trainer("baseline-mlp", small_prepared, tmp_path / "whole", "online-augment", sets).fit()
    cut = _trainer("baseline-mlp", small_prepared, tmp_path / "cut", "online-augment", sets)
    count_step = cut.count_step

    def stop_at_five(*args: Any, **kwargs: Any) -> None:
        count_step(*args, **kwargs)
        if cut.state["step"] == 5:
            raise KeyboardInterrupt

    cut.count_step = stop_at_five  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert '"batches": 4' in saved["methods"]
    Trainer.resume(tmp_path / "cut", plugins=P, console=Console(file=io.StringIO())).fit()
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["network"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["network"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model", ["cgdt", "flag-trader"])
def test_both_methods_train_the_larger_models(model, small_prepared, tmp_path) -> None:
    """The harness runs the cheap built-ins; here one tiny run each of CGDT (trajectory windows)
    and FLAG-TRADER (windowed rollouts [T, N, W, D]) with both methods: batches or rollouts were
    augmented and the policy and value heads were re-initialised."""
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    from himari_tests_conformance import model_sets, skip_without_extras  # type: ignore[import-not-found]

    mspec = P.models().get(model)
    skip_without_extras(mspec)

    sets = ["train.epochs=1", "train.batch_size=16", "train.max_steps_per_epoch=2", "train.progress=false",
            *model_sets(model, mspec)]
    run = merge_run_config(plugins=P, overrides={"model": model, "data": str(small_prepared),
                                                 "methods": "orthogonal-init,online-augment"}, sets=sets)
    trainer = Trainer(run, plugins=P, run_dir=tmp_path / "run", console=Console(file=io.StringIO()))
    summary = trainer.fit()
    methods = dict(trainer.methods)
    state = methods["online-augment"].state_dict()
    assert state["batches" if model == "cgdt" else "rollouts"] >= 1
    roles = summary["methods"]["orthogonal-init"]["by_role"]
    assert roles["policy"] == 1 and roles["value"] == 1 and roles["hidden"] >= 3
