"""Data-parallel training through ``torch.distributed``: one process per GPU (NCCL) or per CPU
worker (gloo), launched by ``torchrun``, each holding a full replica of the model.

The Trainer stays one loop; this module holds what changes when it runs on several processes:

- ``init_from_env`` reads the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and opens the process group: NCCL with the
  device ``cuda:LOCAL_RANK`` on GPUs, gloo on the CPU. Without them (``WORLD_SIZE`` unset or 1)
  it returns ``SINGLE`` and nothing here touches ``torch.distributed``, so a single-process run
  is exactly what it was. ``launch`` is ``himari train --devices N``: it re-runs the same command
  under ``torchrun --standalone`` (one machine; multi-node runs use torchrun's own arguments).
- **Same global batch.** ``GlobalBatchSampler`` cuts each global batch of the epoch's shuffle
  into ``world_size`` contiguous shards, one per rank, and DDP averages the gradients, so a step
  of W processes applies the gradient of the same ``train.batch_size`` examples a single process
  would use (exactly, for a loss that is a mean over examples). Online RL keeps ``n_envs`` as
  the global number of envs: ``rank_config`` gives each rank ``n_envs / W`` of them, and each
  rank's env shard has its own seed (the model reads ``ctx.rank``), so a minibatch of
  ``n_envs / n_minibatches`` env sequences is spread over the ranks as well.
- **Where DDP sees the forward.** Models compute their loss in ``model.loss(batch, ctx)``,
  which may call methods of ``model.network`` other than ``forward`` (PPO's
  ``forward_sequence``, CQL's heads); wrapping ``network`` in DDP would then skip DDP's forward
  hook, and with it the gradient all-reduce set-up. ``loss_module`` instead wraps a small
  ``nn.Module`` whose ``forward(batch)`` runs the whole loss (model loss plus the training
  methods' terms) with ``network`` registered as a submodule, and DDP wraps *that*: every
  parameter and buffer DDP must synchronise is reached, and the forward DDP instruments is the
  one the loss goes through. The optimiser still holds ``network.parameters()`` (the same
  tensors), and rollouts, evaluation and checkpoints use ``network`` directly.
- **BatchNorm** computes its statistics over the global batch (``sync_batch_norm``): torch's
  ``SyncBatchNorm`` on GPUs, ``CpuSyncBatchNorm`` (differentiable all-reduces) with gloo, where
  torch's runs on GPUs only. Otherwise a W-process step would normalise by per-shard statistics.
- **Rank 0 speaks.** Only rank 0 prints, logs to trackers, evaluates and writes files;
  ``main_then_broadcast`` runs such a step on rank 0 and hands its result (or its exception) to
  every rank, so all ranks agree on early stopping and raise the same error instead of hanging.
  Logged training metrics are means over the ranks (``mean_metrics``).
- **Checkpoints** are written by rank 0 (atomically, ``himari.training.checkpoint``) with the
  RNG states of *every* rank (``rng_payload``); on ``--resume`` every rank loads the same file and
  takes back its own RNG state (``rank_rng_state``), so a resumed W-process run continues exactly.
  Barriers sit where another rank must read what rank 0 wrote (``best.pt`` at the end of a run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from himari.errors import ConfigError, CudaUnavailableError, HimariError, TrainingError

T = TypeVar("T")

TIMEOUT_ENV = "HIMARI_DIST_TIMEOUT_S"
"""Seconds a collective may wait (rank 0 evaluates alone while the others wait); default 1800."""
DEFAULT_TIMEOUT_S = 1800

_CREATED_GROUP = False  # True when init_from_env opened the process group (shutdown closes it)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a data-parallel run (``SINGLE`` outside one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """``nccl`` or ``gloo``; None in a single-process run."""
    device: str | None = None
    """This rank's device (``cuda:LOCAL_RANK`` or ``cpu``); None in a single-process run."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


# ------------------------------------------------------------------ process group


