"""The optimiser step and the epoch loop of dataset-trained models (supervised, sequence and
offline-RL paradigms); the online-RL loop is in ``himari.training.online``.

Per epoch: the methods' ``epoch_start`` hooks, then ``epoch_dataset`` (the epoch's train data: a
curriculum stage may change its length, and the batch sampler follows), batches in a shuffle
fixed by ``(seed, epoch)``, one ``train_step`` each, ``last.pt`` every ``checkpoint_every``
steps, and the epoch's evaluation (``Trainer.end_epoch``). A run resumed mid-epoch recomputes the
epoch's dataset from the restored method states and continues at the saved batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from himari.errors import ConfigError, TrainingError
from himari.training import distributed, rundir
from himari.training.device import to_device

if TYPE_CHECKING:
    from himari.training.trainer import Trainer

READ_EVERY = 32
"""Replayed steps (``train.cuda_graph``) the loop launches before it reads their logs: one wait
for the GPU per that many steps, and the host queues steps while the GPU runs earlier ones. It
also reads before every checkpoint and at the end of an epoch."""


def batch_norm_batch_problem(modules: Any, n: int, batch_size: int, drop_last: bool, accum_steps: int) -> str | None:
    """Why an epoch of ``n`` examples cannot train ``modules`` (torch modules) when one of them
    has batch normalisation, or None: batch norm needs two examples in every (micro-)batch while
    training, and a last partial batch of one (``drop_last`` off) or micro-batches of one
    (``grad_accum_steps`` near the batch size) fail mid-epoch, after checkpoints, so that even
    ``--resume`` fails the same way."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if not any(isinstance(m, _BatchNorm) for module in modules for m in module.modules()):
        return None
    for size, what in ((batch_size, f"--batch-size {batch_size}"),
                       (0 if drop_last else n % batch_size, f"the last batch of the epoch's {n:,} examples")):
        if size and size // min(max(accum_steps, 1), size) < 2:
            parts = "" if accum_steps <= 1 else f" split into {accum_steps} micro-batches (train.grad_accum_steps)"
            fix = ("lower train.grad_accum_steps or raise --batch-size" if accum_steps > 1 and size == batch_size
                   else "keep train.drop_last on, or change --batch-size")
            return (f"the model has batch normalisation, which needs at least two examples in every batch it "
                    f"trains on; {what}{parts} leaves a batch of one: {fix}")
    return None


