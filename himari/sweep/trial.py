"""What runs in a Ray worker: one trial of a sweep is one ordinary himari run directory,
``<sweep>/runs/trial-NNNNN/``, trained by the Trainer.

The trial reads the sweep's settings from ``sweep.yaml`` (so the sweep directory must be on
storage every machine of a cluster sees at the same path), builds its run config from them and
its own values (dimensions, seed, fold), and trains. A trial whose run directory already holds
a finished run returns at once, and one with a checkpoint resumes from it, so a sweep restored
after it was killed never trains a finished trial again and loses at most what its interrupted
trials did since their last checkpoint.

Each epoch's validation metrics go to Tune (``tune.report``) after the epoch's checkpoints are
written, so a trial the ASHA scheduler stops there has a ``last.pt`` at that epoch; the driver
then ends it with ``finish_stopped`` (its best checkpoint scored, ``summary.json`` written),
which makes an early-stopped trial an ordinary finished run too.
"""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path
from typing import Any

import yaml

from himari.errors import ConfigError, TrainingError
from himari.training.trainer import Trainer

SETTINGS = "sweep.yaml"
RUNS = "runs"
SCORES = "scores"
"""``scores/trial-NNNNN.json``: a finished trial's test-split score, written by the trial itself
(so the leaderboard needs no second pass over the models)."""
TRIAL_PREFIX = "trial-"


def trial_name(trial_id: str) -> str:
    """``trial-00003`` for Tune's trial id ``ab12c_00003``: the trial's index, stable when the
    sweep is restored."""
    return TRIAL_PREFIX + trial_id.rsplit("_", 1)[-1]


def trial_dirname(trial: Any) -> str:
    """Tune's ``trial_dirname_creator`` and ``trial_name_creator``: the trial's name."""
    return trial_name(trial.trial_id)


def load_settings(sweep_dir: Path) -> Any:
    """The sweep's ``SweepConfig`` from ``sweep.yaml``; a missing or damaged file is a
    ``ConfigError`` naming it."""
    from himari.sweep.config import SweepConfig

    path = Path(sweep_dir) / SETTINGS
    if not path.is_file():
        raise ConfigError(f"{sweep_dir}: not a himari sweep directory (no {SETTINGS})")
    try:
        return SweepConfig.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, TypeError, KeyError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path}: damaged sweep settings ({' '.join(str(e).split())})") from None


def _quiet() -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), width=200)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def epoch_metrics(entry: dict[str, Any]) -> dict[str, Any]:
    """What Tune gets each epoch, from the Trainer's history entry of it (``epoch`` counts from 1,
    the ASHA scheduler's time)."""
    return {"epoch": int(entry["epoch"]), "validation_sharpe": _number(entry["sharpe"]),
            "validation_total_return": _number(entry["total_return"]),
            "validation_max_drawdown": _number(entry["max_drawdown"]), "validation_trades": entry["n_trades"],
            "train_loss": _number(entry["train_loss"]), "validation_loss": _number(entry.get("validation_loss"))}


class ReportingTrainer(Trainer):
    """The Trainer, reporting each epoch's validation metrics to Tune once its checkpoints are
    written (a scheduler's stop then loses no finished epoch)."""

    reported = False
    """Whether this session reported an epoch (a run resumed after its last epoch reports none)."""

    def end_epoch(self, epoch: int) -> None:
        super().end_epoch(epoch)
        from ray import tune

        tune.report(_tune_metrics(self.state["history"][-1]))
        self.reported = True


def _report_last(history: list[dict[str, Any]]) -> None:
    """Report a run's last epoch again: Tune requires every trial to report its metric once,
    and a trial that was finished (or whose last epoch was done) before the sweep was killed
    trains no epoch when the sweep resumes."""
    from ray import tune

    tune.report(_tune_metrics(history[-1]) if history else {"epoch": 0, "validation_sharpe": -math.inf})


def _tune_metrics(entry: dict[str, Any]) -> dict[str, Any]:
    metrics = epoch_metrics(entry)
    if metrics["validation_sharpe"] is None:  # schedulers compare numbers; a NaN Sharpe ranks last
        metrics["validation_sharpe"] = -math.inf
    return metrics


class _EndingTrainer(Trainer):
    """Resumes a run and ends it at once: no more training, the best checkpoint scored and the
    summary written (a trial the scheduler stopped)."""

    def _restore(self) -> bool:
        if not super()._restore():
            raise TrainingError(f"{self.run_dir}: no checkpoint to end the run from")
        # a trial the scheduler stopped at its last epoch (ASHA's max_t) ran its course
        self.state["stopped_early"] = self.state["stopped_early"] or self.state["epoch"] < self.run.train.epochs
        self.state["done"] = True
        return True


