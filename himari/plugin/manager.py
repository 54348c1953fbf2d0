"""The cached plugin manager and its typed facade, ``Plugins``: the one place that calls hooks.

Plugins are found only through entry points of the ``himari`` group (the built-ins included):
the manager never imports a plugin module by name. Environment:

- ``HIMARI_DISABLE_PLUGINS=a,b``: block plugins by entry-point name (module path), distribution
  name, or registered plugin name (``baseline-mlp``). Blocked modules are never imported;
  blocked names are skipped at registration. Both show as blocked in ``himari plugins list``.
- ``HIMARI_PLUGIN_AUTOLOAD=0``: load no entry points at all (tests register plugins by hand).

``get_plugins()`` is cached per value of those variables, so a test (or a long-lived process)
that changes them gets a fresh manager; ``reset_plugins()`` drops the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from himari.errors import HimariError
from himari.plugin import PROJECT, spec
from himari.plugin.api import KINDS, GeneratorSpec, ModelSpec, PreprocessorSpec, TrackerSpec, TrainingMethodSpec
from himari.plugin.registry import Entry, Origin, PluginConflictError, Registry

ENV_DISABLE = "HIMARI_DISABLE_PLUGINS"
ENV_AUTOLOAD = "HIMARI_PLUGIN_AUTOLOAD"

_KIND_TABLE: dict[str, tuple[str, type]] = {
    "model": ("himari_register_models", ModelSpec),
    "preprocessor": ("himari_register_preprocessors", PreprocessorSpec),
    "training-method": ("himari_register_training_methods", TrainingMethodSpec),
    "tracker": ("himari_register_trackers", TrackerSpec),
    "generator": ("himari_register_generators", GeneratorSpec),
}


class PluginLoadError(HimariError):
    """A plugin module failed to import (a broken third-party install: exit code 1)."""


@dataclass(frozen=True)
class BlockedPlugin:
    plugin: str
    distribution: str | None
    version: str | None
    reason: str


def _tokens(value: str) -> frozenset[str]:
    return frozenset(t.strip() for t in value.split(",") if t.strip())


def _himari_entry_points() -> list[Any]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for ep in entry_points(group=PROJECT):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else ""
        key = (ep.name, ep.value, dist)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    return out


class Plugins:
    """Typed facade over a pluggy manager: registries per kind, built on first use."""

    def __init__(self, pm: pluggy.PluginManager, *, blocked_names: frozenset[str] = frozenset(),
                 origins: dict[str, Origin] | None = None, blocked: list[BlockedPlugin] | None = None) -> None:
        self.pm = pm
        self._blocked_names = blocked_names
        self._origins = dict(origins or {})
        self._blocked = list(blocked or [])
        self._registries: dict[str, Registry[Any]] = {}

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an in-memory plugin object (tests, notebooks); drops built registries."""
        self.pm.register(plugin, name=name)
        self._registries.clear()

    def _origin(self, plugin_name: str) -> Origin:
        return self._origins.get(plugin_name, Origin(plugin_name))

    def registry(self, kind: str) -> Registry[Any]:
        if kind not in _KIND_TABLE:
            raise ValueError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
        reg = self._registries.get(kind)
        if reg is None:
            hook_name, spec_type = _KIND_TABLE[kind]
            reg = Registry(kind, spec_type, self._blocked_names, tuple(b.plugin for b in self._blocked))
            caller = getattr(self.pm.hook, hook_name)
            # One implementation at a time, so the registry knows who registers what and a
            # conflict names both plugins. Oldest registration first (entry-point order).
            for impl in caller.get_hookimpls():
                with reg.origin(self._origin(impl.plugin_name)):
                    impl.function(*[{"registry": reg}[a] for a in impl.argnames])
            self._registries[kind] = reg
        return reg

    def models(self) -> Registry[ModelSpec]:
        return self.registry("model")

    def preprocessors(self) -> Registry[PreprocessorSpec]:
        return self.registry("preprocessor")

    def training_methods(self) -> Registry[TrainingMethodSpec]:
        return self.registry("training-method")

    def trackers(self) -> Registry[TrackerSpec]:
        return self.registry("tracker")

    def generators(self) -> Registry[GeneratorSpec]:
        return self.registry("generator")

    def entries(self, kinds: tuple[str, ...] = KINDS) -> list[Entry[Any]]:
        return [e for k in kinds for e in self.registry(k).entries()]

    def find(self, name: str) -> list[Entry[Any]]:
        """Every registered plugin called ``name``, whatever its kind."""
        return [self.registry(k).entry(name) for k in KINDS if name in self.registry(k)]

    def blocked(self) -> list[BlockedPlugin]:
        out = list(self._blocked)
        for kind in KINDS:
            for name, origin in self.registry(kind).blocked.items():
                out.append(BlockedPlugin(f"{kind} {name}", origin.distribution, origin.version,
                                         f"{ENV_DISABLE} names {name}"))
        return out

    def register_commands(self, app: Any) -> None:
        """Each plugin's commands, one plugin at a time: a command named like one that exists (a
        built-in's, say) is refused naming the plugin, since Typer would let the later one
        silently take the name over; a hook that raises names the plugin and how to switch it off."""
        for impl in self.pm.hook.himari_register_commands.get_hookimpls():
            origin = self._origin(impl.plugin_name)
            commands, groups = list(app.registered_commands), list(app.registered_groups)
            try:
                impl.function(app=app)
                names = _command_names(app)
                clash = next((n for n in names if names.count(n) > 1), None)
                if clash is not None:
                    raise PluginConflictError(f"plugin {origin.describe()} adds the command {clash!r}, which himari "
                                              f"or another plugin already has; rename it, or set "
                                              f"{ENV_DISABLE}={impl.plugin_name}")
            except PluginConflictError:
                app.registered_commands[:], app.registered_groups[:] = commands, groups
                raise
            except Exception as e:  # noqa: BLE001 - foreign code: name it
                app.registered_commands[:], app.registered_groups[:] = commands, groups
                raise PluginLoadError(f"plugin {origin.describe()} failed to add its commands: "
                                      f"{type(e).__name__}: {e}; uninstall it or set "
                                      f"{ENV_DISABLE}={impl.plugin_name}") from e