def launched_by_torchrun() -> bool:
    """True inside a process that ``torchrun`` started (it always sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank_device(device: str, local_rank: int) -> str:
    """The device of the process with ``local_rank``: ``cuda:LOCAL_RANK`` for ``cuda``/``auto``
    on a machine with GPUs, else ``cpu``. An explicit ``cuda:N`` is refused: each process owns the
    GPU of its local rank (select GPUs with ``CUDA_VISIBLE_DEVICES``)."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if device.startswith("cuda:"):
        raise ConfigError(f"train.device={device!r}: in a distributed run each process trains on "
                          f"cuda:LOCAL_RANK; use --device cuda (and CUDA_VISIBLE_DEVICES to pick GPUs)")
    if not torch.cuda.is_available():
        from himari.training.device import why_no_cuda

        raise CudaUnavailableError(f"device {device!r}: {why_no_cuda()}; use --device cpu (gloo)")
    if local_rank >= torch.cuda.device_count():
        raise CudaUnavailableError(f"local rank {local_rank} needs cuda:{local_rank}, but this machine shows "
                                   f"{torch.cuda.device_count()} CUDA device(s): start at most that many "
                                   f"processes per node")
    return f"cuda:{local_rank}"


def init_from_env(device: str) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (idempotent).

    ``device`` is the run's ``train.device``; it picks the backend: NCCL for GPUs, gloo for the
    CPU. Returns ``SINGLE`` when the process was not launched for several processes."""
    global _CREATED_GROUP

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = rank_device(device, local_rank)
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if dev.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = dt.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        kwargs: dict[str, Any] = {"device_id": torch.device(dev)} if backend == "nccl" else {}
        dist.init_process_group(backend, timeout=timeout, **kwargs)
        _CREATED_GROUP = True
    elif dist.get_world_size() != world:
        raise HimariError(f"a process group of {dist.get_world_size()} processes is already open, "
                          f"but WORLD_SIZE is {world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=dev)


def shutdown() -> None:
    """Close the process group if ``init_from_env`` opened it (a caller's own group stays), after
    a successful run only: every rank first waits at a barrier, since a rank tearing its
    connections down while a peer still finishes the last collective can abort that peer. After a
    failure, just exit: torchrun then stops the other ranks (a barrier could wait on a rank stuck
    in another collective)."""
    global _CREATED_GROUP

    if not _CREATED_GROUP:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _CREATED_GROUP = False


# --------------------------------------------------------------------- launching


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m himari ARGS``:
    one machine, a rendezvous on a free port (torchrun binds port 0)."""
    if nproc < 1:
        raise ConfigError(f"--devices must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "himari", *args]


def launch(nproc: int, args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run ``himari ARGS`` on ``nproc`` processes of this machine through torchrun and return
    its exit status (torchrun stops every process when one fails)."""
    if launched_by_torchrun():
        raise ConfigError("this process was started by torchrun already; drop --devices "
                          "(torchrun's --nproc-per-node sets the number of processes)")
    return subprocess.run(torchrun_command(nproc, args), env=env, check=False).returncode


# -------------------------------------------------------------------- collectives


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def main_then_broadcast(info: DistInfo, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank; an exception raised by
    ``fn`` is raised on every rank (so a failed evaluation or a refused run directory stops the
    whole run with one message instead of leaving the other ranks waiting forever)."""
    if not info.enabled:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    error: BaseException | None = None
    if info.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - handed to every rank, re-raised below
            error = e
            box[0] = ("error", _portable_error(e))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise error if error is not None else value
    return value


def _portable_error(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (to reach the other ranks), else a HimariError with its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any pickling failure
        return HimariError(f"{type(e).__name__}: {e}")


@contextlib.contextmanager
def local_main_first(info: DistInfo) -> Iterator[None]:
    """Let local rank 0 of each machine run the block first (e.g. preparing data into the
    cache), then the other ranks (which then find the cache filled)."""
    if not info.enabled:
        yield
        return
    if info.local_rank != 0:
        barrier(info)
    yield
    if info.local_rank == 0:
        barrier(info)


def gather_objects(info: DistInfo, obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_metrics(info: DistInfo, metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the ranks that report it (rank 0's keys first), the same on
    every rank; unchanged in a single-process run."""
    if not info.enabled:
        return metrics
    gathered = gather_objects(info, {k: float(v) for k, v in metrics.items()})
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for m in gathered for k in m):
        values = [m[key] for m in gathered if key in m]
        out[key] = sum(values) / len(values)
    return out


def mean_value(info: DistInfo, value: float) -> float:
    return mean_metrics(info, {"v": value})["v"]


def check_replicas(info: DistInfo, module: Any) -> None:
    """Raise if the replicas' trainable parameters or buffers differ in any bit: data parallelism
    rests on every rank applying the same update, and a desynchronised replica would otherwise go
    unnoticed until its rank evaluated something."""
    if not info.enabled:
        return
    import hashlib

    import torch

    digest = hashlib.sha1()
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if isinstance(t, torch.nn.Parameter) and not t.requires_grad:
                continue  # frozen: never updated
            digest.update(name.encode())
            digest.update(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    digests = gather_objects(info, digest.hexdigest())
    if len(set(digests)) > 1:

        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        raise TrainingError(f"the model replicas diverged (ranks {bad} differ from rank 0): a parameter or "
                            f"buffer was changed outside the synchronised optimiser step")


# ------------------------------------------------------------------ data and seeds


class GlobalBatchSampler:
    """The rows each rank trains on: the epoch's shuffle (``seeding.epoch_order``, a function of
    (seed, epoch)) cut into global batches of ``batch_size``, each split into ``world_size``
    contiguous shards of ``batch_size / world_size`` rows; rank r takes shard r. The shards of a
    step are disjoint and together are exactly the batch a single process takes at that step."""

    def __init__(self, n: int, batch_size: int, seed: int, info: DistInfo) -> None:
        if batch_size % info.world_size:
            raise ConfigError(f"train.batch_size ({batch_size}) must be a multiple of the number of "
                              f"processes ({info.world_size}): it is the global batch, split evenly")
        self.n, self.batch_size, self.seed, self.info = n, batch_size, seed, info
        self.per_rank = batch_size // info.world_size
        self._epoch: int | None = None
        self._order = np.zeros(0, dtype=np.int64)

    def steps_per_epoch(self, drop_last: bool) -> int:
        if not drop_last and self.info.enabled:
            raise ConfigError("train.drop_last=false: the last partial batch cannot be split evenly over "
                              "the processes of a distributed run; keep drop_last on")
        return self.n // self.batch_size if drop_last else -(-self.n // self.batch_size)

    def indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's rows of global batch ``step`` of ``epoch`` (int64)."""
        from himari.training.seeding import epoch_order

        if self._epoch != epoch:
            self._order, self._epoch = epoch_order(self.n, self.seed, epoch).astype(np.int64), epoch
        start = step * self.batch_size
        if not self.info.enabled:
            return self._order[start:start + self.batch_size]
        start += self.info.rank * self.per_rank
        return self._order[start:start + self.per_rank]


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random streams (dropout masks, action sampling) during
    training: distinct per rank, a pure function of (seed, rank)."""
    return int(np.random.SeedSequence([int(seed), int(rank), 0x646470]).generate_state(1, np.uint64)[0] % 2**63)


def rank_config(config: Any, info: DistInfo) -> Any:
    """The model config of this rank: for online RL, ``n_envs`` is the global number of envs
    and each rank steps ``n_envs / world_size`` of them (same global batch as one process);
    other configs are unchanged."""
    from himari.training.rl import OnlineRLConfig

    if not info.enabled or not isinstance(config, OnlineRLConfig):
        return config
    w, n, k = info.world_size, config.n_envs, config.n_minibatches
    if n % (w * k):
        raise ConfigError(f"n_envs ({n}) must be a multiple of processes x n_minibatches ({w} x {k} = {w * k}): "
                          f"n_envs is the global number of envs, split evenly over the processes, and each "
                          f"process splits its share into n_minibatches")
    return dataclasses.replace(config, n_envs=n // w)


def rng_payload(info: DistInfo, state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint entries for the RNG states: ``rng`` (rank 0's, what a single process reads)
    and, in a distributed run, ``rng_ranks`` (every rank's) with ``world_size``. Collective."""
    if not info.enabled:
        return {"rng": state}
    states = gather_objects(info, state)
    return {"rng": states[0], "rng_ranks": states, "world_size": info.world_size}


def rank_rng_state(payload: dict[str, Any], info: DistInfo) -> tuple[dict[str, Any] | None, str | None]:
    """The RNG state this rank resumes with, and a note when the resume cannot be exact (the
    checkpoint came from another number of processes: weights, optimiser, data order and global
    batch carry over, the random streams start afresh from the run's per-rank seeds)."""
    saved = int(payload.get("world_size", 1))
    if saved == info.world_size:
        return (payload["rng_ranks"][info.rank] if info.enabled else payload["rng"]), None
    note = (f"the checkpoint was written by {saved} process(es) and this run has {info.world_size}: "
            f"resuming with the same global batch, but not bit-exactly (random streams differ)")
    return (payload["rng"] if not info.enabled else None), note


# --------------------------------------------------------------------- the model


def loss_module(network: Any, compute: Callable[[Any], tuple[Any, dict[str, float]]], extra: Any = None) -> Any:
    """An ``nn.Module`` whose ``forward(batch)`` returns ``compute(batch)`` (the loss and its
    logs) and which owns ``network`` (and ``extra``, the training methods' own modules) as
    submodules: the module DDP wraps (see the module docstring for why not ``network`` itself)."""
    return _loss_module_class()(network, compute, extra)


@lru_cache(maxsize=1)
def _loss_module_class() -> type:
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self, network: nn.Module, compute: Callable[[Any], tuple[Any, dict[str, float]]],
                     extra: nn.Module | None) -> None:
            super().__init__()
            self.network = network
            if extra is not None:
                self.method_modules = extra
            self._compute = compute

        def forward(self, batch: Any) -> tuple[Any, dict[str, float]]:
            return self._compute(batch)

    return LossModule


def data_parallel(module: Any, info: DistInfo) -> Any:
    """``module`` wrapped in ``DistributedDataParallel`` for this rank (unchanged in a
    single-process run). Construction broadcasts rank 0's parameters and buffers, so every
    replica starts from the same weights; every trainable parameter must take part in the loss."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    on_cuda = bool(info.device and info.device.startswith("cuda"))
    return DistributedDataParallel(module, device_ids=[info.local_rank] if on_cuda else None,
                                   find_unused_parameters=False)


def sync_batch_norm(network: Any, info: DistInfo) -> Any:
    """``network`` with its BatchNorm layers computing statistics over the global batch (same
    parameters and buffers, same state-dict keys); unchanged in a single-process run."""
    if not info.enabled:
        return network
    import torch

    if info.device and info.device.startswith("cuda"):
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    return _convert_cpu_batch_norm(network)


def _convert_cpu_batch_norm(module: Any) -> Any:
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    cls = cpu_sync_batch_norm_class()
    if isinstance(module, _BatchNorm) and not isinstance(module, (cls, torch.nn.SyncBatchNorm)):
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu_batch_norm(child))
    return module


@lru_cache(maxsize=1)
def cpu_sync_batch_norm_class() -> type:
    """``CpuSyncBatchNorm``: BatchNorm over the global batch of a gloo run, through two
    differentiable all-reduces (sums, then centred squares: the two-pass variance). Their
    backward all-reduces the gradients, which is what makes the data-parallel gradient equal the
    single-process one. Eval mode, or a single process, is plain BatchNorm."""
    import torch
    import torch.distributed as dist
    from torch.nn.modules.batchnorm import _BatchNorm

    class AllReduceSum(torch.autograd.Function):
        """Sum over the ranks; the gradient of a sum is the sum of the ranks' gradients."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
            out = x.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(out)
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
            out = grad.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(out)
            return out

    all_reduce = AllReduceSum.apply

    class CpuSyncBatchNorm(_BatchNorm):
        def _check_input_dim(self, input: torch.Tensor) -> None:
            if input.dim() < 2:
                raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self._check_input_dim(x)
            if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
                return super().forward(x)
            dims = [0, *range(2, x.dim())]
            shape = [1, -1] + [1] * (x.dim() - 2)
            local_n = x.new_tensor([x.numel() // x.shape[1]])
            sums = all_reduce(torch.cat([x.sum(dims), local_n]))
            n = sums[-1]
            mean = sums[:-1] / n
            centred = x - mean.view(shape)
            var = all_reduce((centred * centred).sum(dims)) / n
            y = centred * torch.rsqrt(var + self.eps).view(shape)
            if self.affine:
                y = y * self.weight.view(shape) + self.bias.view(shape)
            if self.track_running_stats:
                self._update_running(mean.detach(), var.detach() * n / (n - 1).clamp(min=1))
            return y

        def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased_var, alpha=m)

    return CpuSyncBatchNorm
