"""Training infrastructure: the Trainer, run configs, checkpoints, seeding, run directories.

Names load lazily so ``import himari.training`` stays light (torch loads when a run starts).
See docs/training.md.
"""

from __future__ import annotations

from himari._lazy import lazy_exports

_EXPORTS = {
    "Trainer": "himari.training.trainer",
    "TrainingError": "himari.errors",
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


__getattr__, __dir__ = lazy_exports('himari.training', globals(), _EXPORTS)
