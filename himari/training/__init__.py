"""Training infrastructure: the Trainer, run configs, checkpoints, seeding, run directories.

Names load lazily so ``import himari.training`` stays light (torch loads when a run starts).
See docs/training.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Trainer": "himari.training.trainer",
    "TrainingError": "himari.training.trainer",
    "RunConfig": "himari.training.config",
    "TrainConfig": "himari.training.config",
    "merge_run_config": "himari.training.config",
    "resolve_run_config": "himari.training.config",
    "CheckpointError": "himari.training.checkpoint",
    "save_checkpoint": "himari.training.checkpoint",
    "load_checkpoint": "himari.training.checkpoint",
    "load_trained": "himari.training.assemble",
    "seed_everything": "himari.training.seeding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'himari.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
