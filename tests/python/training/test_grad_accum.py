"""Gradient accumulation (train.grad_accum_steps): micro-batches give the same update as the
whole batch for a loss that is a mean over examples."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from himari.training.loop import split_batch, train_step  # noqa: E402


def test_split_batch_cuts_every_tensor_along_the_axis_and_keeps_the_rest() -> None:
    batch = {"obs": torch.arange(24.0).reshape(3, 4, 2), "actions": torch.zeros(3, 4, dtype=torch.long),
             "state": (torch.ones(1, 4, 5), torch.ones(1, 4, 5)), "note": "x"}
    parts = split_batch(batch, 3, axis=1)
    assert [size for _, size in parts] == [1, 2, 1]
    assert torch.equal(torch.cat([p["obs"] for p, _ in parts], dim=1), batch["obs"])
    assert all(p["state"][0].shape[1] == size and p["note"] == "x" for p, size in parts)
    assert split_batch(batch, 1, axis=1)[0][0] is batch
    assert [s for _, s in split_batch(torch.zeros(5, 2), 8, axis=0)] == [1, 1, 1, 1, 1]


def _gradients(prepared, tmp_path, accum: int) -> dict:
    """The gradients of one Trainer step on the first training batch (the optimiser step is
    skipped, so both settings start from the same seeded weights)."""
    import numpy as np
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config
    from himari.training.device import to_device
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "cql", "data": str(prepared)},
                           sets=["train.epochs=1", "train.batch_size=64", "train.progress=false",
                                 f"train.grad_accum_steps={accum}", "train.device=cpu", "train.grad_clip=0"])
    trainer = Trainer(run, plugins=plugins, run_dir=tmp_path / f"run-{accum}", console=Console(file=io.StringIO()))
    trainer._setup()
    trainer.optimizer.step = lambda *a, **k: None
    logs = train_step(trainer, to_device(trainer.train_ds[np.arange(64)], "cpu"))
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.network.named_parameters() if p.grad is not None}
    return {"loss": logs["loss"], **grads}


def test_accumulated_micro_batches_give_the_whole_batch_gradient(small_prepared, tmp_path) -> None:
    whole = _gradients(small_prepared, tmp_path, 1)
    micro = _gradients(small_prepared, tmp_path, 4)
    assert whole.keys() == micro.keys() and len(whole) > 2
    assert micro["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    for name in whole:
        if name != "loss":
            torch.testing.assert_close(micro[name], whole[name], rtol=1e-5, atol=1e-7, msg=name)


def test_grad_accum_steps_must_be_positive() -> None:
    from himari.training.config import TrainConfig

    with pytest.raises(ValueError, match="grad_accum_steps"):
        TrainConfig(grad_accum_steps=0)


def test_batches_of_one_are_refused_for_a_model_with_batch_norm_only() -> None:
    """Batch norm raises on one example while training: a last partial batch of one, or
    micro-batches of one, crashed mid-epoch after checkpoints, and --resume crashed the same way."""
    from himari.training.loop import batch_norm_batch_problem

    norm, plain = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)), torch.nn.Linear(3, 4)
    assert "the last batch of the epoch's 2,897 examples" in batch_norm_batch_problem([norm], 2897, 8, False, 1)
    assert batch_norm_batch_problem([norm], 2896, 8, False, 1) is None
    assert batch_norm_batch_problem([norm], 2897, 8, True, 1) is None  # the partial batch is dropped
    assert "train.grad_accum_steps" in batch_norm_batch_problem([norm], 2896, 64, True, 1000)
    assert batch_norm_batch_problem([norm], 2896, 64, True, 32) is None  # micro-batches of two
    assert batch_norm_batch_problem([norm], 2896, 64, True, 33) is not None  # some of one (split_batch's cut)
    assert min(size for _, size in split_batch(torch.zeros(64, 1), 33, axis=0)) == 1
    assert batch_norm_batch_problem([norm], 2900, 8, False, 4) is not None  # a last batch of 4 in 4 parts
    assert batch_norm_batch_problem([plain, torch.nn.ModuleDict()], 2897, 8, False, 1000) is None


def test_baseline_mlp_with_micro_batches_of_one_is_refused_before_its_run_exists(small_prepared, tmp_path) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    res = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--set", "recipe=none",
                                   "--batch-size", "64", "--set", "train.grad_accum_steps=1000",
                                   "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "batch normalisation" in " ".join(res.output.split()) and not (tmp_path / "run").exists()
