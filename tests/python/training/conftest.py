"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from himari.plugin.api import TrainingMethodSpec, hookimpl
from himari.plugin.manager import build_plugins


@dataclass(frozen=True)
class NoSettings:
    """The config of a test training method that has none."""


@pytest.fixture
def plugins_with_method() -> Callable[..., Any]:
    """``plugins_with_method(name, factory, paradigms=("online-rl",))``: the built-in plugins plus
    one training method registered as a third-party plugin would (``factory(config) -> method``),
    for tests that reach the Trainer's hook points through the public plugin API."""

    def build(name: str, factory: Callable[[Any], Any], paradigms: tuple[str, ...] = ("online-rl",)) -> Any:
        class Plugin:
            @hookimpl
            def himari_register_training_methods(self, registry: Any) -> None:
                registry.add(TrainingMethodSpec(name=name, summary="a test method", config=NoSettings,
                                                factory=factory, paradigms=paradigms))

        plugins = build_plugins()
        plugins.register(Plugin(), name=f"{name}-plugin")
        return plugins

    return build
