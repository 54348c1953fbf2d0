"""BaselineMLP: its architecture and size, its three losses, and its class weights."""

from __future__ import annotations

import pytest
import torch

from himari.plugin import ModelContext
from himari.plugin.listing import model_parameters
from himari.plugin.manager import get_plugins

SPEC = get_plugins().models().get("baseline-mlp")


def build(**cfg):
    return SPEC.factory(SPEC.config(**cfg), ModelContext(n_features=60, class_counts=(100, 700, 200)))


def test_architecture_and_16643_parameters() -> None:
    model = build()
    kinds = [type(m).__name__ for m in model.network]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert sum(p.numel() for p in model.network.parameters()) == 16_643
    assert model_parameters(SPEC) == (16_643, 16_643)
    assert model_parameters(SPEC, SPEC.config(hidden_sizes=(32,)), 10) == (10 * 32 + 32 + 64 + 32 * 3 + 3,) * 2


def test_losses_differ_and_class_weights_favour_rare_classes() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 60), torch.randint(0, 3, (64,))
    losses = {}
    for name in ("cross-entropy", "class-weighted", "focal"):
        torch.manual_seed(1)
        model = build(loss=name)
        model.network.eval()
        loss, logs = model.loss((x, y), None)
        assert torch.isfinite(loss) and 0 <= logs["accuracy"] <= 1
        losses[name] = float(loss.detach())
    assert len(set(losses.values())) == 3
    assert losses["focal"] < losses["cross-entropy"]  # focal down-weights every example
    w = build().network.class_weight
    assert w[1] < w[2] < w[0]  # HOLD (700) weighs least, SELL (100) most


def test_bad_config_values() -> None:
    with pytest.raises(ValueError, match="dropout"):
        SPEC.config(dropout=1.0)
    with pytest.raises(ValueError, match="hidden_sizes"):
        SPEC.config(hidden_sizes=())


@pytest.mark.parametrize("value", [0, -1])
def test_eval_batch_size_below_one_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match=f"eval_batch_size must be >= 1, got {value}"):
        SPEC.config(eval_batch_size=value)


def test_eval_batch_size_below_one_is_refused_by_the_command(tmp_path) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    res = CliRunner().invoke(app, ["train", "baseline-mlp", "--run-dir", str(tmp_path / "run"),
                                   "--set", "baseline-mlp.eval_batch_size=-1"])
    assert res.exit_code == 2 and "eval_batch_size must be >= 1" in res.output, res.output
    assert not (tmp_path / "run").exists()
