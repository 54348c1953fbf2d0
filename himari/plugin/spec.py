"""Hook specifications: the six hooks a himari plugin may implement.

Every registration hook takes a registry object and returns nothing: the host owns duplicate
detection, lookup and error messages (llm / tox style), and a plugin only hands over specs.
Hooks are grouped by when they run. All are called once, when the cached plugin manager is
first asked for plugins of that kind (``himari.plugin.manager.get_plugins``).

docs/plugins.md documents each hook; a test keeps that page in sync with this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from himari.plugin import PROJECT

if TYPE_CHECKING:
    from himari.plugin.api import GeneratorSpec, ModelSpec, PreprocessorSpec, TrackerSpec, TrainingMethodSpec
    from himari.plugin.registry import Registry

hookspec = pluggy.HookspecMarker(PROJECT)

# --- registration: what the plugin provides ------------------------------------------------


@hookspec
def himari_register_models(registry: Registry[ModelSpec]) -> None:
    """Add model plugins: ``registry.add(ModelSpec(...))`` once per model.

    A model owns its network and its loss for its paradigm (supervised, offline RL, online RL,
    sequence); the Trainer owns the loop. See :class:`himari.plugin.api.Model`.
    """


@hookspec
def himari_register_preprocessors(registry: Registry[PreprocessorSpec]) -> None:
    """Add preprocessors: ``registry.add(PreprocessorSpec(...))``.

    A preprocessor is fitted on the train split only and transforms every split; its state is
    saved with the run. See :class:`himari.plugin.api.Preprocessor`.
    """


@hookspec
def himari_register_training_methods(registry: Registry[TrainingMethodSpec]) -> None:
    """Add training methods: ``registry.add(TrainingMethodSpec(...))``.

    A training method hooks into named points of the Trainer's loop (dataset, env config, loss
    terms, epoch start, outer loop). See :class:`himari.plugin.api.TrainingMethod`.
    """


@hookspec
def himari_register_trackers(registry: Registry[TrackerSpec]) -> None:
    """Add experiment trackers (``jsonl``, ``tensorboard``, ``wandb`` are built in):
    ``registry.add(TrackerSpec(...))``. See :class:`himari.plugin.api.Tracker`."""


@hookspec
def himari_register_generators(registry: Registry[GeneratorSpec]) -> None:
    """Add synthetic-data generators: ``registry.add(GeneratorSpec(...))``.

    A generator is fitted on the train split's rows only and samples synthetic windows or rows
    (``himari data augment --method NAME``); ``himari train --augment SET`` adds a set to the
    train split. See :class:`himari.plugin.api.Generator`.
    """


# --- command line --------------------------------------------------------------------------


@hookspec
def himari_register_commands(app: Any) -> None:
    """Attach commands or command groups to the ``himari`` Typer app
    (``app.command("hello")(fn)`` or ``app.add_typer(sub, name="hello")``).

    Called by the ``himari`` console script before it parses the command line.
    """


HOOK_NAMES = (
    "himari_register_models",
    "himari_register_preprocessors",
    "himari_register_training_methods",
    "himari_register_trackers",
    "himari_register_generators",
    "himari_register_commands",
)
