"""maml: meta-learning for fast adaptation to a new market regime (K2; Finn, Abbeel and Levine 2017,
"Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"; Reptile from Nichol, Achiam
and Schulman 2018, "On First-Order Meta-Learning Algorithms").

Tasks are windows of the train split grouped into volatility x trend regimes; each window's
support set is followed, after an embargo of at least the labels' lookahead, by its query set
(``tasks``). Every optimiser step of the run becomes a meta-step: ``tasks_per_step`` tasks
are sampled, each adapted by ``inner_steps`` SGD steps of ``inner_lr`` (alpha) on its support
set, and the meta-gradient (``steps``: first-order by default, second-order or Reptile)
averaged over them replaces the gradient of the Trainer's batch in the ``before_optimizer_step``
hook; the run's optimiser (AdamW with ``--lr``, the outer rate beta) takes the step, after the
usual gradient clipping. The Trainer's batch is still drawn and its loss logged, so an epoch has
as many meta-steps as a plain run has steps.

``adapt(model, ctx)`` is the same inner loop at evaluation: ``himari backtest RUN --adapt-bars N``
calls it on each range's first bars before scoring the rest.

Online-RL models (``ppo-lstm``, ``flag-trader``; Finn et al. 2017, section 5.3, with ProMP's
reuse of each task's rollouts, Rothfuss et al. 2019, without its second-order terms): a task's
support and query sets are rollouts of the policy in envs over the task's support bars and over
its query bars (``online``: the model's ``task_rollout`` on an ``EnvSource`` of that window only).
Once per rollout cycle, in the ``on_rollout`` hook, ``tasks_per_step`` tasks are sampled from
``(seed, cycle)``; each gets a support rollout by the current weights and, except for Reptile, a
query rollout by the weights the inner loop (``inner_steps`` SGD steps of ``inner_lr`` on the
model's own loss, the PPO objective, over the whole support rollout) adapts them to. Every
optimiser step of the cycle then recomputes the inner loop from the current weights on the same
support rollout and takes the meta-gradient on the same query rollout, as PPO reuses its
rollout: the PPO ratio against the log-probabilities the rollouts were collected with corrects
for the weights having moved. First-order: the gradient of the query rollout's PPO loss at the
adapted weights (at the cycle's first step the query rollout is on-policy there, so this is the
policy gradient of the adapted policy); Reptile: ``(theta - phi) / (alpha k)``. Second order is
refused: the query rollouts are sampled from the adapted policy, so the exact meta-gradient needs
the gradient of that sampling distribution (ProMP's or DiCE's estimators), which a loss on
collected rollouts does not give. ``adapt`` takes one rollout by the trained weights over the
``--adapt-bars`` bars and the same inner loop on it.

Supported models: ``baseline-mlp``, whose loss is a function of its weights and a batch of
labelled rows, and the online-RL models above. The offline-RL models are refused: cql's loss
reads target networks and adjusts a Lagrange multiplier as it is evaluated, and cgdt's dataset
fits its return-to-go scale on the train split, so neither has a task loss an inner loop can
differentiate through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from himari.plugin.api import TrainingMethodSpec, hookimpl
from himari_builtin.training.maml.online import (
    ADAPT,
    QUERY,
    SUPPORT,
    loaded,
    task_rollout,
    task_seed,
    whole,
)
from himari_builtin.training.maml.steps import (
    MODES,
    functional_loss,
    inner_loop,
    meta_gradient,
)
from himari_builtin.training.maml.tasks import Task, regime_tasks, sample_tasks

ONLINE_MODELS = ("ppo-lstm", "flag-trader")


@dataclass(frozen=True)
class MAMLConfig:
    mode: Literal["first-order", "second-order", "reptile"] = "first-order"
    """first-order (FOMAML), second-order (through the inner loop) or reptile."""
    inner_steps: int = 1
    """SGD steps of the inner loop (k), in training and in backtest --adapt-bars."""
    inner_lr: float = 0.01
    """Learning rate of the inner loop (alpha); the outer rate (beta) is the run's --lr."""
    tasks_per_step: int = 4
    """Tasks (windows) whose meta-gradients are averaged in each optimiser step."""
    window: int = 288
    """Bars per task window (288 five-minute bars: one day)."""
    support: int = 192
    """The window's first bars that form its support set; the query set follows the embargo."""
    embargo: int = 0
    """Bars between support and query; 0: the labels' lookahead (the least allowed)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        for name in ("inner_steps", "tasks_per_step", "window", "support"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.inner_lr > 0 and self.inner_lr < float("inf")):
            raise ValueError(f"inner_lr must be a finite number > 0, got {self.inner_lr}")
        if self.embargo < 0:
            raise ValueError(f"embargo must be >= 0, got {self.embargo}")
        if self.support + self.embargo >= self.window:
            raise ValueError(f"window {self.window} must exceed support {self.support} + embargo {self.embargo}")


def _to(batch: Any, device: Any) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def rows_batch(model: Any, ctx: Any, ranges: list[tuple[int, int]]) -> Any:
    """All of the model's training examples on ``ranges`` as one batch (its own ``dataset`` on a
    context whose train split is ``ranges``), on ``ctx.device``; None when there are none."""
    import torch

    ds = model.dataset(dataclasses.replace(ctx, splits={"train": list(ranges)}), "train")
    if len(ds) == 0:
        return None
    return _to(ds[torch.arange(len(ds))], ctx.device)


def is_online(model: Any) -> bool:
    """An online-RL model (it collects rollouts; its task data are rollouts, not labelled rows)."""
    return callable(getattr(model, "rollout", None))


def minibatches(model: Any) -> int:
    """The model's PPO minibatches per rollout (its ``OnlineRLConfig.n_minibatches``; 1 without one):
    task losses are taken in these parts."""
    return int(getattr(getattr(model, "config", None), "n_minibatches", 1) or 1)


class MAML:
    def __init__(self, config: MAMLConfig) -> None:
        self.config = config
        self.tasks: list[Task] = []
        self.meta_steps = 0
        self.cycles = 0
        """Online RL: rollout cycles meta-trained so far (seeds each cycle's tasks and envs)."""
        self._model: Any = None
        self._batches: dict[Task, tuple[Any, Any]] = {}
        self._cycle: list[tuple[Task, Any, Any]] = []
        """Online RL: this cycle's tasks with their support and query rollouts (as whole batches)."""

    def model_built(self, model: Any, ctx: Any) -> None:
        """Builds the tasks once the data is known (not when a run is restored for a backtest)."""
        import numpy as np

        from himari.plugin.api import ConfigError

        if ctx.data is None:
            return
        if ctx.world_size > 1:
            raise ConfigError("maml: data-parallel training (--devices > 1) is not supported; train on one device")
        c = self.config
        online = is_online(model)
        if online and c.mode == "second-order":
            raise ConfigError("maml: mode second-order is not available for online-RL models (the query rollouts are "
                              "sampled from the adapted policy, so the exact meta-gradient needs the gradient of "
                              "that sampling, which a loss on collected rollouts does not give); use first-order "
                              "or reptile")
        if online and not callable(getattr(model, "task_rollout", None)):
            raise ConfigError("maml: this online-RL model has no task_rollout(ctx) to collect rollouts over a task "
                              "window")
        lookahead = int(ctx.data.lookahead)
        embargo = c.embargo or lookahead
        if embargo < lookahead:
            raise ConfigError(f"maml: embargo {c.embargo} is less than the labels' lookahead of {lookahead} bars "
                              f"(0 uses the lookahead)")
        if c.support + embargo >= c.window:
            raise ConfigError(f"maml: window {c.window} leaves no query bars after support {c.support} + "
                              f"embargo {embargo}; raise maml.window (the embargo is at least the labels' "
                              f"lookahead, {lookahead} bars: a run's own labels, such as a model recipe's, set it; "
                              f"--set labels=null trains on the prepared labels)")
        labelled = np.asarray(ctx.labels) >= 0
        tasks = [t for t in regime_tasks(np.asarray(ctx.data.close), ctx.splits["train"], c.window, c.support, embargo)
                 if online or (labelled[t.support_start:t.support_end].any()
                               and labelled[t.query_start:t.query_end].any())]
        if not tasks:
            raise ConfigError(f"maml: the train split has no whole window of {c.window} bars"
                              + ("" if online else " with labelled support and query rows") + "; lower maml.window")
        self.tasks, self._model, self._batches, self._cycle = tasks, model, {}, []
        return

    def on_rollout(self, buf: Any, ctx: Any) -> None:
        """Online RL, once per rollout cycle (the Trainer's rollout ``buf`` is left alone): this
        cycle's ``tasks_per_step`` tasks, each with a support rollout by the current weights over
        its support bars and (except Reptile) a query rollout over its query bars by the weights
        the inner loop adapts on the support rollout. Every optimiser step of the cycle reuses
        them, as PPO reuses its rollout (the clipped ratio corrects for the weights moving)."""
        import torch

        c, model = self.config, self._model
        if model is None or not is_online(model):
            return
        net = model.network
        loss_of, params = functional_loss(model, ctx)
        chosen = sample_tasks(self.tasks, c.tasks_per_step, ctx.seed, self.cycles)
        was_training = net.training
        self._cycle = []
        try:
            for i, task in enumerate(chosen):
                support = whole(task_rollout(model, ctx, task.support_start, task.support_end,
                                             task_seed(ctx.seed, self.cycles, i, SUPPORT)), minibatches(model))
                query = None
                if c.mode != "reptile":
                    net.train()  # as in the optimiser step that recomputes it
                    fast, _ = inner_loop(loss_of, params, support, c.inner_steps, c.inner_lr, create_graph=False)
                    with loaded(params, {k: v.detach() for k, v in fast.items()}), torch.no_grad():
                        query = whole(task_rollout(model, ctx, task.query_start, task.query_end,
                                                   task_seed(ctx.seed, self.cycles, i, QUERY)), minibatches(model))
                self._cycle.append((task, support, query))
        finally:
            net.train(was_training)
        self.cycles += 1

    def _task_batches(self, task: Task, ctx: Any) -> tuple[Any, Any]:
        if task not in self._batches:
            self._batches[task] = (rows_batch(self._model, ctx, [(task.support_start, task.support_end)]),
                                   rows_batch(self._model, ctx, [(task.query_start, task.query_end)]))
        return self._batches[task]

    def before_optimizer_step(self, model: Any, optimizer: Any, ctx: Any) -> dict[str, float]:
        """Replaces the batch's gradient of the network with the mean meta-gradient of this step's tasks."""
        import torch

        c = self.config
        loss_of, params = functional_loss(model, ctx)
        total = {k: torch.zeros_like(p) for k, p in params.items()}
        logs: dict[str, float] = {}
        if is_online(model):
            cycle = self._cycle
            if not cycle:
                from himari.plugin.api import HimariError

                raise HimariError("maml: an optimiser step of an online-RL model before any rollout cycle")
        else:
            cycle = [(t, *self._task_batches(t, ctx))
                     for t in sample_tasks(self.tasks, c.tasks_per_step, ctx.seed, self.meta_steps)]
        chosen = [t for t, _, _ in cycle]
        for task, support, query in cycle:
            grads, task_logs = meta_gradient(loss_of, params, support, query, mode=c.mode, steps=c.inner_steps,
                                             alpha=c.inner_lr)
            for k in total:
                total[k] += grads[k]
            for k, v in task_logs.items():
                logs[k] = logs.get(k, 0.0) + v / len(chosen)
        for k, p in params.items():
            p.grad = (total[k] / len(chosen)).to(p.dtype)
        self.meta_steps += 1
        logs["regimes"] = float(len({t.regime for t in chosen}))
        return logs

    def adapt(self, model: Any, ctx: Any) -> dict[str, float]:
        """The inner loop on the model's examples of ``ctx.splits["adapt"]`` (their labels), in
        place: ``inner_steps`` SGD steps of ``inner_lr`` on all of them at once, in train mode.
        An online-RL model adapts on one rollout by its trained weights over the bars
        ``ctx.splits["adapt_bars"]`` (seeded by the run's seed), as on a task's support set."""
        import torch

        from himari.plugin.api import ConfigError

        if is_online(model):
            (a, b), = ctx.splits["adapt_bars"]
            batch = whole(task_rollout(model, ctx, a, b, task_seed(ctx.seed, 0, 0, ADAPT)), minibatches(model))
        else:
            batch = rows_batch(model, ctx, ctx.splits["adapt"])
        if batch is None:
            raise ConfigError("maml: no labelled rows to adapt on; give more --adapt-bars")
        model.network.train()
        loss_of, params = functional_loss(model, ctx)
        fast, loss = inner_loop(loss_of, params, batch, self.config.inner_steps, self.config.inner_lr,
                                create_graph=False)
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(fast[k])
        model.network.eval()
        return {"support_loss": loss}

    def state_dict(self) -> dict[str, Any]:
        return {"meta_steps": self.meta_steps, "cycles": self.cycles}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.meta_steps = int(state.get("meta_steps", 0))
        self.cycles = int(state.get("cycles", 0))


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name="maml", code="K2",
                                    summary="meta-learning over market regimes: MAML (first/second order) or Reptile",
                                    config=MAMLConfig, factory=MAML, paradigms=("supervised", "online-rl"),
                                    models=("baseline-mlp", *ONLINE_MODELS), extras=("torch",)))