def train_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: train (or resume, or skip) this trial's run directory."""
    from ray import tune

    from himari.plugin.manager import get_plugins
    from himari.training import rundir

    sweep_dir = Path(config["sweep_dir"])
    sweep = load_settings(sweep_dir)
    run_dir = sweep_dir / RUNS / trial_name(tune.get_context().get_trial_id())
    _set_threads(sweep.cpus_per_trial)
    if (run_dir / rundir.SUMMARY).exists():  # finished before the sweep was killed: report it, train nothing
        if read_score(score_path(sweep_dir, run_dir.name)) is None:
            score_trial(str(run_dir), str(score_path(sweep_dir, run_dir.name)))
        _report_last(rundir.read_json(run_dir / rundir.SUMMARY, "run summary").get("history") or [])
        return
    plugins = get_plugins()
    if rundir.is_run_dir(run_dir):
        trainer = ReportingTrainer.resume(run_dir, plugins=plugins, console=_quiet())
    else:
        if run_dir.exists():  # killed before its config was written: nothing of value in it
            shutil.rmtree(run_dir)
        run = sweep.run_config(plugins, dict(config["params"]), int(config["seed"]), config.get("fold"))
        trainer = ReportingTrainer(run, plugins=plugins, run_dir=run_dir, console=_quiet())
    trainer.fit()
    if not trainer.reported:  # resumed after its last epoch: nothing trained, nothing reported yet
        _report_last(trainer.state["history"])
    score_trial(str(run_dir), str(score_path(sweep_dir, run_dir.name)))


def score_path(sweep_dir: str | Path, name: str) -> Path:
    return Path(sweep_dir) / SCORES / f"{name}.json"


def _set_threads(cpus: float) -> None:
    """Torch threads = the trial's CPUs, so trials sharing a machine do not oversubscribe it."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))


def finish_stopped(run_dir: str | Path) -> None:
    """End a run the scheduler stopped (``_EndingTrainer``); a finished run is left as it is."""
    from himari.training import rundir

    if not (Path(run_dir) / rundir.SUMMARY).exists():
        _EndingTrainer.resume(run_dir, console=_quiet()).fit()


def score_trial(run_dir: str, out: str, stopped: bool = False) -> dict[str, Any]:
    """A finished trial scored as ``himari backtest RUN_DIR buy-and-hold`` scores it on its test
    split (its fold's, in a walk-forward sweep): its summary's headline numbers, the test metrics
    next to buy-and-hold's, the actions (for the leaderboard's per-bar statistics) and its costs;
    written to ``out`` (atomically) and returned. ``stopped``: end the run first."""
    import numpy as np

    from himari.plugin.config import config_to_dict
    from himari.training import rundir
    from himari.training.config import load_run_config
    from himari.training.leaderboard import backtest

    if stopped:
        finish_stopped(run_dir)
    summary = rundir.read_json(Path(run_dir) / rundir.SUMMARY, "run summary")
    entries, context = backtest([run_dir, "buy-and-hold"], split="test")
    model = next(e for e in entries if e.kind == "run")
    hold = next(e for e in entries if e.kind == "baseline")
    run = load_run_config(run_dir, _plugins())
    score = {"epochs_run": summary.get("epochs_run"), "epochs": run.train.epochs, "best_epoch": summary.get("best_epoch"),
             "best_validation_sharpe": summary.get("best_validation_sharpe"),
             "stopped_early": bool(summary.get("stopped_early")), "seconds": summary.get("seconds"),
             "test": model.metrics, "test_gross": model.gross, "buy_and_hold": hold.metrics,
             "ranges": context["ranges"], "actions": np.asarray(model.actions, dtype=np.int8).tolist(),
             "env": config_to_dict(run.env)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    rundir.write_json(Path(out), score)
    return score


def read_score(path: Path) -> dict[str, Any] | None:
    """A trial's score file, or None when it is missing or unreadable (then it is scored again)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def report_targets(runs: list[tuple[str, str]]) -> list[Any]:
    """The HTML report's targets for ``(run_dir, label)`` trials: each test split next to
    buy-and-hold (``himari report``'s scoring)."""
    from himari.training.report_runs import score_run

    return [score_run(run_dir, split="test", label=label) for run_dir, label in runs]


def _plugins() -> Any:
    from himari.plugin.manager import get_plugins

    return get_plugins()
