"""Plugin configuration dataclasses: their documented fields, and building them from plain data.

A ``<Name>Config`` is a dataclass whose fields carry defaults and a one-line docstring right
below each field (cleanrl style). ``config_fields`` reads those docstrings from the source, so
authors write documentation once and ``himari plugins show`` prints it. ``build_config`` turns a
mapping from YAML or ``--set`` into an instance, rejecting unknown keys and wrong types with a
``ConfigError`` naming the dotted key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import textwrap
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Union

from himari.errors import ConfigError

_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class ConfigField:
    name: str
    type: str
    default: Any
    doc: str


@lru_cache(maxsize=None)
def _attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written as a string statement right after a field (PEP 257 attribute docs)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for prev, node in zip(body, body[1:]):
            if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name)
                    and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _MISSING


def config_fields(cls: type) -> list[ConfigField]:
    """The documented, init-able fields of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        doc = f.metadata.get("doc") or docs.get(f.name, "")
        out.append(ConfigField(f.name, _type_name(hints.get(f.name, f.type)), _default(f), doc))
    return out


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config instance as plain JSON/YAML-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)


def unknown_key_error(key: str, choices: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], choices, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(choices) or 'none'}"
    return ConfigError(f"{key}: unknown key in {where}{hint}")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless cases (int -> float,
    list -> tuple). Raises ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in (tuple, list):  # a bare ``tuple`` or ``list``: any items (YAML gives a list for either)
        origin, args = tp, ()
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            items = [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value))]
        else:
            items = [coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):  # NaN slips through every comparison a check makes
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_config(tp, value, key)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _check_defaults(cls: type, hints: dict[str, Any], given: dict[str, Any], where: str) -> None:
    """A default that its own annotation refuses (``span: int = "48"``) is the plugin's mistake:
    found here, when a config is built, rather than after a run trained with it, when its saved
    config.yaml is read back by a backtest or a resume and refused."""
    for f in dataclasses.fields(cls):
        if not f.init or f.name in given:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        try:
            coerce(default, hints[f.name], f"{where}.{f.name}")
        except ConfigError as e:
            raise ConfigError(f"{e} (the default of {cls.__name__}.{f.name}: the plugin's config does not "
                              f"accept its own default; its author must fix the default or the annotation)") from None


def build_config(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """An instance of the dataclass ``cls`` from ``values`` (missing keys keep their defaults).

    ``where`` is the dotted prefix used in error messages (``plugins.baseline-mlp``).
    """
    values = {} if values is None else values
    if dataclasses.is_dataclass(values) and isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise unknown_key_error(f"{where}.{key}", known, where)
        kwargs[name] = coerce(value, hints[name], f"{where}.{key}")
    _check_defaults(cls, hints, kwargs, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a __post_init__ check of the plugin
        raise ConfigError(f"{where}: {e}") from None
