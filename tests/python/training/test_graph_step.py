"""``train.cuda_graph``: the Trainer's step replayed as CUDA graphs. Who may use it is decided on
any machine (a run that cannot is refused before anything is written); what a replay computes is
checked on a GPU against the eager step, step for step."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.training.graph_step import eligibility

torch = pytest.importorskip("torch")

runner = CliRunner()
SAFE = SimpleNamespace(cuda_graph_safe=True)


def test_only_declared_offline_models_without_python_hooks_qualify() -> None:
    assert eligibility(SAFE, "m", [], 1, False, False) is None
    assert "does not declare" in eligibility(SimpleNamespace(), "m", [], 1, False, False)
    assert "trains online" in eligibility(SAFE, "m", [], 1, False, True)
    terms = SimpleNamespace(loss_terms=lambda *a: {})
    surgery = SimpleNamespace(before_optimizer_step=lambda *a: None)
    data_only = SimpleNamespace(epoch_dataset=lambda ds, ctx: ds)  # changes the data, not the step
    why = eligibility(SAFE, "m", [("terms", terms), ("data", data_only), ("surgery", surgery)], 1, False, False)
    assert "'terms', 'surgery'" in why and "'data'" not in why
    assert eligibility(SAFE, "m", [("data", data_only)], 1, False, False) is None
    assert "grad_accum_steps" in eligibility(SAFE, "m", [], 2, False, False)
    assert "several devices" in eligibility(SAFE, "m", [], 1, True, False)
    assert "loss scaler" in eligibility(SAFE, "m", [], 1, False, False, scaler=True)


def test_the_builtin_declarations() -> None:
    """baseline-mlp, cql and cgdt compute their loss from tensors alone and their replays are
    checked on a GPU (cgdt's guidance clock below); the online models roll out between updates."""
    from himari_builtin.models.baseline_mlp.model import BaselineMLP
    from himari_builtin.models.cgdt.model import CGDT
    from himari_builtin.models.cql.model import CQL
    from himari_builtin.models.flag_trader.model import FlagTrader
    from himari_builtin.models.ppo_lstm.model import PPOLSTM

    classes = (BaselineMLP, CQL, CGDT, PPOLSTM, FlagTrader)
    assert {c for c in classes if getattr(c, "cuda_graph_safe", False)} == {BaselineMLP, CQL, CGDT}


@pytest.mark.parametrize(("model", "sets", "why"), [
    ("ppo-lstm", [], "trains online"),
    ("baseline-mlp", ["train.grad_accum_steps=2"], "grad_accum_steps"),
    ("baseline-mlp", ["--method multi-task"], "'multi-task'"),
])
@pytest.mark.parametrize("setting", ["cuda_graph", "compile"])  # train.compile takes the same runs
def test_a_run_that_cannot_be_replayed_is_refused_and_leaves_nothing(model: str, sets: list[str], why: str,
                                                                     setting: str, small_prepared: Path,
                                                                     tmp_path: Path) -> None:
    extra = [x for s in sets for x in (s.split() if s.startswith("--") else ["--set", s])]
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["train", model, "--data", str(small_prepared), "--run-dir", str(run_dir),
                              "--epochs", "1", "--set", f"train.{setting}=true", *extra], env={"COLUMNS": "200"})
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert f"train.{setting}" in text and why in text, text
    assert not run_dir.exists()


