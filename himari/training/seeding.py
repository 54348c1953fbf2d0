"""One seed for every random stream a run touches, and the states to resume them exactly.

A resumed run must draw the same numbers an uninterrupted one would, so checkpoints carry the
states of Python's ``random``, NumPy's global generator and torch's CPU (and CUDA) generators.
Data order does not need saving: shuffles are drawn from ``(seed, epoch)`` (``epoch_order``).
Python and NumPy states are stored as JSON text because checkpoints are loaded with
``torch.load(weights_only=True)``, which admits tensors and plain containers only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; ask torch for deterministic kernels where it has them."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def torch_process_settings_kept() -> Iterator[None]:
    """Give the caller back torch's process-wide settings that a run changes: deterministic mode
    (``seed_everything``), cuDNN autotuning and the CPU thread count (a model may set its own).

    They belong to the process, not to the run: without this a notebook, a sweep's next trial or
    any torch code after ``Trainer.fit`` kept deterministic mode on, and on a GPU then warned
    about (or slowed down in) kernels of its own that have no deterministic version."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of ``n`` training items in ``epoch``: a pure function of (seed, epoch), so a
    run resumed mid-epoch sees the same order."""
    return np.random.default_rng([int(seed), int(epoch), 0x68696D]).permutation(n)


def rng_state() -> dict[str, Any]:
    import torch

    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": json.dumps([py[0], list(py[1]), py[2]]),
        "numpy": json.dumps([name, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
