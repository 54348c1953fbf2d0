"""multi-task (K4): auxiliary heads predicting the next-horizon log return and the realised
volatility beside the action, trained with the model on its shared trunk (Caruana 1997,
"Multitask Learning"), with fixed loss weights or uncertainty weighting (Kendall, Gal and
Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses").

The heads read the model's ``trunk(batch)`` (the representation its action head reads) through
the ``model_built`` hook, so the auxiliary gradients shape the trunk the policy uses. Targets
(``targets.py``) come from the closes after each row, defined only where the whole horizon lies
in the same train range; they are standardised with the train split's mean and std, and each
head's loss is the mean squared error of its standardised target. Validation MAE and correlation
are logged every epoch (``validation/multi-task/...``), and the best checkpoint's are in
``summary.json``. The action loss keeps weight 1; uncertainty weighting learns a log-variance
per auxiliary task. Works with the built-in models with a trunk accessor: baseline-mlp,
ppo-lstm, cgdt and flag-trader (cql's two Q networks share no trunk).

Package: ``config`` (the config, no torch), ``targets`` (NumPy), ``heads`` (torch), ``method``.
"""

from __future__ import annotations

from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl
from himari_builtin.training.multi_task.config import MODELS, NAME, MultiTaskConfig


def _factory(config: MultiTaskConfig) -> Any:
    from himari_builtin.training.multi_task.method import MultiTask

    return MultiTask(config)


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name=NAME, code="K4",
                                    summary="auxiliary return and volatility heads on the shared trunk (model-built hook)",
                                    config=MultiTaskConfig, factory=_factory, models=MODELS,
                                    paradigms=("supervised", "offline-rl", "online-rl")))