def test_the_guarded_optimizer_step_skips_a_non_finite_loss_on_the_device() -> None:
    """What a replayed step relies on to keep the weights of a non-finite step, checked with the
    fused AdamW on the CPU: finite losses step exactly as a plain ``step()``; from a NaN (or inf)
    loss on nothing moves (weights, both moments, step count), finite losses after it included,
    because the host reads a step's loss only after it has queued the next ones; clearing the flag
    lets steps through again. The flag does not outlive the call (a later plain step must not read
    it). Wrong guards this catches: the flag's sense inverted, no flag handed over, a flag that
    a later finite loss clears, the flag left on the optimiser."""
    from himari.training.graph_step import guarded_optimizer_step

    def fresh() -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(7))
        return w, torch.optim.AdamW([w], lr=0.1, weight_decay=0.01, fused=True)

    w, opt = fresh()
    ref_w, ref_opt = fresh()
    found_inf = torch.zeros(())
    losses = (1.5, 0.5, float("nan"), 0.25, float("inf"), -2.0, "clear", 0.75, -1.0)
    for loss in losses:
        if loss == "clear":
            found_inf.zero_()
            continue
        grad = torch.linspace(-1.0, 1.0, 7) * (float("nan") if math.isnan(loss) else 1.0)
        w.grad = grad.clone()
        before = (w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()})
        guarded_optimizer_step(opt, torch.tensor(loss, dtype=torch.float64), found_inf)
        assert not hasattr(opt, "found_inf")
        if float(found_inf):  # this loss or an earlier one was not finite
            assert torch.equal(w.detach(), before[0])
            assert all(torch.equal(v, opt.state[w][k]) for k, v in before[1].items())
            continue
        ref_w.grad = grad.clone()
        ref_opt.step()
        assert torch.equal(w.detach(), ref_w.detach())
    assert int(opt.state[w]["step"]) == 4 == int(ref_opt.state[ref_w]["step"])  # 1.5, 0.5, 0.75, -1.0


def test_a_step_logs_vector_is_exact_and_casts_once_when_the_logs_share_a_dtype() -> None:
    """``float64_vector`` builds the vector a step's logs reach the host in. Nine float32 values
    (CQL's count) must come out as their exact float64 widenings, with one cast for all of them:
    a cast per value is a kernel per value inside a replayed step. Mixed inputs (a bf16 tensor,
    a float64 one, a Python number) still give each value exactly. Wrong versions this catches:
    a cast per value, a vector built in float32 (a float64 log rounded), numbers dropped or
    reordered."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from himari.training.loop import float64_vector

    class CountCasts(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.casts = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.overloadpacket in (torch.ops.aten._to_copy, torch.ops.aten.copy_):
                self.casts += 1
            return func(*args, **(kwargs or {}))

    gen = torch.Generator().manual_seed(3)
    logs = [torch.randn((), generator=gen) / 7 for _ in range(9)]
    with CountCasts() as counter:
        vec = float64_vector(logs, torch.device("cpu"))
    assert counter.casts == 1
    assert vec.dtype == torch.float64
    assert vec.tolist() == [float(v) for v in logs]

    tiny = 1.0 + 2.0 ** -40  # rounds away in float32
    mixed = [torch.tensor(0.1, dtype=torch.bfloat16), torch.tensor(tiny, dtype=torch.float64), 2.5,
             torch.tensor([-3.25])]
    assert float64_vector(mixed, torch.device("cpu")).tolist() == [float(mixed[0]), tiny, 2.5, -3.25]


def test_the_log_ring_gives_each_step_its_values_across_wraps_and_refuses_the_rest() -> None:
    """A ring of 5 (on the CPU; the same tensor operations on a GPU): steps read one at a time,
    in runs of 3, after the ring wrapped round its end, and across a change of the vector's
    length give exactly the values pushed; a read twice, a read of a step never pushed and a read
    of an overwritten step are errors. Wrong rings this catches: the wrapped part taken from the
    wrong end, a step's row confused with another's, an old ring dropped before its unread rows
    were copied, an overwritten row returned as if it were the step's."""
    from himari.training.graph_step import LogRing

    ring = LogRing(size=5)

    def vector(i: int, width: int = 3) -> torch.Tensor:
        return torch.arange(width, dtype=torch.float64) + 10.0 * i

    def values(i: int, width: int = 3) -> list[float]:
        return vector(i, width).tolist()

    seqs = [ring.push(vector(i)) for i in range(3)]
    assert seqs == [0, 1, 2]
    assert [ring.read(s) for s in seqs] == [values(i) for i in range(3)]
    for start in (3, 6, 9):  # runs of 3 pushes, then 3 reads: rows wrap at 5 and 10
        got = [ring.push(vector(i)) for i in range(start, start + 3)]
        assert [ring.read(s) for s in got] == [values(i) for i in range(start, start + 3)]
    pushed = [ring.push(vector(i)) for i in range(12, 16)]  # four queued, then the width changes
    wide = ring.push(vector(16, width=4))
    assert [ring.read(s) for s in pushed] == [values(i) for i in range(12, 16)]
    assert ring.read(wide) == values(16, width=4)
    with pytest.raises(RuntimeError, match="read already"):
        ring.read(wide)
    with pytest.raises(RuntimeError, match="never pushed"):
        ring.read(wide + 1)
    late = [ring.push(vector(i, width=4)) for i in range(17, 23)]  # 6 pushed into a ring of 5
    with pytest.raises(RuntimeError, match="overwritten"):
        ring.read(late[0])
    assert [ring.read(s) for s in late[1:]] == [values(i, width=4) for i in range(18, 23)]


