"""The Trainer's loss compiled by ``torch.compile`` (``train.compile``).

Why: a replayed step (``train.cuda_graph``) removes the host's launch cost, but the GPU still
runs every small elementwise kernel of the loss and its backward one after another; for CQL's
two small Q networks that was 176 kernels and ~380 us of GPU time a step on an H100, most of it
in kernels that each touch a few kilobytes. TorchInductor fuses chains of such operations (the
conservative term's logsumexp, the Bellman target, the masks and means, and their gradients)
into a few generated kernels; the graph then records the fused step. Measured in
``benchmarks/bench_cql.py`` (``benchmarks/GPU_NOTES.md``).

The loss is compiled whole (``fullgraph=True``): a loss that Dynamo cannot trace in one piece
would otherwise run partly compiled and partly eager without saying so, and a graph break
inside a recorded step is exactly what a replay cannot contain. Shapes are static
(``dynamic=False``): a run has one batch shape (two when its last, smaller batch is kept), each
compiled once, and each run compiles afresh (``CompiledLoss``).

The numerics are float rounding away from the eager loss (fused kernels may sum in another
order); a run with it is deterministic for its seed on the CPU, as an eager run is, but not
bit-identical to the eager run. Random operations (dropout) draw from torch's generator as the
eager loss does (Inductor's ``fallback_random``), not from Inductor's own generator, whose
different masks would make a compiled run train another network.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from himari.errors import TrainingError

WAY_OUT = "run without train.compile"


class CompiledLoss:
    """``loss_fn`` (the module the Trainer calls with a batch) compiled on its first call; a
    failure to trace or to generate code is a ``TrainingError`` that names the setting, not a
    compiler traceback."""

    def __init__(self, loss_fn: Any) -> None:
        import torch

        # Dynamo keeps compiled code per code object, not per run: every run's loss module shares
        # one ``forward``, so runs in one process (a sweep's trials, an evaluation's folds and
        # seeds) would pile up recompilations until its limit, after which it runs eagerly without
        # failing. Each run starts from an empty cache instead and pays its own compilation.
        torch._dynamo.reset()
        self._compiled: Callable[[Any], Any] = torch.compile(loss_fn, fullgraph=True, dynamic=False,
                                                                     options={"fallback_random": True})

    def __call__(self, batch: Any) -> tuple[Any, dict[str, Any]]:
        import torch._dynamo.exc as dynamo_exc

        try:
            with warnings.catch_warnings():
                # Inductor's advice to let float32 matmuls run in TF32: the run's precision is
                # train.amp's choice, not the compiler's
                warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores", category=UserWarning)
                return self._compiled(batch)
        except (dynamo_exc.Unsupported, dynamo_exc.BackendCompilerFailed, dynamo_exc.TorchRuntimeError) as e:
            cause = getattr(e, "inner_exception", None) or e  # the code generator's own error
            text = str(cause).strip()
            first = f"{type(cause).__name__}: {text.splitlines()[0]}" if text else type(cause).__name__
            raise TrainingError(f"train.compile: torch.compile could not compile the loss ({first}); "
                                f"{WAY_OUT}") from e