def _command_names(app: Any) -> list[str]:
    """The names of a Typer app's commands and groups, as Typer derives them (repeats kept)."""
    names = [c.name or c.callback.__name__.lower().replace("_", "-") for c in app.registered_commands
             if c.callback is not None or c.name]
    names += [g.name or (g.typer_instance.info.name if g.typer_instance is not None else "") or ""
              for g in app.registered_groups]
    return [n for n in names if n]


def build_plugins(*, disable: str = "", autoload: bool = True) -> Plugins:
    """A fresh manager: hookspecs, blocked plugins, then the ``himari`` entry points."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(spec)
    tokens = _tokens(disable)
    origins: dict[str, Origin] = {}
    blocked: list[BlockedPlugin] = []
    loaded_from: dict[str, str] = {}
    if autoload:
        for ep in _himari_entry_points():
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in tokens or (dist is not None and dist in tokens):
                pm.set_blocked(ep.name)
                blocked.append(BlockedPlugin(ep.name, dist, version, f"{ENV_DISABLE} names "
                                             f"{ep.name if ep.name in tokens else dist}"))
                continue
            if ep.name in loaded_from:
                raise PluginConflictError(
                    f"entry point {ep.name!r} of group {PROJECT!r} is declared by {loaded_from[ep.name]} "
                    f"and by {dist}; entry-point names must be the module path")
            try:
                plugin = ep.load()
            except Exception as e:  # noqa: BLE001 - any import failure of foreign code
                raise PluginLoadError(f"plugin {ep.name} ({dist} {version}) failed to load: "
                                      f"{type(e).__name__}: {e}; uninstall it or set "
                                      f"{ENV_DISABLE}={ep.name}") from e
            pm.register(plugin, name=ep.name)
            loaded_from[ep.name] = str(dist)
            origins[ep.name] = Origin(ep.name, dist, version)
    pm.check_pending()
    return Plugins(pm, blocked_names=tokens, origins=origins, blocked=blocked)


@lru_cache(maxsize=4)
def _cached(disable: str, autoload: str) -> Plugins:
    return build_plugins(disable=disable, autoload=autoload.strip().lower() not in ("0", "false", "no"))


def get_plugins() -> Plugins:
    """The process-wide plugins, cached per value of HIMARI_DISABLE_PLUGINS / _AUTOLOAD."""
    return _cached(os.environ.get(ENV_DISABLE, ""), os.environ.get(ENV_AUTOLOAD, "1"))


def reset_plugins() -> None:
    """Forget cached managers (after installing a plugin in a running process, in tests)."""
    _cached.cache_clear()