# ------------------------------------------------------------------------------- on a GPU

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cql(target: str = "min") -> tuple[object, object]:
    from himari_builtin.models.cql import CQL, CQLConfig

    from himari.plugin.api import ModelContext

    torch.manual_seed(0)
    model = CQL(CQLConfig(hidden_sizes=(32, 32), target=target), ModelContext(n_features=6))
    model.network.to("cuda").train()
    return model, torch.optim.AdamW(model.network.parameters(), lr=1e-2, weight_decay=1e-4, fused=True,
                                       capturable=True)


def _batches(n: int, size: int = 64, nan_at: int | None = None) -> list[tuple]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        s, s2 = torch.randn(size, 10, generator=g), torch.randn(size, 10, generator=g)
        r = torch.randn(size, generator=g)
        if i == nan_at:
            r[3] = float("nan")
        out.append(tuple(x.to("cuda") for x in (s, torch.randint(0, 3, (size,), generator=g), r, s2,
                                                 (torch.rand(size, generator=g) < 0.1).float())))
    return out


def _eager_step(model, opt, batch) -> dict[str, float]:
    """The Trainer's eager step (``loop.train_step`` without micro-batches or hooks)."""
    from himari.training.loop import host_floats

    opt.zero_grad(set_to_none=True)
    loss, logs = model.loss(batch, None)
    loss.backward()
    out = host_floats({**logs, "grad_norm": torch.nn.utils.clip_grad_norm_(model.network.parameters(), 1.0),
                       "loss": loss.detach()})
    opt.step()
    return out


def _assert_same_steps(eager_logs: list[dict], eager_model: object, logs: list[dict], model: object) -> None:
    """Replayed steps logged what the eager steps logged (the same names, values to float
    rounding) and left the same weights and buffers."""
    assert len(logs) == len(eager_logs)
    for want, got in zip(eager_logs, logs):
        assert set(want) == set(got)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), k
    for (name, want), got in zip(eager_model.network.state_dict().items(), model.network.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("compiled_optimizer", [False, True])
def test_replayed_steps_equal_eager_steps(compiled_optimizer: bool) -> None:
    """Twelve CQL steps over batches of two shapes (the last, smaller batch of an epoch gets
    graphs of its own): the same weights, Polyak targets and logs as eager steps, with torch's
    fused AdamW replayed or with the compiled update ``train.compile`` replays (which must then
    have been compiled). Wrong replays this catches: inputs not copied in (the recorded batch
    every time), gradients accumulated over replays (no zeroing), the optimiser step or the
    Polyak update not replayed, the compiled update's arithmetic off on the GPU."""
    from torch._dynamo.utils import counters

    from himari.training.graph_step import GraphedStep

    big, small = _batches(9), _batches(3, size=17)
    order = big[:5] + small + big[5:]
    eager_model, eager_opt = _cql()
    eager_logs = [_eager_step(eager_model, eager_opt, b) for b in order]
    model, opt = _cql()
    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]
    stepper = GraphedStep(list(model.network.parameters()), lambda b: model.loss(b, None), opt, 1.0,
                          compiled_optimizer=compiled_optimizer)
    logs = [stepper.step(b) for b in order]
    assert len(stepper.graphs) == 2  # one recording per batch shape, after its eager warm-up
    assert (counters["stats"]["unique_graphs"] > before) == compiled_optimizer
    _assert_same_steps(eager_logs, eager_model, logs, model)


