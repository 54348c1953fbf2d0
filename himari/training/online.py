"""The epoch loop of online-RL models (a model with ``rollout``): rollout + update cycles.

Each epoch runs its share of the run's cycles (``rl.plan``). At the epoch start the methods'
``epoch_start`` hooks run, then ``env_source`` hooks choose the market and env config the
training envs are rebuilt on (``ctx.env_source``; by default the longest range of the train
split with the run's ``EnvConfig``). Each cycle collects ``model.rollout`` with the learning rate
annealed by cycle, hands it to the methods' ``on_rollout`` hooks (advantages are recomputed when
one ran), then runs ``update_epochs`` passes of ``n_minibatches`` minibatches through
``train_step``. The envs are rebuilt from (seed, epoch) at each epoch start and ``last.pt`` is
written at epoch ends only, so a resumed run redoes the interrupted epoch exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from himari.errors import DataError, TrainingError
from himari.plugin.api import EnvSource
from himari.training.device import to_device
from himari.training.loop import train_step
from himari.training.seeding import epoch_order

if TYPE_CHECKING:
    from himari.training.trainer import Trainer


def default_env_source(trainer: Trainer) -> EnvSource:
    """The longest range of the train split (training envs need one contiguous series) over the
    run's preprocessed features, with the run's env config."""
    ranges = [r for r in trainer.splits["train"] if r[1] - r[0] >= 3]
    if not ranges:
        raise DataError("the train split has no range of at least 3 rows to train an online-RL model on")
    a, b = max(ranges, key=lambda r: r[1] - r[0])
    data = trainer.data
    return EnvSource(open=np.ascontiguousarray(data.open[a:b], dtype=np.float64),
                     close=np.ascontiguousarray(data.close[a:b], dtype=np.float64),
                     features=np.ascontiguousarray(trainer.features[a:b], dtype=np.float32),
                     config=trainer.env, rows=np.arange(a, b, dtype=np.int64), warmup=0)


def epoch_env_source(trainer: Trainer) -> EnvSource:
    source = default_env_source(trainer)
    for name, m in trainer.with_hook("env_source"):
        source = m.env_source(source, trainer.ctx)
        if not isinstance(source, EnvSource):
            raise TrainingError(f"training method {name!r}: env_source must return an EnvSource")
    return source


def run_online_epochs(trainer: Trainer) -> None:
    import torch

    cfg, st, plan, rl_cfg = trainer.run.train, trainer.state, trainer.plan, trainer.rl_config
    with trainer.progress() as progress:
        trainer.before_training()
        while not st["done"] and st["epoch"] < cfg.epochs:
            epoch = st["epoch"]
            first = epoch * plan.iterations_per_epoch
            if first >= plan.iterations:
                break
            last_it = min(plan.iterations, first + plan.iterations_per_epoch)
            trainer.ctx.epoch = epoch
            for _, m in trainer.with_hook("epoch_start"):
                m.epoch_start(epoch, trainer.ctx)
            trainer.ctx.env_source = epoch_env_source(trainer)
            st["epoch_started"] = True
            st["loss_sum"], st["loss_n"] = 0.0, 0
            steps = 0
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=last_it - first, info="")
            for it in range(first, last_it):
                if rl_cfg.anneal_lr:
                    for group in trainer.optimizer.param_groups:
                        group["lr"] = cfg.lr * (1.0 - it / plan.iterations)
                buf = collect(trainer, it == first)
                rollout_logs = dict(getattr(buf, "stats", {}) or {})
                mb = len(buf) // rl_cfg.n_minibatches
                for ue in range(rl_cfg.update_epochs):
                    order = epoch_order(len(buf), cfg.seed, it * rl_cfg.update_epochs + ue)
                    for k in range(rl_cfg.n_minibatches):
                        if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                            break
                        idx = torch.from_numpy(order[k * mb:(k + 1) * mb].astype(np.int64))
                        logs = train_step(trainer, to_device(buf[idx], trainer.device), batch_axis=1)
                        steps += 1
                        trainer.count_step(epoch, logs, rollout_logs)
                st["iteration"] = it + 1
                progress.update(task, advance=1, info=f"loss {st['loss_sum'] / max(st['loss_n'], 1):.4f}")
                if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                    break
            progress.remove_task(task)
            trainer.end_epoch(epoch)


def collect(trainer: Trainer, reset: bool) -> Any:
    """One rollout of the model, passed through the methods' ``on_rollout`` hooks; advantages
    are recomputed (``recompute_advantages``) when a hook ran, since it may change rewards."""
    buf = trainer.model.rollout(trainer.ctx, reset)
    if trainer.ctx.rollout_execution is not None and "rules_overruled" not in (getattr(buf, "stats", None) or {}):
        # a rollout of the model's own making would otherwise train without the rules, silently
        raise TrainingError(f"execution.in_rollouts: model {trainer.run.model!r} collected a rollout without the "
                            f"execution rules (its rollout() does not use EnvRollout, which applies "
                            f"ctx.rollout_execution); drop the setting")
    hooks = trainer.with_hook("on_rollout")
    for _, m in hooks:
        m.on_rollout(buf, trainer.ctx)
    if hooks and callable(getattr(buf, "recompute_advantages", None)):
        buf.recompute_advantages()
    return buf
