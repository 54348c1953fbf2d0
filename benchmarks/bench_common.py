"""Pieces shared by the benchmarks that time himari against a peer in worker processes
(bench_cql.py, bench_cgdt.py): the machine record, the peer's version, a worker's result, and a
replayed step driven as the Trainer drives it.
Imported as a sibling module (the scripts run as ``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def machine_info() -> dict:
    """Where the numbers came from: host, CPU model, cores, versions, commit and load at start."""
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    cpu_model = val.strip()
                    break
    except OSError:
        cpu_model = platform.processor() or "unknown"
    # "-dirty" when the files differ from the commit (on the GPU machine the checkout's commit is
    # older than the working tree sent there, so the commit alone would misname the code)
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=7"],
                            capture_output=True, text=True).stdout.strip()
    import torch

    return {"hostname": socket.gethostname(), "cpu_model": cpu_model, "cores": os.cpu_count(),
            "os": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git_commit": commit, "load_avg_start": os.getloadavg(),
            # the card, when there is one: result files from the GPU machine must say which came
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def worker_result(python: str, script: str, args: list[str]) -> list[str]:
    """Run ``script --worker ARGS`` under ``python``; the fields of its last output line."""
    out = subprocess.run([python, script, "--worker", *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout.strip().splitlines()[-1].split()


def package_version(python: str, package: str) -> str | None:
    """``package.__version__`` as ``python`` imports it, or None when it cannot."""
    out = subprocess.run([python, "-c", f"import {package}; print({package}.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA), so a wall clock read after it counts it; a no-op
    on the CPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def read_as_the_trainer_reads(stepper: Any) -> Callable[[Any], None]:
    """``update(batch)`` for a ``GraphedStep``: launched, its logs read every ``loop.READ_EVERY``
    steps, as the Trainer's loop reads them (a read waits for the GPU, so reading every step
    would time a wait the Trainer does not make)."""
    from himari.training.loop import READ_EVERY

    unread: list[Any] = []

    def update(batch: Any) -> None:
        unread.append(stepper.launch(batch))
        if len(unread) >= READ_EVERY:
            for read in unread:
                read()
            unread.clear()

    return update