@pytest.mark.cuda
@cuda
def test_a_non_finite_loss_stops_before_the_weights_change() -> None:
    from himari.errors import TrainingError
    from himari.training.graph_step import GraphedStep

    model, opt = _cql()
    stepper = GraphedStep(list(model.network.parameters()), lambda b: model.loss(b, None), opt, 1.0)
    batches = _batches(6, nan_at=5)
    for b in batches[:5]:  # two eager steps, then recorded and replayed
        stepper.step(b)
    assert stepper.graphs
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.network.parameters()}
    with pytest.raises(TrainingError, match="loss is nan"):
        stepper.step(batches[5])
    after = model.network.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # the Polyak update is part of the loss (it runs first, as in an eager step); nothing else moved,
    # the optimiser's moments and step counts neither (the replayed AdamW skipped itself)
    assert all(k.startswith("target_") for k in changed), changed
    for p in model.network.parameters():
        assert all(torch.equal(v, opt.state[p][k]) for k, v in moments[id(p)].items())


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("compiled_optimizer", [False, True])
def test_steps_queued_after_a_non_finite_loss_leave_its_weights(compiled_optimizer: bool) -> None:
    """Steps launched before their logs are read, as the Trainer's loop launches them: a NaN
    loss at the sixth step (a replay) and two finite steps queued after it, before any read.
    Read in order, five steps give the eager steps' logs, the sixth raises naming itself, and the
    networks and AdamW's moments and step counts are those of five eager steps: the two queued
    steps skipped their updates too. Wrong guards this catches: a flag each step resets (the
    seventh and eighth steps would train), a reader that does not raise, readers that read
    another step's vector; with the compiled update (``train.compile``), one that ignores the
    flag."""
    from himari.errors import TrainingError
    from himari.training.graph_step import GraphedStep

    batches = _batches(8, nan_at=5)
    eager_model, eager_opt = _cql()
    want = [_eager_step(eager_model, eager_opt, b) for b in batches[:5]]
    model, opt = _cql()
    got: list[dict] = []
    stepper = GraphedStep(list(model.network.parameters()), lambda b: model.loss(b, None), opt, 1.0,
                          step_label=lambda: f"step {len(got) + 1}", compiled_optimizer=compiled_optimizer)
    readers = [stepper.launch(b) for b in batches]
    assert stepper.graphs  # steps 3 to 8 replayed
    got.extend(read() for read in readers[:5])
    with pytest.raises(TrainingError, match="loss is nan at step 6"):
        readers[5]()
    assert len(got) == len(want)
    for w, g in zip(want, got):
        assert g == pytest.approx(w, rel=1e-4, abs=1e-6)
    online = {k: v for k, v in eager_model.network.state_dict().items() if not k.startswith("target_")}
    after = model.network.state_dict()
    for k, v in online.items():  # (the Polyak targets move in every loss, queued steps' included)
        torch.testing.assert_close(after[k], v, rtol=1e-4, atol=1e-6, msg=k)
    for p, ref in zip(model.network.parameters(), eager_model.network.parameters()):
        assert int(opt.state[p]["step"]) == int(eager_opt.state[ref]["step"]) == 5
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[p][k], eager_opt.state[ref][k], rtol=1e-4, atol=1e-7)


