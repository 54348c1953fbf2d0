"""Ray and Ray Tune for a sweep: the Ray instance (local, or a cluster), the Tuner (new, or
restored from the sweep directory), the trials' outcomes, and the Ray tasks that end and score
finished trials and draw the best ones. Imported only once ray is known to be installed."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from himari.errors import ConfigError
from himari.sweep import trial
from himari.sweep.config import SweepConfig
from himari.sweep.trial import (
    RUNS,
    read_score,
    score_path,
    score_trial,
    train_trial,
    trial_dirname,
    trial_name,
)

TUNE = "tune"
"""Tune's experiment state under the sweep directory (``Tuner.restore`` reads it)."""
METRIC = "validation_sharpe"

_printers: list[Callable[[str], None]] = []
"""Where the progress callback writes; the driver sets it (the callback itself is pickled with
the experiment, so it holds nothing)."""


@contextlib.contextmanager
def printing(print_line: Callable[[str], None]) -> Iterator[None]:
    _printers.append(print_line)
    try:
        yield
    finally:
        _printers.remove(print_line)


def _print(text: str) -> None:
    if _printers:
        _printers[-1](text)


def error_text(error: BaseException | str | None) -> str:
    """One line for a trial's error: the exception the trial raised (Ray wraps it)."""
    if error is None:
        return "unknown error"
    if isinstance(error, str):
        lines = [ln for ln in error.strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else "unknown error"
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"


class Progress(tune.Callback):
    """A line per trial that ends: finished (its last validation Sharpe), stopped early (by the
    scheduler or the Trainer's patience) before the sweep's last epoch, or failed (its error)."""

    def __init__(self, max_epochs: int = 0) -> None:
        self.max_epochs = max_epochs

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        sharpe = last.get(METRIC)
        epoch = last.get("epoch")
        early = isinstance(epoch, int) and epoch < getattr(self, "max_epochs", 0)
        how = f"stopped after epoch {epoch}" if early else "finished"
        score = f"; last validation Sharpe {sharpe:+.3f}" if isinstance(sharpe, (int, float)) and \
            math.isfinite(sharpe) else ""
        _print(f"{trial_name(trial.trial_id)} {how}{score} ({_done(trials, trial)} of {len(trials)} done)")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        _print(f"{trial_name(trial.trial_id)} failed: {error_text(_trial_error(trial))} "
               f"({_done(trials, trial)} of {len(trials)} done)")


def _trial_error(trial: Any) -> BaseException | str | None:
    """The error Tune just recorded for ``trial``, from its files on this machine (the copies in
    the sweep directory are written later)."""
    from ray import cloudpickle

    try:
        if trial.pickled_error_file and Path(trial.pickled_error_file).exists():
            with open(trial.pickled_error_file, "rb") as f:
                return cloudpickle.load(f)
        if trial.error_file and Path(trial.error_file).exists():
            return Path(trial.error_file).read_text(encoding="utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - the error file is only for this line
        pass
    return None


def _done(trials: list[Any], current: Any) -> int:
    return sum(1 for t in trials if t is current or t.status in ("TERMINATED", "ERROR"))


def _himari_home() -> Path:
    """The directory this process imports ``himari`` from (site-packages, or a source tree)."""
    import himari

    return Path(himari.__file__).resolve().parent.parent


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """``ray.init`` puts the driver's working directory first on every worker's ``sys.path``: run
    from a himari source checkout, the workers would import that checkout (without its built
    core, or at another version) instead of the ``himari`` this process runs. Connecting from the
    directory this process's ``himari`` comes from gives the workers the same one."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def ray_instance(address: str | None) -> Iterator[None]:
    """A local Ray instance on every core of this machine, started and stopped here, or the
    cluster at ``address`` (joined and left). A process already connected to Ray (a notebook)
    keeps its connection."""
    if ray.is_initialized():
        yield
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    handlers = _stop_handlers()
    try:
        with _cwd(_himari_home()):
            if address:
                ray.init(address=address, **options)
            else:  # "local": a new instance even where RAY_ADDRESS or a `ray start` cluster exists
                ray.init(address="local", include_dashboard=False, **options)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        where = f"--address {address}: cannot join the Ray cluster" if address else "cannot start a local Ray instance"
        raise ConfigError(f"{where} ({' '.join(str(e).split())[:300]})") from None
    _restore_stop_handlers(handlers)
    try:
        yield
    finally:
        ray.shutdown()


def _stop_handlers() -> dict[int, Any]:
    """The Python handlers of SIGTERM and SIGHUP (the command's, which stop the sweep as Ctrl-C
    does); ``ray.init`` replaces them with its own, which ends the process with a native stack dump."""
    import signal

    from himari.data.atomic import stop_signals

    handlers = {sig: signal.getsignal(sig) for sig in stop_signals()}
    return {sig: handler for sig, handler in handlers.items() if callable(handler)}


def _restore_stop_handlers(handlers: dict[int, Any]) -> None:
    import signal

    for sig, handler in handlers.items():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)


def check_resources(sweep: SweepConfig) -> None:
    """A trial asking for more CPUs or GPUs than the whole cluster has would wait forever."""
    have = ray.cluster_resources()
    for name, need, option in (("CPU", sweep.cpus_per_trial, "--cpus-per-trial"),
                               ("GPU", sweep.gpus_per_trial, "--gpus-per-trial")):
        if need > have.get(name, 0.0):
            raise ConfigError(f"{option} {need:g}: the Ray cluster has {have.get(name, 0.0):g} {name}(s) in all, so "
                              f"no trial could start")


def _trainable(sweep: SweepConfig) -> Any:
    return tune.with_resources(train_trial, {"cpu": sweep.cpus_per_trial, "gpu": sweep.gpus_per_trial})


def _distribution(kind: str, values: tuple[Any, ...]) -> Any:
    if kind == "grid":
        return tune.grid_search(list(values))
    if kind == "choice":
        return tune.choice(list(values))
    low, high = values
    return {"uniform": lambda: tune.uniform(low, high), "loguniform": lambda: tune.loguniform(low, high),
            "int": lambda: tune.randint(low, high + 1), "logint": lambda: tune.lograndint(low, high + 1)}[kind]()


def param_space(sweep: SweepConfig, sweep_dir: Path) -> dict[str, Any]:
    """The trials: every dimension's grid or distribution, the seeds, the folds."""
    seeds, folds = list(sweep.seeds), list(sweep.folds)
    return {"sweep_dir": str(sweep_dir.resolve()),
            "params": {d.key: _distribution(d.kind, d.values) for d in sweep.dimensions},
            "seed": tune.grid_search(seeds) if len(seeds) > 1 else seeds[0],
            "fold": tune.grid_search(folds) if len(folds) > 1 else (folds[0] if folds else None)}


def new_tuner(sweep: SweepConfig, sweep_dir: Path, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    scheduler = None
    if sweep.asha:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=sweep.grace_period,
                                  reduction_factor=sweep.reduction_factor)
    return tune.Tuner(
        _trainable(sweep), param_space=param_space(sweep, sweep_dir),
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler, num_samples=sweep.samples,
                                    max_concurrent_trials=sweep.max_concurrent or None,
                                    search_alg=BasicVariantGenerator(random_state=sweep.search_seed),
                                    trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
                                    # a reused actor keeps torch and the plugins imported for the next trial
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=TUNE, storage_path=str(sweep_dir.resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                                  callbacks=[Progress(max_epochs)]))


def tuner_for(sweep: SweepConfig, sweep_dir: Path, max_epochs: int, retry_failed: bool) -> Any:
    """The sweep's Tuner: restored from its experiment state when there is one (finished trials
    are kept, unfinished ones continue, failed ones stay failed unless ``retry_failed``), else new."""
    path = sweep_dir.resolve() / TUNE
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=_trainable(sweep), resume_unfinished=True,
                                  resume_errored=False, restart_errored=retry_failed)
    return new_tuner(sweep, sweep_dir, max_epochs)


@contextlib.contextmanager
def quiet_tune() -> Iterator[None]:
    """Tune's own console output (its experiment box, its error log lines) withheld: the sweep
    prints a line per trial itself, and ``--json`` keeps stdout for the JSON."""
    import io

    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@dataclass
class TrialOutcome:
    """How one trial ended, before it is scored."""

    name: str
    params: dict[str, Any]
    seed: int
    fold: str | None
    status: str
    """finished, stopped (by ASHA), failed, or unfinished (the sweep was interrupted)."""
    run_dir: str
    error: str | None = None


def outcomes(results: Any, sweep_dir: Path) -> list[TrialOutcome]:
    """Every trial of the experiment with its status and error."""
    from himari.training import rundir

    errors = {Path(r.path).name: r.error for r in results if r.error is not None}
    out = []
    for t in tune.ExperimentAnalysis(results.experiment_path).trials:
        name = trial_name(t.trial_id)
        run_dir = sweep_dir / RUNS / name
        if t.status == "ERROR":
            status = "failed"
        elif t.status == "TERMINATED":
            status = "finished" if (run_dir / rundir.SUMMARY).exists() else "stopped"
        else:
            status = "unfinished"
        config = t.config
        out.append(TrialOutcome(name, dict(config.get("params") or {}), int(config["seed"]), config.get("fold"),
                                status, str(run_dir), error_text(errors[name]) if name in errors else
                                ("unknown error" if status == "failed" else None)))
    return sorted(out, key=lambda o: o.name)


def _task(fn: Callable[..., Any], sweep: SweepConfig) -> Any:
    return ray.remote(fn).options(num_cpus=sweep.cpus_per_trial, num_gpus=sweep.gpus_per_trial, max_retries=0)


def score(trials: list[TrialOutcome], sweep: SweepConfig, sweep_dir: Path) -> dict[str, dict[str, Any] | str]:
    """Each finished or stopped trial's score: the one it wrote itself, else (a trial ASHA stopped,
    or one killed between its summary and its score) from a Ray task with the trial's resources
    that ends and scores it (``score_trial``). An error of that task is returned as text."""
    out: dict[str, dict[str, Any] | str] = {}
    task = _task(score_trial, sweep)
    refs = {}
    for t in trials:
        if t.status not in ("finished", "stopped"):
            continue
        path = score_path(sweep_dir, t.name)
        saved = read_score(path) if t.status == "finished" else None
        if saved is not None:
            out[t.name] = saved
        else:
            refs[t.name] = task.remote(t.run_dir, str(path), t.status == "stopped")
    for name, ref in refs.items():
        try:
            out[name] = ray.get(ref)
        except ray.exceptions.RayError as e:
            out[name] = error_text(e)
    for t in trials:  # the scheduler stops a trial at its last epoch too (ASHA's max_t): it finished
        s = out.get(t.name)
        if t.status == "stopped" and isinstance(s, dict) and not s["stopped_early"]:
            t.status = "finished"
    return out


def task_result(ref: Any) -> Any:
    """``ray.get(ref)``, with an exception the task raised re-raised as itself: Ray wraps it in a
    ``RayTaskError`` whose text is the worker's traceback (with terminal colour codes), where the
    command should print the error's own one line (a himari error keeps its exit code)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from None
        raise


def report_targets(runs: list[tuple[str, str]], sweep: SweepConfig) -> list[Any]:
    """The report targets of ``(run_dir, label)`` pairs (absolute paths: the task runs in a Ray
    worker, elsewhere), scored in one Ray task."""
    runs = [(str(Path(run_dir).resolve()), label) for run_dir, label in runs]
    return task_result(_task(trial.report_targets, sweep).remote(runs))
