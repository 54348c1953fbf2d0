"""The Trainer's optimiser step replayed as CUDA graphs (``train.cuda_graph``).

Why: the networks most offline models train here (baseline-mlp's MLP, CQL's two small Q
networks) are tiny for a GPU. An eager step launches a few hundred kernels, each of which takes
the GPU microseconds and the host several times that to issue, so the GPU waits on Python. A
CUDA graph records the kernels of one step once and replays them with one launch.

What is recorded, per batch shape, after ``WARMUP`` ordinary (eager) steps of that shape, as
one graph: gradients zeroed in place, the loss and its logs (under autocast when the run uses
mixed precision), backward, gradient-norm clipping, the loss, every log and the norm written into
one float64 vector, then the optimiser's step (an AdamW built with ``fused=True`` and
``capturable=True``) told on the device whether the loss was finite.

A step copies the batch into the graph's input tensors, replays it and keeps the vector on the
device; the caller reads it later (``launch`` returns the reader), so the host queues the next
steps while the GPU runs this one. A read waits for the GPU: reading after every step
would make the host and the GPU take turns, and at CQL's size the host's part is about a fifth of
the step. The Trainer's loop reads every ``loop.READ_EVERY`` steps and before a checkpoint.

A non-finite loss stops the run as the eager step does, and as there the weights stay as they
were before that step: the fused optimiser reads the graph's ``found_inf`` flag and skips its
update, moments and step count (the mechanism ``torch.amp.GradScaler`` uses). The flag is set on
the device and stays set, so the steps queued after that one, before the host reads its loss,
skip their updates too; the error then names the step whose loss was not finite, and nothing
is saved after it. (What a loss changes itself, CQL's Polyak targets, is not the optimiser's to
skip; an eager step makes that change once before it stops too.) Recording the
guard on the device, instead of checking on the host between two graphs, makes the step one
launch with no round trip to the host in its middle.

The arithmetic is the eager step's, kernel for kernel; what a replay cannot do is run Python,
so only models that declare their ``loss`` graph-safe (``Model.cuda_graph_safe``: no reads of
tensor values on the host, no Python state that changes between steps, a Python-number log only
if it never changes) and runs without hooks that run Python between backward and the step
qualify (``eligibility``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from himari.errors import TrainingError
from himari.training.graph_replay import GraphReplay, graph_recording
from himari.training.loop import float64_vector, non_finite_loss

WARMUP = 2
"""Eager steps of a batch shape before its graphs are recorded: the first step of a shape
allocates the gradients, the optimiser's state and the libraries' workspaces, which a recording
must not do."""


MAX_SHAPES = 4
"""Batch shapes recorded at most (each holds its graphs' memory); steps of further shapes run
eagerly. An epoch has one shape, two when its last, smaller batch is kept (``drop_last=False``)."""


def eligibility(model: Any, model_name: str, methods: list[tuple[str, Any]], grad_accum_steps: int,
                distributed: bool, online: bool, scaler: bool = False) -> str | None:
    """Why a run cannot use ``train.cuda_graph`` (a sentence), or None when it can."""
    if online:
        return f"model {model_name!r} trains online (rollouts run Python between updates)"
    if not getattr(model, "cuda_graph_safe", False):
        return (f"model {model_name!r} does not declare its loss graph-safe (cuda_graph_safe): "
                f"its loss may read values on the host or keep Python state between steps")
    hooked = [n for n, m in methods if callable(getattr(m, "loss_terms", None))
              or callable(getattr(m, "before_optimizer_step", None))]
    if hooked:
        return (f"training method(s) {', '.join(map(repr, hooked))} add loss terms or run Python before the "
                f"optimiser step")
    if grad_accum_steps != 1:
        return "train.grad_accum_steps is not 1"
    if distributed:
        return "the run trains on several devices (--devices)"
    if scaler:
        return "fp16 mixed precision needs a loss scaler, which decides on the host (bf16 or amp=false do not)"
    return None


@dataclass
class _Graphs:
    inputs: list[Any]  # the batch's tensors, where each replay reads them
    spec: Any  # the batch's structure (pytree spec) and non-tensor leaves
    step: Any
    out: Any  # float64 [1 + logs + norm]
    names: list[str]
    grads: list[Any]  # the gradient tensors the graphs write (must stay the parameters' .grad)


class GraphedStep:
    """``train_step`` for one network, optimiser and loss, replayed as CUDA graphs per batch
    shape (see the module docstring). ``step(batch)`` returns the eager step's logs: the model's
    logs, ``grad_norm`` (when clipping) and ``loss``."""

    def __init__(self, parameters: list[Any], loss_fn: Callable[[Any], tuple[Any, dict[str, Any]]],
                 optimizer: Any, grad_clip: float, amp_dtype: Any = None,
                 step_label: Callable[[], str] | None = None, compiled_optimizer: bool = False) -> None:
        import torch

        self.parameters = [p for p in parameters if p.requires_grad]
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.grad_clip = float(grad_clip)
        self.amp_dtype = amp_dtype
        self.step_label = step_label or (lambda: "this step")
        self.graphs: dict[Any, _Graphs] = {}
        self.eager_steps: dict[Any, int] = {}
        self.stream = torch.cuda.Stream()
        self.pool = torch.cuda.graph_pool_handle()
        if not all(g.get("fused") and g.get("capturable") for g in optimizer.param_groups):
            raise ValueError("a graph-replayed step needs an optimiser built with fused=True (it skips its own "
                             "update on the device when the loss is not finite) and capturable=True")
        self.found_inf = torch.zeros((), device=self.parameters[0].device)
        self.logs = LogRing()
        # train.compile: AdamW's update compiled too (compiled_optimizer's docstring says why); the
        # fused step still makes the optimiser's state on the first step
        self.compiled_update = None
        if compiled_optimizer:
            from himari.training.compiled_optimizer import CompiledAdamW

            self.compiled_update = CompiledAdamW(optimizer)

    # --------------------------------------------------------------------- the step's parts

    def _autocast(self) -> Any:
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        # the cast-weight cache would hold tensors from one replay into the next: off when recording
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype, cache_enabled=False)

    def _forward_backward(self, batch: Any) -> tuple[Any, list[str]]:
        """Zero the gradients in place (the graphs write into the same tensors), loss, backward,
        clipping; the loss, logs and norm in one float64 vector."""
        import torch

        GraphReplay.zero_grad(self.parameters)
        with self._autocast():
            loss, logs = self.loss_fn(batch)
        loss.backward()
        names = list(logs)
        values = [loss.detach()] + [logs[k] for k in names]
        if self.grad_clip > 0:
            values.append(torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip))
            names.append("grad_norm")
        return float64_vector(values, loss.device), names

    def _reader(self, out: Any, names: list[str]) -> Callable[[], dict[str, float]]:
        """Keep ``out`` (the step's loss, logs and norm) on the device (``LogRing``) and return
        what reads it: stops the run if the loss was not finite (the weights stayed as they were:
        ``guarded_optimizer_step``) or returns the step's logs."""
        seq = self.logs.push(out)

        def read() -> dict[str, float]:
            values = self.logs.read(seq)
            if not math.isfinite(values[0]):
                raise non_finite_loss(values[0], self.step_label())
            logs = dict(zip(names, values[1:]))
            logs["loss"] = values[0]
            return logs

        return read

    # ------------------------------------------------------------------------------ steps

    def step(self, batch: Any) -> dict[str, float]:
        """One optimiser step over ``batch`` (already on the device), its logs read at once."""
        return self.launch(batch)()

    def launch(self, batch: Any) -> Callable[[], dict[str, float]]:
        """Queue one optimiser step over ``batch`` (already on the device) and return the reader
        of its logs (see the module docstring). Readers must be called in the order of their
        steps: a reader's error names the step ``step_label`` gives when it is called."""
        from torch.utils._pytree import tree_flatten

        leaves, spec = tree_flatten(batch)
        key = self._key(leaves, spec)
        graphs = self.graphs.get(key)
        if graphs is None:
            if self.eager_steps.get(key, 0) < WARMUP or len(self.graphs) >= MAX_SHAPES:
                self.eager_steps[key] = self.eager_steps.get(key, 0) + 1
                return self._eager(batch)
            graphs = self.graphs[key] = self._record(leaves, spec)
        import torch

        if any(p.grad is not g for p, g in zip(self.parameters, graphs.grads)):
            # something outside the step replaced or dropped a gradient (zero_grad(set_to_none=True)):
            # a replay would write into memory that is no longer the gradient
            raise TrainingError("train.cuda_graph: a parameter's gradient tensor changed between steps (something "
                                "outside the training step reset gradients); run without train.cuda_graph")
        for dst, src in zip(graphs.inputs, (x for x in leaves if isinstance(x, torch.Tensor))):
            dst.copy_(src, non_blocking=True)
        graphs.step.replay()
        return self._reader(graphs.out, graphs.names)

    @staticmethod
    def _key(leaves: list[Any], spec: Any) -> Any:
        import torch

        return (str(spec), tuple((tuple(x.shape), x.dtype, str(x.device)) if isinstance(x, torch.Tensor) else repr(x)
                                 for x in leaves))

    def _eager(self, batch: Any) -> Callable[[], dict[str, float]]:
        """An ordinary step, on the side stream the recordings use (so that what the first steps
        initialise lazily belongs to that stream), guarded on the device as a replay is: a step
        queued after a replayed one whose loss the host has not read yet must not move the weights
        if that loss was not finite."""
        import torch

        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            out, names = self._forward_backward(batch)
            # the compiled update once the state exists: compiled here, before a recording
            update = self.compiled_update if self.compiled_update and self.optimizer.state else None
            guarded_optimizer_step(self.optimizer, out[0], self.found_inf, update)
            read = self._reader(out, names)  # its copy on the stream that owns ``out``
        torch.cuda.current_stream().wait_stream(self.stream)
        return read

    def _record(self, leaves: list[Any], spec: Any) -> _Graphs:
        import torch
        from torch.utils._pytree import tree_unflatten

        inputs = [x.clone() for x in leaves if isinstance(x, torch.Tensor)]
        it = iter(inputs)
        static_batch = tree_unflatten([next(it) if isinstance(x, torch.Tensor) else x for x in leaves], spec)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        # a loss that is not graph-safe after all: say so, not a traceback
        what, way_out = ("train.cuda_graph: recording the step",
                         "the model's loss is not graph-safe: run without train.cuda_graph")
        with graph_recording(what, way_out), torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
            out, names = self._forward_backward(static_batch)
            guarded_optimizer_step(self.optimizer, out[0], self.found_inf, self.compiled_update)
        return _Graphs(inputs, spec, graph, out, names, [p.grad for p in self.parameters])


class LogRing:
    """The log vectors of the last ``size`` launched steps, kept on the device until they are read.

    ``push(vector)`` queues a device copy into the ring and returns the step's number;
    ``read(number)`` returns that step's values, copying it and every later step's to the host in
    one go (one wait for the device for all the steps queued since the last read). Steps are read
    in order, each once, within ``size`` steps of its push; anything else is an error, not a
    wrong value.

    Why not a pinned host buffer per step, copied asynchronously: that is an allocation per step,
    and torch's pinned-memory allocator records an event on the copy's stream when such a buffer
    is freed, a CUDA call that must not fall inside a recording. The ring is one device tensor
    that lives as long as its owner."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.ring: Any = None
        self.launched = 0
        self.copied_upto = 0  # steps before this number are on the host (or were read)
        self.on_host: dict[int, list[float]] = {}

    def push(self, vector: Any) -> int:
        import torch

        if self.ring is None or self.ring.shape[1] != vector.numel():
            self._copy_to_host(self.copied_upto)  # what the old ring holds, before it goes
            self.ring = torch.empty((self.size, vector.numel()), dtype=vector.dtype, device=vector.device)
        seq = self.launched
        self.launched += 1
        self.ring[seq % self.size].copy_(vector.reshape(-1))
        return seq

    def read(self, seq: int) -> list[float]:
        if seq not in self.on_host:
            if seq < self.copied_upto or seq >= self.launched:
                raise RuntimeError(f"step {seq}'s logs were read already, or never pushed")
            if self.launched - seq > self.size:
                raise RuntimeError(f"step {seq}'s logs were overwritten: read a step within {self.size} steps")
            self._copy_to_host(seq)
        return self.on_host.pop(seq)

    def _copy_to_host(self, first: int) -> None:
        """Steps ``first`` .. the last pushed, from the ring (one or two slices) to ``on_host``."""
        first = max(first, self.launched - self.size)
        if self.ring is not None and first < self.launched:
            start, count = first % self.size, self.launched - first
            rows = self.ring[start:start + count].tolist()
            if start + count > self.size:  # wrapped round the end of the ring
                rows += self.ring[:start + count - self.size].tolist()
            self.on_host.update(zip(range(first, self.launched), rows))
        self.copied_upto = self.launched


def guarded_optimizer_step(optimizer: Any, loss: Any, found_inf: Any,
                           update: Callable[[Any], None] | None = None) -> None:
    """``optimizer.step()`` that changes nothing (weights, moments, step count) when ``loss`` is
    not finite or an earlier guarded step's loss was not (``found_inf`` stays set), decided on the
    device: ``found_inf`` (a 0-d float tensor) is handed to the fused optimiser for this one call,
    as ``torch.amp.GradScaler`` hands it its own. Inside a recording the optimiser's kernels keep
    reading ``found_inf``, so every replay guards itself. It stays set because the host reads a
    step's loss only after it has queued the next steps (``GraphedStep.launch``), and those must
    leave the weights of the step that failed; the run stops when the host reads it. ``update``
    (``compiled_optimizer.CompiledAdamW``) replaces the optimiser's own step and reads the flag
    the same way."""
    import torch

    found_inf.copy_(torch.logical_or(found_inf, torch.logical_not(torch.isfinite(loss))))
    if update is not None:
        update(found_inf)
        return
    optimizer.found_inf = found_inf
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf
