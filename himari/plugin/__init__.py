"""The plugin contract of himari: how a package adds models, preprocessors, training methods,
trackers, synthetic-data generators and commands.

A plugin is a module with ``@hookimpl`` functions, declared in its distribution's
``pyproject.toml`` under the ``himari`` entry-point group (entry-point name = dotted module path,
because pluggy silently drops a second entry point of the same name)::

    [project.entry-points.himari]
    "himari_hello.model" = "himari_hello.model"

and the module::

    from dataclasses import dataclass
    from himari.plugin import ModelSpec, hookimpl

    @dataclass(frozen=True)
    class HelloConfig:
        hidden: int = 32
        \"\"\"Width of the hidden layer.\"\"\"

    def build(config, ctx):          # torch imported here, never at module top
        ...

    @hookimpl
    def himari_register_models(registry):
        registry.add(ModelSpec(name="hello", summary="...", config=HelloConfig, factory=build))

The built-in plugins (``himari_builtin``) are declared exactly this way. Hook specifications are
in :mod:`himari.plugin.spec`, the spec types and protocols in :mod:`himari.plugin.api`, the
loading rules (``HIMARI_DISABLE_PLUGINS``, ``HIMARI_PLUGIN_AUTOLOAD``) in
:mod:`himari.plugin.manager`. docs/writing-a-plugin.md walks through a complete plugin.

This package is import-light: importing it loads pluggy and the standard library only. Plugins
import from ``himari.plugin.api`` (or this package) and nothing else of himari.
"""

from __future__ import annotations

PROJECT = "himari"
"""The pluggy project name and the entry-point group."""

from himari.plugin.api import (  # noqa: E402 - the one door: everything a plugin uses
    KINDS,
    Bars,
    EnvConfig,
    EnvSource,
    Generator,
    GeneratorData,
    GeneratorSpec,
    Model,
    ModelContext,
    ModelSpec,
    ParamCount,
    PreprocessData,
    Preprocessor,
    PreprocessorSpec,
    RewardConfig,
    SyntheticSample,
    Tracker,
    TrackerSpec,
    TrainContext,
    TrainingMethod,
    TrainingMethodSpec,
    hookimpl,
)
from himari.plugin.registry import (  # noqa: E402
    PluginConflictError,
    Registry,
    UnknownPluginError,
)

__all__ = [
    "KINDS",
    "PROJECT",
    "Bars",
    "EnvConfig",
    "EnvSource",
    "Generator",
    "GeneratorData",
    "GeneratorSpec",
    "Model",
    "ModelContext",
    "ModelSpec",
    "ParamCount",
    "PluginConflictError",
    "PreprocessData",
    "Preprocessor",
    "PreprocessorSpec",
    "Registry",
    "RewardConfig",
    "SyntheticSample",
    "Tracker",
    "TrackerSpec",
    "TrainContext",
    "TrainingMethod",
    "TrainingMethodSpec",
    "UnknownPluginError",
    "hookimpl",
]
