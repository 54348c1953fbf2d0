"""Registries of plugin specs, one per kind; the host side of the registration hooks.

A registry knows which plugin is registering (the manager sets the origin around each hook
call), so a duplicate name is rejected with both plugins named, and an unknown name is answered
with the closest registered names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from himari.errors import ConfigError, HimariError

T = TypeVar("T")


class UnknownPluginError(ConfigError):
    """A plugin name that is not registered (a usage error: exit code 2)."""


class PluginConflictError(HimariError, ValueError):
    """Two plugins registered the same name for one kind."""


@dataclass(frozen=True)
class Origin:
    """Where a spec came from: the plugin (entry-point name, i.e. module path) and its
    distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"{self.plugin}{dist}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    spec: T
    origin: Origin


class Registry(Generic[T]):
    """Specs of one kind by name. Hooks call ``add``; the rest of himari calls ``get``."""

    def __init__(self, kind: str, spec_type: type, blocked: frozenset[str] = frozenset(),
                 blocked_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.spec_type = spec_type
        self._entries: dict[str, Entry[T]] = {}
        self._origin = Origin("<direct>")
        self._blocked_names = blocked
        self.blocked: dict[str, Origin] = {}
        """Specs skipped because HIMARI_DISABLE_PLUGINS names them."""
        self.blocked_modules = blocked_modules
        """Entry points HIMARI_DISABLE_PLUGINS kept from loading: what they would register is
        unknown, so a missing name is reported with them as a possible cause."""

    @contextmanager
    def origin(self, origin: Origin) -> Iterator[None]:
        previous, self._origin = self._origin, origin
        try:
            yield
        finally:
            self._origin = previous

    def add(self, spec: T) -> None:
        """Register ``spec`` under ``spec.name``; a second spec of the same name is an error that
        names both plugins."""
        if not isinstance(spec, self.spec_type):
            raise TypeError(f"{self._origin.plugin}: registry of {self.kind}s takes "
                            f"{self.spec_type.__name__}, got {type(spec).__name__}")
        name = spec.name  # type: ignore[attr-defined]
        if name in self._blocked_names:
            self.blocked[name] = self._origin
            return
        if name in self._entries:
            first = self._entries[name].origin
            raise PluginConflictError(
                f"{self.kind} {name!r} is registered twice: by {first.describe()} and by "
                f"{self._origin.describe()}; uninstall one or block it with HIMARI_DISABLE_PLUGINS"
            )
        self._entries[name] = Entry(spec, self._origin)

    def get(self, name: str) -> T:
        return self.entry(name).spec

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            pass
        if name in self.blocked:
            raise UnknownPluginError(f"{self.kind} {name!r} is blocked by HIMARI_DISABLE_PLUGINS")
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(self._entries)) or "none"
        raise UnknownPluginError(f"unknown {self.kind} {name!r}{hint} (registered: {known})"
                                 f"{blocked_modules_note(self.blocked_modules)}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def describe_entry(entry: Entry[Any]) -> dict[str, Any]:
    spec = entry.spec
    return {
        "kind": spec.kind,
        "name": spec.name,
        "code": spec.code,
        "summary": spec.summary,
        "plugin": entry.origin.plugin,
        "distribution": entry.origin.distribution,
        "version": entry.origin.version,
    }


def blocked_modules_note(modules: tuple[str, ...] | list[str]) -> str:
    """``; HIMARI_DISABLE_PLUGINS blocks ... (it may provide it)`` when entry points were kept from
    loading, else nothing: a name they would have registered is otherwise just "unknown"."""
    if not modules:
        return ""
    return f"; HIMARI_DISABLE_PLUGINS blocks {', '.join(modules)}, which may provide it"