@pytest.mark.cuda
@cuda
def test_a_training_run_with_graphs_matches_one_without(small_prepared: Path, tmp_path: Path) -> None:
    """The Trainer end to end (float32 steps, so the kernels are the same): the final weights of
    a cql run replayed as graphs equal those of the eager run."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import tiny_run  # type: ignore[import-not-found]

    sets = ["train.device=cuda", "train.amp=false", "train.max_steps_per_epoch=12", "train.patience=0"]
    tiny_run("cql", small_prepared, tmp_path / "eager", sets=sets)
    tiny_run("cql", small_prepared, tmp_path / "graph", sets=[*sets, "train.cuda_graph=true"])
    a = torch.load(tmp_path / "eager" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "graph" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    import json

    assert json.loads(a["trainer"])["step"] == json.loads(b["trainer"])["step"] == 12  # the same steps
    for k, v in a["network"].items():
        torch.testing.assert_close(b["network"][k], v, rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.cuda
@cuda
def test_cgdt_replayed_steps_follow_its_guidance_clock() -> None:
    """cgdt's guidance coefficient rises over its first steps: replays must read the step
    counter where it lives (a clock kept on the host would freeze at the recorded value). Eight
    steps with a 6-step warm-up, no dropout: the same logs (guidance_c among them) and weights
    as eager steps."""
    from himari_builtin.models.cgdt import CGDT, CGDTConfig

    from himari.plugin.api import ModelContext
    from himari.training.graph_step import GraphedStep

    cfg = CGDTConfig(context_length=8, d_model=32, n_layers=2, n_heads=2, dropout=0.0, critic_dim=16, critic_layers=1,
                     critic_heads=2, guidance_warmup=6, guidance_weight=1.0)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 8, 10, generator=g).cuda(), torch.randint(0, 3, (16, 8), generator=g).cuda(),
                torch.randn(16, 8, generator=g).cuda()) for _ in range(8)]

    def build() -> tuple[object, object]:
        torch.manual_seed(0)
        model = CGDT(cfg, ModelContext(n_features=6))
        model.network.to("cuda").train()
        model.network.set_critic_ready()  # the critic phase is its own loop, not a step
        model.network.critic_nll.fill_(0.25)  # what the critic phase leaves (NaN before it, and NaN != NaN)
        return model, torch.optim.AdamW(model.network.parameters(), lr=1e-3, fused=True, capturable=True)

    eager_model, eager_opt = build()
    want = [_eager_step(eager_model, eager_opt, b) for b in batches]
    model, opt = build()
    stepper = GraphedStep(list(model.network.parameters()), lambda b: model.loss(b, None), opt, 1.0)
    got = [stepper.step(b) for b in batches]
    assert stepper.graphs
    assert [r["guidance_c"] for r in got] == pytest.approx([i / 6 if i < 6 else 1.0 for i in range(8)], rel=1e-6)
    _assert_same_steps(want, eager_model, got, model)


@pytest.mark.cuda
@cuda
def test_a_loss_that_cannot_be_recorded_is_a_clear_error() -> None:
    """A loss declared graph-safe that copies a host tensor to the GPU each step (what cgdt's
    forward did) cannot be recorded: a TrainingError that says to run without graphs."""
    from himari.errors import TrainingError
    from himari.training.graph_step import GraphedStep

    model, opt = _cql()

    def loss(b: tuple) -> tuple:
        value, logs = model.loss(b, None)
        return value + torch.zeros(()).to("cuda"), logs  # a host-to-device copy inside the step

    stepper = GraphedStep(list(model.network.parameters()), loss, opt, 1.0)
    batches = _batches(3)
    stepper.step(batches[0])
    stepper.step(batches[1])  # the eager warm-up runs it fine
    before = torch.cuda.get_rng_state()
    with pytest.raises(TrainingError, match="run without train.cuda_graph"):
        stepper.step(batches[2])
    # the failed recording left the GPU's random generator as it was, usable (a rollout samples)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert torch.multinomial(torch.ones(2, 3, device="cuda"), 1).shape == (2, 1)


@pytest.mark.cuda
@cuda
def test_gradients_reset_outside_the_step_stop_the_replay() -> None:
    """The graphs write into the gradient tensors they were recorded with; code that drops them
    between steps (``zero_grad(set_to_none=True)``) would leave a replay writing into freed
    memory. The step refuses instead."""
    from himari.errors import TrainingError
    from himari.training.graph_step import GraphedStep

    model, opt = _cql()
    stepper = GraphedStep(list(model.network.parameters()), lambda b: model.loss(b, None), opt, 1.0)
    batches = _batches(5)
    for b in batches[:4]:
        stepper.step(b)
    opt.zero_grad(set_to_none=True)
    with pytest.raises(TrainingError, match="gradient tensor changed"):
        stepper.step(batches[4])


@pytest.mark.cuda
@cuda
def test_a_constant_python_log_is_recorded_and_extra_shapes_run_eagerly() -> None:
    """A loss may log a Python number that never changes (it becomes a device fill, not a host
    copy a recording refuses); beyond ``MAX_SHAPES`` batch shapes, steps run eagerly rather than
    holding ever more graphs, and still train."""
    from himari.training import graph_step
    from himari.training.graph_step import GraphedStep

    model, opt = _cql()

    def loss(b: tuple) -> tuple:
        value, logs = model.loss(b, None)
        return value, {**logs, "constant": 0.25}

    stepper = GraphedStep(list(model.network.parameters()), loss, opt, 1.0)
    sizes = [8 + i for i in range(graph_step.MAX_SHAPES + 1)]
    for size in sizes:
        for b in _batches(3, size=size):
            logs = stepper.step(b)
            assert logs["constant"] == 0.25
    assert len(stepper.graphs) == graph_step.MAX_SHAPES
    before = model.network.w0.detach().clone()
    stepper.step(_batches(1, size=sizes[-1])[0])  # the extra shape: an ordinary step
    assert not torch.equal(before, model.network.w0)