def split_batch(batch: Any, parts: int, axis: int) -> list[tuple[Any, int]]:
    """``batch`` (tensors, possibly nested in dicts, lists and tuples, all sharing their size along
    ``axis``) as up to ``parts`` consecutive micro-batches with their sizes; one part is the batch
    itself. Non-tensor leaves are shared by every part."""
    import torch

    def size_of(x: Any) -> int | None:
        if isinstance(x, torch.Tensor):
            return int(x.shape[axis]) if x.dim() > axis else None
        items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()
        for item in items:
            n = size_of(item)
            if n is not None:
                return n
        return None

    n = size_of(batch)
    if parts <= 1 or n is None or n < 2:
        return [(batch, n or 1)]
    bounds = [round(i * n / min(parts, n)) for i in range(min(parts, n) + 1)]

    def cut(x: Any, a: int, b: int) -> Any:
        if isinstance(x, torch.Tensor):
            return x.narrow(axis, a, b - a) if x.dim() > axis and x.shape[axis] == n else x
        if isinstance(x, dict):
            return {k: cut(v, a, b) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(cut(v, a, b) for v in x)
        return x

    return [(cut(batch, a, b), b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def host_floats(values: dict[Any, Any]) -> dict[Any, float]:
    """``values`` (Python numbers or one-element tensors) as Python floats, the tensors brought
    to the host in one copy. Each ``float()`` of a CUDA tensor waits for the GPU to finish
    everything queued before it; a step that logged its loss, its checks and a model's terms one
    by one waited about ten times, which for small networks (launch-bound on a GPU) is a large
    part of the step. The values are the ones ``float()`` gives: float64 holds any float32, bf16
    or fp16 exactly."""
    import torch

    tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
    out = {k: float(v) for k, v in values.items() if k not in tensors}
    if tensors:
        device = next(iter(tensors.values())).device
        out.update(zip(tensors, float64_vector(list(tensors.values()), device).tolist()))
    return {k: out[k] for k in values}


def float64_vector(values: list[Any], device: Any) -> Any:
    """One-element tensors and Python numbers as one float64 vector on ``device``, so that a
    single copy brings them all to the host. A number becomes a fill on the device, not a copy
    from the host, so the vector can also be built inside a CUDA graph recording."""
    import torch

    tensors = [v.detach().reshape(()) for v in values if isinstance(v, torch.Tensor)]
    if len(tensors) == len(values) and len({(t.dtype, t.device) for t in tensors}) == 1:
        # One stack, then one cast: a cast per value is a kernel per value, which showed in a
        # replayed CQL step's profile (nine logs, nine kernels). Widening to float64 is exact
        # either way, so both paths give the same numbers.
        return torch.stack(tensors).to(device=device, dtype=torch.float64)
    return torch.stack([v.detach().reshape(()).to(device=device, dtype=torch.float64) if isinstance(v, torch.Tensor)
                        else torch.full((), float(v), dtype=torch.float64, device=device) for v in values])


def step_label(state: dict[str, Any]) -> str:
    """The step a Trainer is about to take, for messages: ``step 12 (epoch 2)``."""
    return f"step {state['step'] + 1} (epoch {state['epoch'] + 1})"


def non_finite_loss(value: float, where: str) -> TrainingError:
    """The error that stops a step whose loss is NaN or infinite, before the optimiser step."""
    return TrainingError(f"loss is {value} at {where}; lower --lr or check the data")


_LOSS = object()  # the key of a part's loss among its logs (no log name can equal it)


def train_step(trainer: Trainer, batch: Any, batch_axis: int = 0) -> dict[str, float]:
    """One optimiser step over ``batch``, in ``train.grad_accum_steps`` micro-batches split along
    ``batch_axis`` (0 for offline batches, 1, the env axis, for rollout minibatches): forward and
    backward per part with its share of the loss, then the methods' ``before_optimizer_step``
    hooks (gradients unscaled), gradient-norm clipping and the step."""
    import torch

    cfg = trainer.run.train
    net = trainer.model.network
    net.train()
    parts = split_batch(batch, cfg.grad_accum_steps, batch_axis)
    total = sum(size for _, size in parts)
    trainer.optimizer.zero_grad(set_to_none=True)
    recorded: dict[Any, Any] = {}  # (part, name) -> the part's loss and logs, still on the device
    shares = []
    for i, (part, size) in enumerate(parts):
        with trainer.autocast():
            loss, logs = trainer.loss_fn(part)
        share = size / total  # a mean over the batch is the size-weighted mean of the parts' means
        scaled = loss * share
        if trainer.scaler is not None:
            trainer.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        shares.append(share)
        recorded[i, _LOSS] = loss.detach()
        recorded.update(((i, k), v) for k, v in logs.items())
    values = host_floats(recorded)  # the step's one wait for the GPU before the optimiser step
    loss_sum, logs_sum = 0.0, {}
    for i, share in enumerate(shares):
        if not math.isfinite(values[i, _LOSS]):  # before any hook or step: the weights stay as they were
            raise non_finite_loss(values[i, _LOSS], step_label(trainer.state))
        loss_sum += values[i, _LOSS] * share
    for (i, k), v in values.items():
        if k is not _LOSS:
            logs_sum[k] = logs_sum.get(k, 0.0) + v * shares[i]
    if trainer.scaler is not None:
        trainer.scaler.unscale_(trainer.optimizer)
    logs = logs_sum
    for name, m in trainer.with_hook("before_optimizer_step"):
        extra = m.before_optimizer_step(trainer.model, trainer.optimizer, trainer.ctx)
        for k, v in (extra or {}).items():
            logs[f"{name}/{k}"] = float(v)
    if cfg.grad_clip > 0:
        logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip))
    if trainer.scaler is not None:
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        trainer.optimizer.step()
    logs["loss"] = loss_sum
    return logs


def epoch_dataset(trainer: Trainer) -> Any:
    """The train data of the current epoch: the methods' ``epoch_dataset`` hooks over the run's
    train dataset (called again on a mid-epoch resume, so they must depend on the epoch and the
    method's state only)."""
    ds = trainer.train_ds
    for name, m in trainer.with_hook("epoch_dataset"):
        ds = m.epoch_dataset(ds, trainer.ctx)
        if ds is None or not hasattr(ds, "__len__"):
            raise TrainingError(f"training method {name!r}: epoch_dataset must return a dataset")
    return ds


def _count_steps(trainer: Trainer, epoch: int, unread: list[Callable[[], dict[str, float]]], progress: Any,
                 task: Any) -> None:
    """Read the launched steps' logs in their order and book each step: a non-finite loss stops
    the run at its step; ``last.pt`` at every ``checkpoint_every``-th."""
    st = trainer.state
    while unread:
        logs = unread.pop(0)()
        st["batch"] += 1
        trainer.count_step(epoch, logs)
        progress.update(task, advance=1, info=f"loss {st['loss_sum'] / st['loss_n']:.4f}")
        if st["step"] % trainer.run.train.checkpoint_every == 0:
            trainer.save(rundir.LAST)


def run_offline_epochs(trainer: Trainer) -> None:
    import torch

    cfg, st = trainer.run.train, trainer.state
    with trainer.progress() as progress:
        trainer.before_training()
        while not st["done"] and st["epoch"] < cfg.epochs:
            epoch = st["epoch"]
            trainer.ctx.epoch = epoch
            if not st["epoch_started"]:
                for _, m in trainer.with_hook("epoch_start"):
                    m.epoch_start(epoch, trainer.ctx)
                st["epoch_started"] = True
                st["loss_sum"], st["loss_n"] = 0.0, 0
            data = epoch_dataset(trainer)
            if len(data) < (cfg.batch_size if cfg.drop_last else 1):
                raise TrainingError(f"epoch {epoch + 1} has {len(data)} training examples, fewer than one batch "
                                    f"({cfg.batch_size}); lower --batch-size")
            problem = batch_norm_batch_problem([trainer.model.network, trainer.method_modules], len(data),
                                               cfg.batch_size, cfg.drop_last, cfg.grad_accum_steps)
            if problem:
                raise ConfigError(f"epoch {epoch + 1}: {problem}")
            sampler = distributed.GlobalBatchSampler(len(data), cfg.batch_size, cfg.seed, trainer.dist)
            per_epoch = sampler.steps_per_epoch(cfg.drop_last)
            if cfg.max_steps_per_epoch:
                per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=per_epoch, completed=st["batch"], info="")
            # Steps launched whose logs are not read yet (train.cuda_graph reads every READ_EVERY
            # steps; graph_step's docstring says why); counted in order, and always before a
            # checkpoint, so a checkpoint holds the state after the steps it counts.
            unread: list[Callable[[], dict[str, float]]] = []
            count_unread = functools.partial(_count_steps, trainer, epoch, unread, progress, task)
            while st["batch"] + len(unread) < per_epoch:
                # this rank's shard of the global batch
                idx = torch.from_numpy(sampler.indices(epoch, st["batch"] + len(unread)))
                batch = to_device(data[idx], trainer.device)
                if trainer.graph_step is not None:  # train.cuda_graph: the same step, replayed
                    trainer.model.network.train()
                    unread.append(trainer.graph_step.launch(batch))
                else:
                    unread.append(functools.partial(dict, train_step(trainer, batch)))
                if (trainer.graph_step is None or len(unread) >= READ_EVERY
                        or (st["step"] + len(unread)) % cfg.checkpoint_every == 0):
                    count_unread()
            count_unread()
            progress.remove_task(task)
            trainer.end_epoch(epoch)
