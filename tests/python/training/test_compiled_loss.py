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
@pytest.mark.parametrize("model", ["cql", "cgdt"])
# Two advisories, not faults, on a GPU: float32 attention runs torch's memory-efficient kernel,
# whose backward has no deterministic version (under train.deterministic torch says so, and the
# weights may differ from the eager run's by rounding, which the tolerance allows); and Inductor
# notes that it splits the tiny batch's softmax reduction instead of fusing it.
@pytest.mark.filterwarnings("ignore:Memory Efficient attention defaults to a non-deterministic algorithm:UserWarning")
@pytest.mark.filterwarnings(r"ignore:\s*Online softmax is disabled:UserWarning")
def test_compiled_and_replayed_on_a_gpu_matches_an_eager_run(model: str, small_prepared: Path, tmp_path: Path) -> None:
    """The combination the GPU benchmarks measure: float32 steps compiled and replayed as CUDA
    graphs end with the weights of the eager run (cgdt's guidance clock included; without
    dropout, whose masks a recorded step draws from the graph's own generator state)."""
    sets = [*STEPS, "train.device=cuda", "train.amp=false",
            *([*_cgdt_sets(), "cgdt.guidance_warmup=6", "cgdt.dropout=0.0"] if model == "cgdt" else [])]
    eager = _tiny_run(small_prepared, tmp_path / "eager", sets, model)
    both = _tiny_run(small_prepared, tmp_path / "both", [*sets, "train.compile=true", "train.cuda_graph=true"], model)
    if model == "cgdt":
        _assert_same_cgdt_training(eager, both)
    else:
        _assert_same_training(eager, both)


def test_cgdt_compiles_whole_once_its_critic_is_pre_trained_outside_the_loss(small_prepared: Path,
                                                                           tmp_path: Path) -> None:
    """cgdt pre-trains its critic with an optimiser of its own and ``requires_grad_``, which Dynamo
    cannot trace; its ``before_training`` does it before the first step, so the compiled loss is
    the policy's alone. 12 steps with a 6-step guidance warm-up: the compiled run trains the eager
    run's weights (the critic's, pre-trained the same, and the policy's). Wrong wirings this
    catches: the critic pre-trained inside the compiled loss (the run stops), not at all (no
    critic NLL recorded), or the guidance clock compiled as the constant it was when traced (the
    guidance term would stay off while the eager run's rises to full weight)."""
    sets = [*_cgdt_sets(), "cgdt.guidance_warmup=6", *STEPS]
    eager = _tiny_run(small_prepared, tmp_path / "eager", sets, "cgdt")
    compiled = _tiny_run(small_prepared, tmp_path / "compiled", [*sets, "train.compile=true"], "cgdt")
    _assert_same_cgdt_training(eager, compiled)


def test_a_run_whose_loss_cannot_be_compiled_whole_stops_and_leaves_nothing(small_prepared: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose loss Dynamo cannot trace in one piece (here cql's, made to branch on a tensor's
    value): the run stops at its first step with the setting named, and no run directory is left
    behind."""
    from himari_builtin.models.cql.model import CQL

    plain = CQL.loss

    def branching(self: CQL, batch: object, ctx: object) -> tuple:
        loss, logs = plain(self, batch, ctx)
        return (loss if loss > 0 else -loss), logs  # decided on the host from a value on the device

    monkeypatch.setattr(CQL, "loss", branching)
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["train", "cql", "--data", str(small_prepared), "--run-dir", str(run_dir),
                              "--epochs", "1", "--set", "train.compile=true", "--set", "train.max_steps_per_epoch=2"],
                        env={"COLUMNS": "200"})
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert "train.compile" in text and "run without train.compile" in text, text
    assert not run_dir.exists()


def _cgdt_sets() -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import TINY_MODEL  # type: ignore[import-not-found]

    return list(TINY_MODEL["cgdt"])


def _assert_same_cgdt_training(eager: dict, compiled: dict) -> None:
    """``_assert_same_training`` for cgdt runs, which both pre-trained their critic and took 12
    policy steps. A key's bias shifts every score of a query alike, which the softmax ignores:
    its gradient is zero in exact arithmetic, so AdamW moves it by +-lr on rounding noise; of
    the attention's qkv biases, the query and value thirds are compared."""
    for run in (eager, compiled):
        assert int(run["network"]["critic_ready"]) == 1 and torch.isfinite(run["network"]["critic_nll"])
        assert int(run["network"]["policy_steps"]) == 12
    qkv_biases = [k for k in eager["network"] if k.endswith("qkv.bias")]
    assert qkv_biases
    _assert_same_training(eager, compiled, skip=tuple(qkv_biases))
    for k in qkv_biases:
        d = eager["network"][k].shape[0] // 3
        for part in (slice(0, d), slice(2 * d, 3 * d)):
            torch.testing.assert_close(compiled["network"][k][part], eager["network"][k][part], rtol=1e-4, atol=2e-5)
