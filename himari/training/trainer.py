"""The Trainer: owns the loop, so models and training methods only supply what is theirs.

Per run: resolve the data (the synthetic market by default), fit the preprocessors on the train
split and transform every split, let training methods adjust the env config and the built model,
then per epoch: shuffle by (seed, epoch), optimise (device placement, AMP on CUDA, gradient
clipping), checkpoint every N steps, and evaluate on the validation split: validation loss, and
the model's actions through the native backtester after fees and slippage (Sharpe, return,
drawdown, turnover, trades, action distribution, collapse) and the methods' ``epoch_end``
reports. ``best.pt`` keeps the best validation Sharpe; early stopping watches it. At the end the best checkpoint is scored on the
validation and test splits next to buy-and-hold and never-trade, the methods' ``after_training``
reports are added, and ``summary.json`` is written.

The loops live in their own modules: ``himari.training.loop`` (dataset-trained models and the
optimiser step), ``himari.training.online`` (rollout + update cycles of online-RL models); what
is printed in ``himari.training.console``. Hook points and their order: docs/plugins.md.

Resuming (``Trainer.resume``) reloads ``checkpoints/last.pt``: weights, optimiser, scaler, the
loop position (epoch, batch), early-stopping state, training-method states and every RNG state,
so on the CPU a resumed run ends with exactly the metrics of an uninterrupted one.

Launched by ``torchrun`` (``himari train --devices N``), the same loop trains data-parallel:
``himari.training.distributed`` shards each global batch over the ranks, all-reduces the
gradients through DDP, averages the logged metrics, and leaves evaluation, printing and files to
rank 0 (docs/distributed.md). Outside torchrun ``self.dist`` is ``SINGLE`` and every
``distributed`` call below is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError, DataError, TrainingError
from himari.evaluation.execution import apply as apply_execution
from himari.evaluation.execution import (
    check_support,
    checked_actions,
    choose,
    grid,
    model_actions,
    rules_dict,
    score_grid,
)
from himari.evaluation.policy import baseline_actions, evaluate_actions, judged_on_decisions
from himari.plugin.api import HOOK_POINTS, EnvConfig, ModelContext, TrainContext
from himari.training import console as report
from himari.training import distributed, graph_step, rundir
from himari.training.assemble import (
    TrainedPolicy,
    built_modules,
    class_counts,
    model_context_to_dict,
    observation_filter_of,
)
from himari.training.checkpoint import CheckpointError, load_checkpoint, load_network_state, save_checkpoint
from himari.training.compiled_loss import CompiledLoss
from himari.training.config import ExecutionConfig, RunConfig, check_splits, require_run_extras
from himari.training.counterfactual import check_counterfactual_order
from himari.training.data_identity import DATA_JSON, check_same_data, record_data
from himari.training.device import resolve_device, to_device
from himari.training.loop import batch_norm_batch_problem, step_label
from himari.training.plugin_checks import check_model_protocol, checked_dataset, checked_loss, checked_term, json_state
from himari.training.preprocess import load_states, run_preprocessors, save_states
from himari.training.rl import observation_filter
from himari.training.seeding import rng_state, seed_everything, set_rng_state, torch_process_settings_kept

__all__ = ["Trainer", "TrainingError"]


class Trainer:
    """Train one model as described by a validated ``RunConfig``."""

    def __init__(self, run: RunConfig, *, plugins: Any = None, run_dir: str | Path | None = None,
                 runs_root: str | Path = "runs", console: Any = None, resume: bool = False) -> None:
        from rich.console import Console

        from himari.plugin.manager import get_plugins

        self.run = run
        self.plugins = plugins or get_plugins()
        require_run_extras(run, self.plugins)
        self.dist = distributed.init_from_env(run.train.device)
        if self.dist.is_main:
            self.console = console or Console()
        else:  # only rank 0 prints
            import io

            self.console = Console(file=io.StringIO(), quiet=True)
        self.resuming = resume
        self.run_dir = distributed.main_then_broadcast(self.dist, lambda: self._run_dir_path(run_dir, runs_root))
        self._lock: rundir.RunLock | None = None
        self.state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "epoch_started": False,
                                      "best_sharpe": None, "best_epoch": None, "bad_epochs": 0,
                                      "records": 0, "history": [], "done": False, "stopped_early": False,
                                      "iteration": 0}

    def _run_dir_path(self, run_dir: str | Path | None, runs_root: str | Path) -> Path:
        """Where the run lives, checked now but created only once the run has been set up (a
        run refused for bad data, a missing extra or a missing GPU leaves no directory)."""
        path = rundir.new_run_dir_path(self.run.model, runs_root) if run_dir is None else Path(run_dir)
        rundir.check_run_dir_target(path, resume=self.resuming)
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, *, plugins: Any = None, console: Any = None) -> Trainer:
        """Continue the run in ``run_dir`` from its last checkpoint, with its saved config."""
        from himari.plugin.manager import get_plugins
        from himari.training.config import load_run_config

        run_dir = Path(run_dir)
        rundir.check_run_dir_target(run_dir, resume=True)
        plugins = plugins or get_plugins()
        run = load_run_config(run_dir, plugins)
        return cls(run, plugins=plugins, run_dir=run_dir, console=console, resume=True)

    # ------------------------------------------------------------------ setup

    def _setup(self) -> None:
        import torch

        from himari.data import PreparedData, resolve_prepared
        from himari.data.splits import rows_of

        run, cfg = self.run, self.run.train
        seed_everything(cfg.seed, deterministic=cfg.deterministic)
        self.device = self.dist.device or resolve_device(cfg.device)
        with distributed.local_main_first(self.dist):  # one process per machine fills the data cache
            self.data = PreparedData(resolve_prepared(run.data))
        if self.resuming:
            check_same_data(self.run_dir, self.data, "resume needs the data it started on: restore that data set "
                                                     "there, or start a new run")
        self.prepared = self.data
        if run.splits is not None:
            check_splits(run.splits, len(self.data.close), str(self.data.path))
            self.splits = {name: list(ranges) for name, ranges in run.splits.items()}
        else:
            self.splits = {name: self.data.split(name) for name in ("train", "validation", "test")}
        # The model and the methods read the run's splits from the data too (``split("train")``,
        # a dataset built from it): never the data set's default ones, which overlap a fold's test.
        self.data = self.data.with_splits(self.splits)
        if run.labels is not None:  # the run's own labels, never reading across a split's end
            from himari.training.relabel import relabelled

            if run.augment is not None:
                raise ConfigError(f"augment: a synthetic set carries the labels of the data it was made from; this run "
                                  f"relabels ({run.labels['name']}), so its rows would disagree. Drop one: --set "
                                  f"labels=null, or prepare the data with these labels before generating the set")
            self.data = relabelled(self.data, run.labels, self.splits)
        train_rows = rows_of(self.splits["train"])
        states = load_states(self.run_dir) if self.resuming else None
        self.features, self.preprocessing_states = run_preprocessors(
            self.data, np.asarray(self.data.features), run.preprocess, run.plugin_configs, self.plugins, self.splits,
            seed=cfg.seed, states=states, source=self.run_dir / "preprocessing.json" if states is not None else None)
        if self.resuming and self.dist.is_main:  # the lock is held: a temp file here is a killed writer's
            for stale in self.run_dir.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        if self.resuming and states is None and self.dist.is_main:
            # Killed after writing its config but before its preprocessing state: the fit above
            # (train rows only, seeded) is the one the run would have saved, so save it now, or
            # the finished run could never be loaded again (backtest, evaluate).
            save_states(self.run_dir, self.preprocessing_states)
        if self.resuming and self.dist.is_main and not (self.run_dir / DATA_JSON).exists() \
                and not (self.run_dir / rundir.LAST).exists():
            # Killed before its data record, so the run starts from the beginning on this data:
            # record it now, or its data could be replaced under it unnoticed from here on.
            record_data(self.run_dir, self.prepared)
        self.labels = np.asarray(self.data.labels)
        self.augment_record: dict[str, Any] | None = None
        synthetic = None
        if run.augment is not None:  # a synthetic set's rows, for the model's train split only
            from himari.training.augment import check_resumed_set, synthetic_rows

            synthetic, self.augment_record = synthetic_rows(run.augment, self.data, self.splits,
                                                            self.preprocessing_states, run.plugin_configs,
                                                            self.plugins, cfg.seed)
            if self.resuming:
                check_resumed_set(self.run_dir, self.augment_record)
        self.methods = [(n, self.plugins.training_methods().get(n).factory(run.plugin_configs[n]))
                        for n in run.methods]
        check_counterfactual_order(self.methods)
        self.ctx = TrainContext(data=self.data, features=self.features, labels=self.labels, splits=self.splits,
                                env=run.env, device=self.device, seed=cfg.seed, run_dir=self.run_dir,
                                rank=self.dist.rank, world_size=self.dist.world_size, synthetic=synthetic,
                                preprocess=self._preprocess, build_dataset=self._build_dataset)
        env = run.env
        for name, m in self.with_hook("env_config"):
            env = m.env_config(env, self.ctx)
            if not isinstance(env, EnvConfig):
                raise TrainingError(f"training method {name!r}: env_config must return an EnvConfig")
            self.ctx.env = env
        self.env = env
        self.bars_per_year = float(self.data.metadata.get("bars_per_year", 105_120))
        mctx = ModelContext(n_features=self.features.shape[1], n_actions=3,
                            class_counts=class_counts(self.labels, train_rows), env=env,
                            feature_names=tuple(self.data.feature_names))
        self.model_context = self.ctx.model = mctx
        spec = self.plugins.models().get(run.model)
        self.model = spec.factory(distributed.rank_config(run.plugin_configs[run.model], self.dist), mctx)
        check_model_protocol(self.model, run.model)
        self.model.network.to(self.device)
        self.method_modules = built_modules(self.with_hook("model_built"), self.model, self.ctx).to(self.device)
        self.model.network.to(self.device)  # a hook may have changed it in place
        self.ctx.observation_filter = observation_filter_of(self.method_modules)
        seen_hooks = self.with_hook("rollout_observations")
        if seen_hooks:
            def seen(obs: Any, starts: Any, state: Any, policy: Any) -> Any:
                for _, m in seen_hooks:
                    obs = m.rollout_observations(obs, starts, state, policy, self.ctx)
                return obs

            self.ctx.rollout_observations = seen
        self.model.network = distributed.sync_batch_norm(self.model.network, self.dist)
        self.execution = run.execution
        grid_rules = run.execution.grid() if run.execution.select else []
        check_support(self.model, run.model, [run.execution, *grid_rules])
        self.threads = torch.get_num_threads()  # set by now: a model may pick its own (ppo-lstm: 1)
        self.online = callable(getattr(self.model, "rollout", None))
        if self.online:
            from himari.training.rl import OnlineRLConfig, plan

            rl_cfg = run.plugin_configs[run.model]
            if not isinstance(rl_cfg, OnlineRLConfig):
                raise TrainingError(f"model {run.model!r} has rollout() but its config does not derive from "
                                    f"OnlineRLConfig")
            self.rl_config, self.plan = rl_cfg, plan(rl_cfg, cfg.epochs)
            self.train_ds = self.val_ds = None
            if run.execution.in_rollouts:
                self.ctx.rollout_execution = run.execution
        else:
            if run.execution.in_rollouts:
                raise ConfigError(f"execution.in_rollouts: model {run.model!r} learns from a data set, not from "
                                  f"rollouts; its training data has no executed actions to filter. Drop the setting")
            if self.ctx.observation_filter is not None:
                owner = next(k.split("__", 1)[0] for k, m in self.method_modules.items()
                             if m is self.ctx.observation_filter)
                raise TrainingError(f"training method {owner!r} installs an observation filter for online-RL "
                                    f"rollouts; model {run.model!r} has no rollout() to apply it to")
            self.train_ds = self._dataset("train")
            self.val_ds = self._dataset("validation")
            if len(self.train_ds) < (cfg.batch_size if cfg.drop_last else 1):
                raise self._too_few_examples(len(self.train_ds), cfg.batch_size)
            problem = batch_norm_batch_problem([self.model.network, self.method_modules], len(self.train_ds),
                                               cfg.batch_size, cfg.drop_last, cfg.grad_accum_steps)
            if problem:  # before the run directory exists; each epoch checks its own data again
                raise ConfigError(problem)
        self.amp_dtype = None
        self.scaler = None
        if self.device.startswith("cuda") and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.amp_dtype is torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")
        # a loss compiled whole needs what a recorded one needs (compiled_loss); only a recorded
        # step cannot take a loss scaler, which decides on the host
        for setting, wanted, scaler in (("cuda_graph", cfg.cuda_graph, self.scaler is not None),
                                        ("compile", cfg.compile, False)):
            if not wanted:
                continue
            why = graph_step.eligibility(self.model, run.model, self.methods, cfg.grad_accum_steps,
                                         self.dist.enabled, self.online, scaler)
            if why:
                raise ConfigError(f"train.{setting}: {why}; run without it")
        on_gpu = self.device.startswith("cuda")
        graphed = cfg.cuda_graph and on_gpu  # ignored on the CPU
        params = [*self.model.network.parameters(), *self.method_modules.parameters()]
        # On a GPU the fused AdamW (one kernel for all parameters; runs with and without
        # train.cuda_graph share it), and when recorded also capturable (its step counters on the
        # device); fused is what lets a recorded step skip itself on the device when the loss is
        # not finite (graph_step.guarded_optimizer_step). The CPU keeps torch's default.
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           **({"fused": True} if on_gpu else {}),
                                           **({"capturable": True} if graphed else {}))
        self.loss_fn = distributed.data_parallel(
            distributed.loss_module(self.model.network, self._loss, self.method_modules or None), self.dist)
        if cfg.compile:
            self.loss_fn = CompiledLoss(self.loss_fn)
        self.graph_step = None
        if graphed:
            self.graph_step = graph_step.GraphedStep(params, self.loss_fn, self.optimizer, cfg.grad_clip,
                                                     self.amp_dtype, step_label=lambda: step_label(self.state),
                                                     compiled_optimizer=cfg.compile)
        self.trackers = [(n, self.plugins.trackers().get(n).factory(run.plugin_configs[n])) for n in run.trackers
                         if self.dist.is_main]
        if self.dist.enabled:  # identical set-up above; from here each rank draws its own random numbers
            seed_everything(distributed.rank_seed(cfg.seed, self.dist.rank), deterministic=cfg.deterministic)

    def _too_few_examples(self, n: int, batch_size: int) -> DataError:
        """Too little data for one batch is bad input (exit 2). The message says where the bars went:
        the features' warm-up takes the first bars of each symbol before any split, and a bar is an
        example only once its label is known, ``lookahead`` bars later, so a data set of a few
        thousand bars can leave few examples or none."""
        train_bars = sum(b - a for a, b in self.splits["train"])
        segments = self.data.metadata.get("segments") or []
        warmup = sum(int(sg["first"]) - int(sg["start"]) for sg in segments)
        where = f"it holds {train_bars:,} of the data's {len(self.data.close):,} bars"
        if warmup > 0:
            where += f" (the features' warm-up takes the first {warmup:,})"
        lookahead = int(getattr(self.data, "lookahead", 0) or 0)
        window = getattr(self.run.plugin_configs.get(self.run.model), "context_length", None)
        longest = max((b - a for a, b in self.splits["train"]), default=0)
        if isinstance(window, int) and window > 1 and longest < window + lookahead:
            return DataError(f"the train split has {n:,} examples, fewer than one batch ({batch_size:,}): "
                             f"{self.run.model}.context_length {window:,} asks for windows of {window:,} bars, and the "
                             f"split's longest block holds {longest:,}; lower --context-length or use more data")
        if lookahead > 0 and n < train_bars:
            where += f", and a bar is an example only once its label is known, {lookahead:,} bars after it"
        return DataError(f"the train split has {n:,} examples, fewer than one batch ({batch_size:,}): {where}; lower "
                         f"--batch-size or use more data")

    def _dataset(self, split: str, ctx: TrainContext | None = None) -> Any:
        ctx = self.ctx if ctx is None else ctx
        ds = checked_dataset(self.model.dataset(ctx, split), f"model {self.run.model!r}: dataset({split!r})")
        for name, m in self.with_hook("dataset"):
            ds = checked_dataset(m.dataset(ds, ctx, split), f"training method {name!r}: its dataset hook ({split!r})")
        return ds

    def _build_dataset(self, ctx: TrainContext, split: str) -> Any:
        """``ctx.build_dataset``: a split's data from another context, leaving the RNGs as they were
        (a run resumed mid-epoch rebuilds the epoch's data without shifting its random streams)."""
        saved = rng_state()
        try:
            return self._dataset(split, ctx)
        finally:
            set_rng_state(saved)

    def _preprocess(self, data: Any, raw: np.ndarray) -> np.ndarray:
        """``ctx.preprocess``: the run's preprocessors, with the states fitted at set-up, on other data."""
        saved = rng_state()
        try:
            out, _ = run_preprocessors(data, np.asarray(raw, dtype=np.float32), self.run.preprocess,
                                       self.run.plugin_configs, self.plugins, self.splits, seed=self.run.train.seed,
                                       states=self.preprocessing_states)
            return out
        finally:
            set_rng_state(saved)

    def with_hook(self, point: str) -> list[tuple[str, Any]]:
        """The run's training methods that define hook ``point``, in ``--method`` order."""
        if point not in HOOK_POINTS:
            raise ValueError(f"unknown hook point {point!r}")
        return [(n, m) for n, m in self.methods if callable(getattr(m, point, None))]

    def autocast(self) -> Any:
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def progress(self) -> Any:
        return report.progress(self.console, self.run.train.progress)

    # ------------------------------------------------------------ checkpoints

    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.run.model,
            "network": self.model.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "trainer": json.dumps(self.state),
            **distributed.rng_payload(self.dist, rng_state()),
            "methods": json.dumps({n: json_state(n, m) for n, m in self.methods if hasattr(m, "state_dict")}),
            "model_context": model_context_to_dict(self.model_context),
            "method_modules": self.method_modules.state_dict(),
        }

    def save(self, which: Path) -> None:
        """Called by every rank (the RNG states are gathered); rank 0 writes."""
        self._sync_loss()
        payload = self._payload()
        if self.dist.is_main:
            save_checkpoint(self.run_dir / which, payload)

    def _restore(self) -> bool:
        path = self.run_dir / rundir.LAST
        if not path.exists():
            self.console.print(f"[yellow]no {rundir.LAST} in {self.run_dir}: starting the run from the beginning[/]")
            return False
        payload = load_checkpoint(path, model=self.run.model)
        load_network_state(self.model.network, payload, path, self.method_modules)
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scaler is not None and payload["scaler"]:
                self.scaler.load_state_dict(payload["scaler"])
            self.state = json.loads(payload["trainer"])
            methods = json.loads(payload["methods"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: damaged training state ({type(e).__name__}: {e})") from None
        saved_threads = self.state.get("threads")
        if saved_threads is not None and saved_threads != self.threads and self.device == "cpu":
            self.console.print(f"[yellow]warning: this run trained with {saved_threads} torch threads and resumes "
                               f"with {self.threads}; CPU results depend on the thread count, so the resumed run "
                               f"may not end exactly where an uninterrupted one would (set OMP_NUM_THREADS="
                               f"{saved_threads} to match)[/]")
        for n, m in self.methods:
            if n in methods and hasattr(m, "load_state_dict"):
                m.load_state_dict(methods[n])
        rng, note = distributed.rank_rng_state(payload, self.dist)
        if rng is not None:
            set_rng_state(rng)
        if note:
            self.console.print(f"[yellow]{note}[/]")
        self.console.print(f"resuming {self.run_dir} at epoch {self.state['epoch'] + 1}, "
                           f"batch {self.state['batch']}, step {self.state['step']}",
                           soft_wrap=not self.console.is_terminal)
        return True

    # ------------------------------------------------------------- evaluation

    def _validation_loss(self) -> float | None:
        import torch

        if self.val_ds is None:  # online RL: no labelled validation data
            return None
        net = self.model.network
        net.eval()
        total, count, bs = 0.0, 0, max(self.run.train.batch_size, 4096)
        with torch.no_grad(), self.autocast():
            for start in range(0, len(self.val_ds), bs):
                idx = torch.arange(start, min(start + bs, len(self.val_ds)))
                loss, _ = self.model.loss(to_device(self.val_ds[idx], self.device), self.ctx)
                total += float(loss) * len(idx)
                count += len(idx)
        return total / count if count else float("nan")

    def evaluate(self, split: str, execution: ExecutionConfig | None = None) -> dict[str, Any]:
        """The model's actions on ``split`` under the execution rules (``execution``, else the
        run's: its config's, or after selection the chosen ones) through the backtester, after
        costs."""
        ranges = self.splits[split]
        counts = np.zeros(3, dtype=np.int64)  # the model's own decisions: collapse is judged on them
        actions = self._actions(ranges, self.execution if execution is None else execution, counts)
        return judged_on_decisions(evaluate_actions(self.data.open, self.data.close, ranges, actions, self.env,
                                                    self.bars_per_year), counts)

    def _actions(self, ranges: list[tuple[int, int]], rules: ExecutionConfig,
                 decision_counts: np.ndarray | None = None) -> np.ndarray:
        """The executed actions on ``ranges`` (a stateful model rolls through them sequentially).
        In float32 even when training runs in mixed precision: the scores a run reports are then
        those ``himari backtest`` gets from the saved model (on the CPU, in float32) up to the
        devices' float32 rounding (scored under bf16, a GPU run's test action shares were 0.44%
        away from its backtest's)."""
        import torch

        self.model.network.eval()
        with torch.no_grad(), report.phases(self.console, self.run.train.progress), \
                observation_filter(self.ctx.observation_filter):
            return model_actions(self.model, self.features, self.data.open, self.data.close, ranges, self.env,
                                 rules, self.run.model, decision_counts=decision_counts)

    def _select_execution(self) -> dict[str, Any]:
        """Score every combination of the run's execution grids on the validation split only and
        keep the best (``himari.evaluation.execution.choose``) as the run's rules; returns what
        summary.json and execution.json record. A stateless model acts once: the grid only
        filters its actions."""
        import torch

        from himari.data.splits import rows_of

        cfg, ranges = self.run.execution, self.splits["validation"]
        combos = grid(cfg.grid_decision_interval, cfg.grid_min_hold, cfg.grid_confidence)
        o, c = self.data.open, self.data.close
        if callable(getattr(self.model, "act_sequence", None)):
            def score(k: int, m: int, conf: float) -> dict[str, Any]:
                return evaluate_actions(o, c, ranges, self._actions(ranges, cfg.rules(k, m, conf)), self.env,
                                        self.bars_per_year)
        else:
            rows = rows_of(ranges)
            model: Any = self.model  # action_probabilities is optional (check_support made sure of it)
            model.network.eval()
            with torch.no_grad():  # float32, as _actions
                raw = checked_actions(model.act(self.features, rows), len(rows), self.run.model, "act")
                probs = (np.asarray(model.action_probabilities(self.features, rows))
                         if any(x > 0 for x in cfg.grid_confidence) else None)

            def score(k: int, m: int, conf: float) -> dict[str, Any]:
                acts = apply_execution(raw, probs if conf > 0 else None, ranges, self.env.mode, cfg.rules(k, m, conf))
                return evaluate_actions(o, c, ranges, acts, self.env, self.bars_per_year)

        table = score_grid(combos, score)
        best = choose(table)
        self.execution = cfg.rules(best["decision_interval"], best["min_hold"], best["confidence"])
        record = {"selected": True, "split": "validation", **rules_dict(self.execution),
                  "validation_sharpe": best["sharpe"], "validation_trades": best["n_trades"], "grid": table}
        rundir.write_json(self.run_dir / rundir.EXECUTION, record)
        return record

    def _baseline(self, name: str, split: str) -> dict[str, Any]:
        ranges = self.splits[split]
        return evaluate_actions(self.data.open, self.data.close, ranges,
                                baseline_actions(name, ranges, seed=self.run.train.seed), self.env, self.bars_per_year)

    # ------------------------------------------------------------------ loop

    def _log(self, metrics: dict[str, Any]) -> None:
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, bool))}
        for _, t in self.trackers:
            t.log(self.state["step"], flat)
        self.state["records"] += 1

    def _loss(self, batch: Any) -> tuple[Any, dict[str, Any]]:
        """The model's loss plus the training methods' terms: the forward of the module DDP wraps
        (``distributed.loss_module``). Logs may stay tensors: ``train_step`` brings them to the
        host together."""
        loss, logs = checked_loss(self.model.loss(batch, self.ctx), self.run.model)
        logs = dict(logs)
        for name, m in self.with_hook("loss_terms"):
            for term, value in m.loss_terms(self.model, batch, self.ctx).items():
                loss = loss + checked_term(value, name, term)
                logs[f"{name}/{term}"] = value.detach() if hasattr(value, "detach") else float(value)
        return loss, logs

    def _sync_loss(self) -> None:
        """Make the running loss sum the mean over the ranks (a no-op for one process); done at
        fixed steps (logs, checkpoints, epoch ends), so a resumed run syncs where the original did."""
        self.state["loss_sum"] = distributed.mean_value(self.dist, self.state.get("loss_sum", 0.0))

    def count_step(self, epoch: int, logs: dict[str, float], rollout: dict[str, float] | None = None) -> None:
        """Book an optimiser step: step counter, running loss, and every ``log_every`` steps a
        record of the running loss and the step's values (means over the ranks)."""
        st = self.state
        st["step"] += 1
        self.ctx.step = st["step"]
        st["loss_sum"] += logs["loss"]
        st["loss_n"] += 1
        if st["step"] % self.run.train.log_every == 0:
            self._sync_loss()
            self._log(distributed.mean_metrics(self.dist, {
                "epoch": epoch, "train/loss": st["loss_sum"] / st["loss_n"],
                **{f"train/{k}": v for k, v in logs.items() if k != "loss"},
                **{f"rollout/{k}": v for k, v in (rollout or {}).items()}}))

    def before_training(self) -> None:
        """The model's one-off work before its first step (``Model.before_training``), called by
        the loops inside their progress display (its phases show there), after any restore (the
        network's state says what is done), and outside the loss that train.compile compiles."""
        if hasattr(self.model, "before_training"):
            self.model.before_training(self.ctx)

    def _run_epochs(self) -> None:
        from himari.training.loop import run_offline_epochs
        from himari.training.online import run_online_epochs

        self._loop_ran = True
        (run_online_epochs if self.online else run_offline_epochs)(self)

    def end_epoch(self, epoch: int) -> None:
        """Rank 0 scores the epoch and every rank takes its verdict (state, early stopping); then
        the checkpoints, written by rank 0 with every rank's RNG state."""
        self._sync_loss()
        train_loss = self.state["loss_sum"] / max(self.state["loss_n"], 1)
        improved, state = distributed.main_then_broadcast(
            self.dist, lambda: (self._score_epoch(epoch, train_loss), self.state))
        if state is not self.state:  # another rank: take rank 0's state in place (the loops hold the dict)
            self.state.clear()
            self.state.update(state)
        distributed.check_replicas(self.dist, self.model.network)
        if improved:
            self.save(rundir.BEST)
        self.save(rundir.LAST)

    def _score_epoch(self, epoch: int, train_loss: float) -> bool:
        """Validation loss and backtest, log, early-stopping state, epoch line; True if improved."""
        cfg, st = self.run.train, self.state
        val_loss = self._validation_loss()
        val = self.evaluate("validation")
        record = {"epoch": epoch, "train/loss": train_loss,
                  **({"validation/loss": val_loss} if val_loss is not None else {}),
                  **{f"validation/{k}": v for k, v in val.items() if not isinstance(v, (dict, str))},
                  **{f"validation/actions_{k}": v for k, v in val["actions"].items()}}
        record.update(self._epoch_end_reports(epoch))
        self._log(record)
        improved = st["best_sharpe"] is None or val["sharpe"] > st["best_sharpe"]
        if improved:
            st["best_sharpe"], st["best_epoch"], st["bad_epochs"] = float(val["sharpe"]), epoch, 0
        else:
            st["bad_epochs"] += 1
        st["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "validation_loss": val_loss,
                              "sharpe": val["sharpe"], "total_return": val["total_return"],
                              "max_drawdown": val["max_drawdown"], "n_trades": val["n_trades"],
                              "actions": val["actions"], "collapsed": val["collapsed"]})
        st["epoch"], st["batch"], st["epoch_started"] = epoch + 1, 0, False
        if cfg.patience and st["bad_epochs"] >= cfg.patience:
            st["done"] = st["stopped_early"] = True
        report.epoch_verdict(self.console, epoch, cfg.epochs, train_loss, val_loss, val, improved,
                             st["stopped_early"], cfg.patience)
        return improved

    def _epoch_end_reports(self, epoch: int) -> dict[str, float]:
        """The methods' ``epoch_end`` values as ``validation/<method>/<name>`` (network in eval
        mode, no gradients, under the run's observation filter)."""
        import torch

        out: dict[str, float] = {}
        hooks = self.with_hook("epoch_end")
        if not hooks:
            return out
        self.model.network.eval()
        self.method_modules.eval()
        try:
            with torch.no_grad(), observation_filter(self.ctx.observation_filter):
                for name, m in hooks:
                    values = m.epoch_end(epoch, self.ctx)
                    if values is None:
                        continue
                    if not isinstance(values, dict):
                        raise TrainingError(f"training method {name!r}: epoch_end must return a dict or None")
                    out.update({f"validation/{name}/{k}": float(v) for k, v in values.items()})
        finally:
            self.method_modules.train()
        return out

    # ----------------------------------------------------------------- public

    def fit(self) -> dict[str, Any]:
        """Run (or continue) training; returns the summary also written to summary.json.

        The run directory is locked for the whole call (a second ``train --run-dir`` or
        ``--resume`` of it is refused). A new run creates its directory only after set-up
        succeeded, and removes it again when it fails or is interrupted before its first
        checkpoint, so a failed command leaves nothing behind."""
        # The epoch bar's module, imported before the run has files rather than at the first
        # epoch: importing it runs code built from strings (dataclasses), and CPython ends a
        # process killed by Ctrl-C inside such code with SIGINT even when the KeyboardInterrupt
        # was caught and handled (the CLI's exit code 130 became a signal death).
        import rich.progress  # noqa: F401

        with torch_process_settings_kept():  # deterministic mode and threads are the caller's again after
            return self._fit(time.perf_counter())

    def _fit(self, t0: float) -> dict[str, Any]:
        try:
            if self.resuming:
                distributed.main_then_broadcast(self.dist, self._take_lock)
                complete = distributed.main_then_broadcast(self.dist, self._completed_summary)
                if complete is not None:
                    return complete
            self._setup()
            if not self.resuming:
                distributed.main_then_broadcast(self.dist, self._start_new_run_dir)
            return self._fit_locked(t0)
        except BaseException:
            if self._lock is not None and not self.resuming and not (self.run_dir / rundir.LAST).exists():
                self._lock.remove_created()
            raise
        finally:
            if self._lock is not None:
                self._lock.release()

    def release_data_parallel(self) -> None:
        """Drop the DistributedDataParallel wrapper of the loss (keeping the module it wraps), so
        that it is freed while the process group is still open. Called after a distributed run,
        before ``distributed.shutdown()``: a DDP reducer that outlives the group is destroyed
        during interpreter exit, where gloo aborted the process in about one run in ten (a
        successful run then exited with SIGABRT)."""
        import gc

        from torch.nn.parallel import DistributedDataParallel

        loss_fn = getattr(self, "loss_fn", None)
        if isinstance(loss_fn, DistributedDataParallel):
            self.loss_fn = loss_fn.module
            del loss_fn
            gc.collect()

    def _take_lock(self) -> None:
        self._lock = rundir.RunLock(self.run_dir)
        self._lock.acquire()

    def _start_new_run_dir(self) -> None:
        """Create and lock the directory of a new run (re-checked under the lock: another process
        may have started a run there since), then write its config and preprocessing state."""
        self._take_lock()
        try:
            rundir.check_run_dir_target(self.run_dir, resume=False)
        except BaseException:
            assert self._lock is not None
            self._lock.release()
            self._lock = None  # the directory is another run's: leave it alone
            raise
        rundir.write_yaml(self.run_dir / rundir.CONFIG, self.run.to_dict())
        record_data(self.run_dir, self.prepared)
        save_states(self.run_dir, self.preprocessing_states)
        if self.augment_record is not None:
            from himari.training.augment import AUGMENT_JSON

            rundir.write_json(self.run_dir / AUGMENT_JSON, self.augment_record)

    def _completed_summary(self) -> dict[str, Any] | None:
        """The summary of a run that already finished (its ``summary.json`` is written last), or
        None: resuming a complete run reports it instead of training again."""
        path = self.run_dir / rundir.SUMMARY
        if not path.exists():
            return None
        summary = rundir.read_json(path, "run summary")
        best = summary.get("best_validation_sharpe")
        best_text = f"{best:+.2f}" if isinstance(best, (int, float)) else "n/a"
        self.console.print(f"{self.run_dir} is complete ({summary.get('epochs_run', '?')} epochs, "
                           f"{summary.get('steps', '?')} steps, best validation Sharpe {best_text}); "
                           f"nothing to resume. Score it with: himari backtest {self.run_dir}")
        return summary

    def _fit_locked(self, t0: float) -> dict[str, Any]:
        resumed_from = None
        if self.resuming and self._restore():
            resumed_from = self.state["step"]
        self.state["threads"] = self.threads
        resume_info = {"records": self.state["records"], "step": self.state["step"]} if resumed_from is not None else None
        for _, t in self.trackers:
            t.start(self.run_dir, self.run.to_dict(), resume_info)
        if self.online:
            what = (f"{self.plan.iterations} rollout{'s' if self.plan.iterations != 1 else ''} of "
                    f"{self.rl_config.n_envs} envs x "
                    f"{self.rl_config.rollout_steps} steps ({self.plan.iterations * self.plan.env_steps_per_iteration:,} "
                    f"env steps)")
            if self.ctx.rollout_execution is not None:
                what += ", acting under the execution rules"
        else:
            what = f"{len(self.train_ds):,} train / {len(self.val_ds):,} validation examples"
        where = (f"{self.dist.world_size} processes, {self.dist.backend}, rank 0 on {self.device}" if self.dist.enabled
                 else self.device)
        report.start_line(self.console, self.run.model, self.data.path, where, what, self.run_dir)
        self._loop_ran = False
        fit: Callable[[], None] = self._run_epochs
        for name, m in reversed(self.with_hook("outer_loop")):
            fit = (lambda inner, method: (lambda: method.outer_loop(inner, self.ctx)))(fit, m)
        try:
            fit()
            if not self._loop_ran:
                raise TrainingError("a training method's outer_loop did not call fit(); the model was not trained")
            self.state["done"] = True
            summary = self._finish(time.perf_counter() - t0, resumed_from)
        except BaseException as e:  # close trackers (files, wandb runs) whatever stopped the run
            for _, t in self.trackers:
                with contextlib.suppress(Exception):
                    t.finish({"error": f"{type(e).__name__}: {e}"})
            raise
        for _, t in self.trackers:
            t.finish(summary)
        return summary

    def _finish(self, seconds: float, resumed_from: int | None) -> dict[str, Any]:
        """Every rank reloads ``best.pt`` (after a barrier: rank 0 may still be writing it); rank 0
        scores it and writes the summary, which every rank returns."""
        distributed.barrier(self.dist)
        best = self.run_dir / rundir.BEST
        if best.exists():
            load_network_state(self.model.network, load_checkpoint(best, model=self.run.model), best,
                               self.method_modules)
        return distributed.main_then_broadcast(self.dist, lambda: self._summarise(seconds, resumed_from))

    def policy(self) -> TrainedPolicy:
        """The model as it stands (after ``_finish``: the best checkpoint), with the run's
        preprocessing: what ``after_training`` hooks and ``himari backtest`` act with."""
        return TrainedPolicy(self.run_dir, self.run.model, self.model, self.run, self.preprocessing_states,
                             rundir.BEST.name, self.plugins, self.model_context, self.method_modules,
                             execution=self.execution, observation_filter=self.ctx.observation_filter)

    def _summarise(self, seconds: float, resumed_from: int | None) -> dict[str, Any]:
        execution: dict[str, Any] | None = None
        if self.run.execution.select:
            execution = self._select_execution()
        elif self.execution.active:
            execution = {"selected": False, **rules_dict(self.execution)}
        results = {split: {"model": self.evaluate(split), "buy-and-hold": self._baseline("buy-and-hold", split),
                           "never-trade": self._baseline("never-trade", split)}
                   for split in ("validation", "test")}
        collapsed = {split: results[split]["model"]["collapsed"] for split in results}
        summary: dict[str, Any] = {
            "model": self.run.model,
            "run_dir": str(self.run_dir),
            "data": str(self.data.path),
            "device": self.device,
            "world_size": self.dist.world_size,
            "epochs_run": self.state["epoch"],
            "steps": self.state["step"],
            "best_epoch": None if self.state["best_epoch"] is None else self.state["best_epoch"] + 1,
            "best_validation_sharpe": self.state["best_sharpe"],
            "stopped_early": self.state["stopped_early"],
            "resumed_from_step": resumed_from,
            "costs": self.env.costs(),
            "collapsed": collapsed,
            "validation": results["validation"],
            "test": results["test"],
            "history": self.state["history"],
            "seconds": seconds,
            "threads": self.threads,
        }
        if self.augment_record is not None:
            summary["augment"] = self.augment_record
        if execution is not None:
            summary["execution"] = execution
            if execution["selected"]:
                self._keep_tuned_state()
        reports = {}
        for name, m in self.with_hook("after_training"):
            out = m.after_training(self.policy(), self.ctx)
            if out is not None:
                if not isinstance(out, dict):
                    raise TrainingError(f"training method {name!r}: after_training must return a dict or None")
                reports[name] = out
        if reports:
            summary["methods"] = reports
        rundir.write_json(self.run_dir / rundir.SUMMARY, summary)
        report.summary(self.console, self.run.model, summary, self.env, self.run_dir)
        return summary

    def _keep_tuned_state(self) -> None:
        """A model may keep state it tunes on the validation split in its network (cgdt: the
        target return-to-go, chosen under the execution rules in effect). After the rules were
        chosen, the final validation evaluation tuned it under the chosen ones: write that
        network state into ``best.pt``, so ``himari backtest`` acts as the test split was scored.
        Nothing is written when the state did not change."""
        import torch

        path = self.run_dir / rundir.BEST
        if not path.exists():
            return
        payload = load_checkpoint(path, model=self.run.model)
        now = self.model.network.state_dict()
        saved = payload["network"]
        if saved.keys() == now.keys() and all(torch.equal(saved[k].cpu(), now[k].detach().cpu()) for k in now):
            return
        payload["network"] = {k: v.detach().cpu().clone() for k, v in now.items()}
        save_checkpoint(path, payload)
