"""GraphReplay (a fixed-shape step replayed as a CUDA graph): an ordinary call on the CPU; on a GPU
the replayed steps equal eager steps, a step that reads a value on the host or is called with
other shapes is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from himari.errors import TrainingError  # noqa: E402
from himari.plugin.api import GraphReplay  # noqa: E402


def _regression_step(device: str, capturable: bool) -> tuple[Any, Any]:
    """A linear regression step (in-place zeroing, Adam): returns (step fn, model)."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(5, 1).to(device)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 5, generator=g))
        model.bias.copy_(torch.randn(1, generator=g))
    opt = torch.optim.Adam(model.parameters(), lr=0.05, capturable=capturable)

    def step(x: Any, y: Any) -> Any:
        for p in model.parameters():
            if p.grad is not None:
                p.grad.zero_()
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return step, model


def _batches(device: str, n: int) -> list[tuple[Any, Any]]:
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    out = []
    for _ in range(n):
        x = torch.randn(32, 5, generator=g)
        out.append((x.to(device), (x @ w).to(device)))
    return out


def test_on_the_cpu_every_call_is_an_ordinary_call() -> None:
    calls: list[int] = []
    replay = GraphReplay(lambda x: calls.append(1) or x * 2, device="cpu", name="double", off="n/a")
    assert not replay.enabled
    for _ in range(5):
        assert float(replay(torch.tensor(3.0))) == 6.0
    assert len(calls) == 5 and not replay.replaying  # the Python ran every time: nothing was recorded


def test_inputs_other_than_tensors_are_refused_on_the_cpu_too() -> None:
    replay = GraphReplay(lambda x, k: x * k, device="cpu", name="scaled step", off="n/a")
    with pytest.raises(TypeError, match="scaled step: a replayed step takes tensors only .* got float"):
        replay(torch.ones(2), 2.0)


def test_zero_grad_zeroes_the_gradient_tensors_in_place_and_leaves_missing_ones_missing() -> None:
    """A replay writes into the gradient tensors that existed when it was recorded, so zeroing
    must keep them (not set them to None), and a parameter without a gradient must stay without
    one (an optimiser then skips it, as after an eager ``zero_grad``)."""
    a, b = (torch.nn.Parameter(torch.ones(n)) for n in (3, 5))
    c = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    a.grad, c.grad = torch.full((3,), 2.0), torch.full((2,), -1.5, dtype=torch.float64)
    kept = (a.grad, c.grad)
    GraphReplay.zero_grad([a, b, c])
    assert a.grad is kept[0] and c.grad is kept[1] and b.grad is None
    assert torch.equal(a.grad, torch.zeros(3)) and torch.equal(c.grad, torch.zeros(2, dtype=torch.float64))


def test_recordings_run_with_dead_cycles_collected_and_the_collector_off() -> None:
    """What a recording is wrapped in (``garbage_collector_paused``): a dead reference cycle
    whose finaliser would make a CUDA call (a failed recording's graph, in a traceback's cycle)
    is finalised before the block, none is finalised inside it, and the collector is on again
    after it, also when the block raises; one that was off stays off. Wrong pauses this catches:
    no collection first (the finaliser would run mid-recording), the collector left off after a
    failure, the caller's choice to keep it off overridden."""
    import gc

    from himari.training.graph_replay import garbage_collector_paused

    finalised: list[str] = []

    class HoldsAGraph:
        def __init__(self, name: str) -> None:
            self.name, self.me = name, self  # a cycle: only the cycle collector frees it

        def __del__(self) -> None:
            finalised.append(self.name)

    HoldsAGraph("before")
    assert gc.isenabled()
    with garbage_collector_paused():
        assert finalised == ["before"] and not gc.isenabled()
        HoldsAGraph("inside")
        for _ in range(100_000):  # allocations that would trigger a collection if it were on
            [[]]
        assert finalised == ["before"]
    assert gc.isenabled()
    with pytest.raises(RuntimeError), garbage_collector_paused():
        raise RuntimeError("a recording that fails")
    assert gc.isenabled()
    assert "inside" in finalised  # collected by the pause that followed
    gc.disable()
    try:
        with garbage_collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_warmup_must_allocate_first() -> None:
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        GraphReplay(lambda: None, device="cuda", name="s", off="n/a", warmup=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("warmup", [1, 3])
def test_replayed_steps_equal_eager_steps(warmup: int) -> None:
    batches = _batches("cuda", 10)
    eager_step, eager_model = _regression_step("cuda", capturable=True)
    eager_losses = [float(eager_step(x, y)) for x, y in batches]
    step, model = _regression_step("cuda", capturable=True)
    replay = GraphReplay(step, device="cuda", name="regression step", off="n/a", warmup=warmup)
    losses = []
    for i, (x, y) in enumerate(batches):
        losses.append(float(replay(x, y)))  # a new batch each call: a replay that kept the first would drift
        assert replay.replaying == (i >= warmup)
    # the same kernels on the same values: equal to float32 rounding, and the loss fell (the step learned)
    assert losses == pytest.approx(eager_losses, rel=1e-5)
    assert losses[-1] < 0.8 * losses[0]  # ten steps of this regression take it from about 28 to 15
    for a, b in zip(model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_other_shapes_after_recording_are_refused() -> None:
    step, _ = _regression_step("cuda", capturable=True)
    replay = GraphReplay(step, device="cuda", name="regression step", off="n/a", warmup=1)
    x, y = _batches("cuda", 1)[0]
    replay(x, y)
    replay(x, y)
    with pytest.raises(TrainingError, match=r"regression step: replayed with inputs \[\(16, 5\), \(16,\)\]"):
        replay(x[:16], y[:16])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_step_that_reads_a_value_on_the_host_is_refused_with_the_way_out() -> None:
    def step(x: Any) -> Any:
        if float(x.sum()) > 0:  # a host read: cannot be recorded
            return x * 2
        return x

    replay = GraphReplay(step, device="cuda", name="host-reading step", off="set graphs=false", warmup=1)
    x = torch.ones(4, device="cuda")
    replay(x)
    before = torch.cuda.get_rng_state()
    with pytest.raises(TrainingError,
                       match="host-reading step: recording it as a CUDA graph failed .*set graphs=false"):
        replay(x)
    # the failed recording left the GPU's random generator as it was and out of capture mode:
    # a later draw (a rollout's torch.multinomial) works instead of raising "Offset increment
    # outside graph capture"
    assert torch.equal(torch.cuda.get_rng_state(), before)
    draws = torch.multinomial(torch.ones(2, 3, device="cuda"), 1)
    assert draws.shape == (2, 1)


def test_a_failed_recording_becomes_a_training_error_with_the_way_out(monkeypatch) -> None:
    # graph_recording, what GraphReplay, the Trainer's graphed step and flag-trader's policy
    # record under: torch's first line between what failed and the way out; other errors pass.
    # (The generator guard needs a GPU: the CUDA tests above check it.)
    import contextlib

    from himari.plugin.api import graph_recording
    from himari.training import graph_replay

    monkeypatch.setattr(graph_replay, "rng_kept_if_recording_fails", contextlib.nullcontext)
    with pytest.raises(TrainingError, match=r"^my step: recording it failed \(operation not permitted when stream "
                                            r"is capturing\); set graphs=false to run it eagerly$"):
        with graph_recording("my step: recording it", "set graphs=false to run it eagerly"):
            raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")
    with pytest.raises(KeyError), graph_recording("my step", "set graphs=false"):
        raise KeyError("not a recording failure")
