"""A step function of fixed-shape tensors replayed as one CUDA graph (``GraphReplay``).

Why: plugins that train small networks for tens of thousands of steps (TimeGAN's five small
GRUs, 150,000 optimiser steps at the paper's size) are bound by the host issuing kernels, not by
the GPU: each kernel takes the GPU microseconds and Python several times that to launch. A CUDA
graph records the kernels of one call once and replays them with one launch.

What the function must do to be replayed (the same rules as ``Model.cuda_graph_safe``):

- read its inputs only from the tensors it is given (a replay reads them where the recording
  did: each call copies the new values there) and from tensors that live across calls
  (parameters, optimiser state);
- write its results only into the tensors it returns (the same tensors every replay: read or
  copy them before the next call) or in place into tensors that live across calls;
- zero gradients in place (``GraphReplay.zero_grad(parameters)``), not ``set_to_none``: a replay
  writes into the gradient tensors that existed when it was recorded;
- step optimisers built with ``capturable=True``;
- never read a tensor's value on the host (``.item()``, ``float()``, a Python ``if`` on a tensor)
  nor change Python state: the Python runs once, while recording.

The first ``warmup`` calls run eagerly (they allocate gradients, optimiser state and the
libraries' workspaces, which a recording must not do), on the side stream the recording uses.
On a CPU ``device``, or with ``enabled=False``, every call is an ordinary call.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from himari.errors import TrainingError

WARMUP = 2
"""Eager calls before the recording."""


@contextmanager
def rng_kept_if_recording_fails() -> Iterator[None]:
    """Give the current GPU's default random generator back its state if a recording fails.

    Why: starting a recording puts the generator in capture mode and only a recording that ends
    cleanly takes it out, so after a failed one (a step that reads a value on the host, say)
    every later random draw on that GPU (``torch.multinomial`` in a rollout, dropout) raises
    "Offset increment outside graph capture". The state is cloned before the recording and put
    back on failure: seed and offset as they were, as if the recording had never started.
    """
    import torch

    generator = torch.cuda.default_generators[torch.cuda.current_device()]
    saved = generator.clone_state()
    try:
        yield
    except BaseException:
        generator.graphsafe_set_state(saved)
        raise


@contextmanager
def garbage_collector_paused() -> Iterator[None]:
    """Collect garbage now, then keep Python's cycle collector off until the block ends.

    Why: a recording must not meet a CUDA call that is not part of it, and the cycle collector
    runs finalisers wherever it happens to run. A dead CUDA graph left in a reference cycle (a
    failed recording's, kept by its exception's traceback) was destroyed in the middle of the
    next recording, and its ``reset`` broke that recording ("operation not permitted when stream
    is capturing"), which then looked like a loss that is not graph-safe. torch collects before a
    recording only under ``torch.compiler.config.force_cudagraph_gc``."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def graph_recording(what: str, way_out: str) -> Iterator[None]:
    """Around one CUDA-graph recording (``with graph_recording(...), torch.cuda.graph(g): ...``):
    no garbage collection while it records (``garbage_collector_paused``); a recording that fails
    (a step that reads a value on the host, say) leaves the GPU's random generator as it was
    (``rng_kept_if_recording_fails``) and becomes a ``TrainingError`` "<what> failed (<torch's
    first line>); <way_out>" rather than a traceback."""
    try:
        with garbage_collector_paused(), rng_kept_if_recording_fails():
            yield
    except RuntimeError as e:
        raise TrainingError(f"{what} failed ({str(e).splitlines()[0]}); {way_out}") from None


class GraphReplay:
    """``fn(*inputs)`` recorded once as a CUDA graph after ``warmup`` eager calls, then replayed.

    ``name`` names the step in errors, and ``off`` says how the user runs without replay (for
    example ``"set cuda_graphs=false"``): a function that cannot be recorded is a ``TrainingError``
    that says both, never a traceback from inside the recording.
    """

    def __init__(self, fn: Callable[..., Any], *, device: Any, name: str, off: str, enabled: bool = True,
                 warmup: int = WARMUP) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (the first call allocates gradients and state), got {warmup}")
        self.fn = fn
        self.name = name
        self.off = off
        self.device = str(device)
        self.enabled = enabled and self.device.startswith("cuda")
        self.warmup = warmup
        self.eager_calls = 0
        self.graph: Any = None
        self.inputs: list[Any] = []
        self.outputs: Any = None
        self.stream: Any = None

    @staticmethod
    def zero_grad(parameters: Any) -> None:
        """Zero the existing gradients in place (what a replayed step must do instead of
        ``zero_grad(set_to_none=True)``; ``0 + g`` is ``g``, so the step is the same). Gradients
        never computed stay None, so an optimiser still skips their parameters. One foreach
        kernel zeroes them all (a loop would record one kernel per parameter in every replay)."""
        import torch

        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            torch._foreach_zero_(grads)

    @property
    def replaying(self) -> bool:
        """Whether the next call replays the recording."""
        return self.graph is not None

    def __call__(self, *inputs: Any) -> Any:
        import torch

        # checked on the CPU too, so a step written there does not first fail on a GPU
        wrong = [type(x).__name__ for x in inputs if not isinstance(x, torch.Tensor)]
        if wrong:
            raise TypeError(f"{self.name}: a replayed step takes tensors only (a replay reads them where the "
                            f"recording did), got {', '.join(wrong)}; keep other values in the step's closure")
        if not self.enabled:
            return self.fn(*inputs)

        with torch.cuda.device(self.device):  # streams, recording and replay on this GPU, not the current one
            return self._call(inputs)

    def _call(self, inputs: tuple[Any, ...]) -> Any:
        import torch

        if self.stream is None:
            self.stream = torch.cuda.Stream()
        if self.graph is None:
            if self.eager_calls < self.warmup:
                self.eager_calls += 1
                return self._on_side_stream(inputs)
            self._record(inputs)
        if len(inputs) != len(self.inputs) or any(
                a.shape != b.shape or a.dtype != b.dtype for a, b in zip(inputs, self.inputs)):
            raise TrainingError(f"{self.name}: replayed with inputs {[tuple(x.shape) for x in inputs]} but recorded "
                                f"with {[tuple(x.shape) for x in self.inputs]}")
        for dst, src in zip(self.inputs, inputs):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        return self.outputs

    def _on_side_stream(self, inputs: tuple[Any, ...]) -> Any:
        import torch

        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out = self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def _record(self, inputs: tuple[Any, ...]) -> None:
        import torch

        self.inputs = [x.clone() for x in inputs]
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with (graph_recording(f"{self.name}: recording it as a CUDA graph", f"{self.off} to run it eagerly"),
              torch.cuda.graph(graph, stream=self.stream)):
            self.outputs = self.fn(*self.inputs)
        self.graph = graph
