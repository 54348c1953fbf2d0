"""``train.compile``: the Trainer's loss compiled by torch.compile. A compiled run trains the same
weights as an uncompiled one to float rounding (on the CPU here, on a GPU with its steps replayed
as CUDA graphs too), compilation really happens, and a loss that cannot be compiled whole fails
with a sentence that names the setting. Runs refused before they start (the rules
``train.cuda_graph`` shares): test_graph_step.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app

torch = pytest.importorskip("torch")

runner = CliRunner()
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
STEPS = ["train.max_steps_per_epoch=12", "train.patience=0"]


def _tiny_run(data: Path, run_dir: Path, sets: list[str], model: str = "cql") -> dict:
    """The run's last checkpoint, with its summary under ``"summary"``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import tiny_run  # type: ignore[import-not-found]

    summary = tiny_run(model, data, run_dir, sets=sets)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    return {**checkpoint, "summary": summary}


def _assert_same_training(a: dict, b: dict, skip: tuple[str, ...] = ()) -> None:
    """The same 12 steps and the same weights to float rounding as AdamW amplifies it: where a
    gradient is about zero, its first update is about +-lr whatever the rounding (on an H100 one
    element of cql's w1 ended 7e-6 apart after one step, every other within 1e-7). An update
    moves a weight by up to lr = 1e-3 a step, so a run that trains differently (another loss,
    no steps, other parameters, other dropout masks) ends orders of magnitude further apart than
    ``atol``. ``skip``: tensors whose gradient is zero in exact arithmetic, which AdamW moves by
    +-lr a step on rounding noise alone."""
    assert json.loads(a["trainer"])["step"] == json.loads(b["trainer"])["step"] == 12  # the same steps
    for k, v in a["network"].items():
        if k not in skip:
            torch.testing.assert_close(b["network"][k], v, rtol=1e-4, atol=2e-5, msg=k)


def test_a_compiled_run_trains_the_weights_of_an_uncompiled_one(small_prepared: Path, tmp_path: Path) -> None:
    """cql, 12 steps on the CPU: the same weights (Polyak targets included) to float rounding,
    Dynamo compiled a graph during the run, and a second compiled run gives the first's weights
    exactly. Wrong wirings this catches: the setting ignored (no
    graph compiled), the compiled module's parameters not the optimised ones (weights diverge or
    stay put), a different loss compiled."""
    from torch._dynamo.utils import counters

    eager = _tiny_run(small_prepared, tmp_path / "eager", STEPS)
    before = counters["stats"]["unique_graphs"]
    compiled = _tiny_run(small_prepared, tmp_path / "compiled", [*STEPS, "train.compile=true"])
    assert counters["stats"]["unique_graphs"] > before
    _assert_same_training(eager, compiled)
    again = _tiny_run(small_prepared, tmp_path / "again", [*STEPS, "train.compile=true"])
    for k, v in compiled["network"].items():  # deterministic for its seed on the CPU: bit for bit
        assert torch.equal(again["network"][k], v), k


def test_baseline_mlp_compiles_whole_with_the_uncompiled_dropout_masks(small_prepared: Path, tmp_path: Path) -> None:
    """The other model whose loss the docs say compiles. Its dropout draws from torch's generator
    as an uncompiled run does (Inductor's own random numbers would train with other masks: every
    weight 1e-2 apart after 12 steps), so the weights match to float rounding and the validation
    decisions nearly all agree: rounding may flip a decision whose two best scores nearly tie (on
    an AMD EPYC, one of 677 flipped; Inductor's generated code differs by the CPU's vector
    instructions), so up to 0.5% of them may differ."""
    eager = _tiny_run(small_prepared, tmp_path / "eager", STEPS, "baseline-mlp")
    compiled = _tiny_run(small_prepared, tmp_path / "compiled", [*STEPS, "train.compile=true"], "baseline-mlp")
    # the biases of the two Linear layers that feed a BatchNorm (which subtracts the batch mean,
    # so their gradient is zero) and the running means that follow them
    _assert_same_training(eager, compiled, skip=("0.bias", "4.bias", "1.running_mean", "5.running_mean"))
    got, want = compiled["summary"]["validation"]["model"], eager["summary"]["validation"]["model"]
    assert got["decisions"] == want["decisions"] > 500
    for action, share in want["actions"].items():
        assert abs(got["actions"][action] - share) <= 0.005, action


def test_a_loss_that_cannot_be_compiled_whole_is_a_clear_error() -> None:
    """A loss that branches on a tensor's value cannot be traced in one piece: a TrainingError
    that names the setting and the way out, not a Dynamo traceback and not a silently partial
    compile (the loss split at the branch, part of it run uncompiled)."""
    from himari.errors import TrainingError
    from himari.training.compiled_loss import CompiledLoss

    def branching_loss(x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if x.sum() > 0:  # decided on the host from a value on the device
            return x.sum(), {}
        return -x.sum(), {}

    with pytest.raises(TrainingError, match=r"train\.compile: .*run without train\.compile"):
        CompiledLoss(branching_loss)(torch.ones(3))


@pytest.mark.cuda
@cuda
def test_compiled_and_replayed_on_a_gpu_matches_an_eager_run(small_prepared: Path, tmp_path: Path) -> None:
    """The combination the GPU benchmark measures: float32 steps compiled and replayed as CUDA
    graphs end with the weights of the eager run."""
    sets = [*STEPS, "train.device=cuda", "train.amp=false"]
    eager = _tiny_run(small_prepared, tmp_path / "eager", sets)
    both = _tiny_run(small_prepared, tmp_path / "both", [*sets, "train.compile=true", "train.cuda_graph=true"])
    _assert_same_training(eager, both)


def test_cgdt_whose_loss_cannot_be_compiled_whole_stops_and_leaves_nothing(small_prepared: Path,
                                                                          tmp_path: Path) -> None:
    """cgdt's critic guidance takes a gradient inside its loss (``requires_grad_`` on the predicted
    actions), which Dynamo cannot trace in one piece: the run stops at its first step with the
    setting named and no run directory is left behind."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import TINY_MODEL  # type: ignore[import-not-found]

    run_dir = tmp_path / "run"
    sets = [x for s in [*TINY_MODEL.get("cgdt", []), "train.compile=true", "train.max_steps_per_epoch=2"]
            for x in ("--set", s)]
    res = runner.invoke(app, ["train", "cgdt", "--data", str(small_prepared), "--run-dir", str(run_dir),
                              "--epochs", "1", *sets], env={"COLUMNS": "200"})
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert "train.compile" in text and "run without train.compile" in text, text
    assert not run_dir.exists()
