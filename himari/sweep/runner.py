"""One ``himari sweep`` session: the sweep directory (checked, created, locked), Ray (a local
instance, or a cluster), the trials through Ray Tune, then the leaderboard, ``sweep.json`` and
the report of the best trials.

A sweep directory (``sweeps/<model>/<timestamp>/`` or ``--out``):

| path | content |
| --- | --- |
| ``sweep.yaml`` | the sweep's settings (``--resume DIR`` continues with them) |
| ``runs/trial-NNNNN/`` | one ordinary run directory per trial (``himari backtest``, ``evaluate``, ``report`` work on it) |
| ``tune/`` | Ray Tune's experiment state (what a resumed sweep restores) |
| ``sweep.json`` | the leaderboard and its statistics (written last, atomically) |
| ``report.html`` | the best trials against buy-and-hold |

A sweep that fails before its first trial starts (a bad setting, no Ray cluster at
``--address``, too few resources) leaves nothing behind; one that is interrupted keeps its
directory, and ``--resume`` continues it without training its finished trials again.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from himari.errors import ConfigError
from himari.sweep.config import SweepConfig, check
from himari.sweep.trial import RUNS, SETTINGS, load_settings
from himari.training.interrupt import Interrupted

RESULT = "sweep.json"
REPORT = "report.html"


class SweepInterrupted(Interrupted):
    """The sweep stopped before every trial ended (Ctrl-C, or a stop signal the command turns into
    one); ``--resume`` continues it."""


def new_directory(model: str, out: Path | None) -> Path:
    """``--out``, or ``sweeps/<model>/<UTC timestamp>`` (suffixed if taken)."""
    if out is not None:
        return Path(out)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("sweeps") / model / stamp
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{stamp}-{i}")
    return path


def check_new_directory(path: Path) -> None:
    """A new sweep needs a directory that does not exist or is empty (and is not a file)."""
    from himari.training.rundir import LOCK

    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"sweep directory {path}: {'is a file' if parent == path else f'is under {parent}, a file'}")
        if parent.exists():
            break
    if path.exists() and any(p.name != LOCK for p in path.iterdir()):
        raise ConfigError(f"{path}: the directory exists and is not empty; continue the sweep in it with "
                          f"himari sweep --resume {path}, or choose another --out")


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` cluster address must accept a connection: Ray
    itself retries an unreachable one for minutes before it gives up. ``auto`` and other forms
    are left to Ray."""
    import re
    import socket

    if not address:
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)", address.strip())
    if match is None:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: nothing answers at {host}:{port} ({e.strerror or e}); start the "
                          f"cluster with ray start --head, or leave --address out for a local Ray instance") from None


def run_sweep(sweep: SweepConfig | None, directory: Path | None, *, plugins: Any, console: Any,
              address: str | None = None, retry_failed: bool = False) -> dict[str, Any]:
    """A new sweep (``sweep``, into ``directory`` or a new one) or, with ``sweep`` None, the one in
    ``directory`` continued. Returns the content of ``sweep.json``."""
    from himari.data.atomic import write_text_atomic
    from himari.plugin.extras import require_modules
    from himari.training.rundir import RunLock

    require_modules(["ray"], "himari sweep")
    resuming = sweep is None
    if resuming:
        assert directory is not None
        sweep = load_settings(directory)
    else:
        assert sweep is not None
        directory = new_directory(sweep.model, directory)
        check_new_directory(directory)
    # absolute from here on: the trials and the scoring run as Ray tasks in worker processes
    # whose working directory is not this one, so a relative path would name nothing there
    directory = Path(directory).resolve()
    assert sweep is not None and directory is not None
    horizon = check(sweep, plugins)  # again on resume: the plugins installed now must take the settings
    check_address(address)
    from himari.sweep import tune_run  # imports ray

    lock = RunLock(directory)
    lock.acquire()
    started = resuming
    try:
        if not resuming:
            write_text_atomic(directory / SETTINGS, yaml.safe_dump(sweep.to_dict(), sort_keys=False))
        with tune_run.ray_instance(address):
            tune_run.check_resources(sweep)
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            console.print(f"{'resuming' if resuming else 'sweeping'} [bold]{sweep.model}[/]: {sweep.n_trials} trials "
                          f"on {where} ({_resources_text()}), {sweep.cpus_per_trial:g} CPU and "
                          f"{sweep.gpus_per_trial:g} GPU each; directory {directory}",
                          soft_wrap=not console.is_terminal)
            tuner = tune_run.tuner_for(sweep, directory, horizon, retry_failed)
            started = True
            with tune_run.printing(lambda line: console.print(line, soft_wrap=True, highlight=False)), \
                    tune_run.quiet_tune():
                results = tuner.fit()
            trials = tune_run.outcomes(results, directory)
            unfinished = [t.name for t in trials if t.status == "unfinished"]
            if unfinished:
                raise SweepInterrupted(f"the sweep stopped with {len(unfinished)} trial(s) unfinished; continue it "
                                       f"with: himari sweep --resume {directory}")
            console.print(f"scoring {sum(t.status in ('finished', 'stopped') for t in trials)} trial(s) out of "
                          f"sample", soft_wrap=True)
            scores = tune_run.score(trials, sweep, directory)
            from himari.data import PreparedData, resolve_prepared
            from himari.sweep.leaderboard import build

            result = build(sweep, trials, scores, PreparedData(resolve_prepared(sweep.data)))
            result["report"] = _write_report(result, sweep, directory, console)
            result["directory"] = str(directory)
        write_text_atomic(directory / RESULT, json.dumps(result, indent=2) + "\n")
        return result
    except KeyboardInterrupt as e:
        if not started:
            lock.remove_created()
            raise
        from himari.training.interrupt import exit_code

        raise SweepInterrupted(f"interrupted; continue the sweep with: himari sweep --resume {directory}",
                               exit_code(e)) from None
    except BaseException:
        if not started:
            lock.remove_created()
        raise
    finally:
        lock.release()


def _resources_text() -> str:
    import ray

    have = ray.cluster_resources()
    return f"{have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs"


def _write_report(result: dict[str, Any], sweep: SweepConfig, directory: Path, console: Any) -> str | None:
    """``report.html``: the best ``top`` trials on their test splits against buy-and-hold
    (``himari report``'s page); skipped, with a line, where plotly is missing."""
    from himari.plugin.extras import is_installed

    best = [r for r in result["trials"] if "test" in r][: sweep.top]
    if not best:
        return None
    if not is_installed("plotly"):
        console.print("no report.html: it needs plotly (pip install 'himari[report]')")
        return None
    from himari.evaluation.html_report import write_report
    from himari.sweep import tune_run

    targets = tune_run.report_targets([(r["run_dir"], f"#{r['rank']} {r['trial']}") for r in best], sweep)
    write_report(targets, directory / REPORT, title=f"himari sweep: {sweep.model}, best {len(best)} of "
                                                    f"{result['n_trials']} trials")
    return REPORT


__all__ = ["RESULT", "RUNS", "SweepInterrupted", "run_sweep"]
