"""What ``himari plugins list`` and ``himari plugins show`` report, as plain data.

Parameter counts of models come from the spec's ``parameter_count`` arithmetic at the default
config and 60 features, so listing never imports torch. A model without that function is built
on torch's meta device (no memory, no initialisation cost), which imports torch lazily, only
then.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from himari.plugin.api import KINDS, ModelContext, ModelSpec, ParamCount
from himari.plugin.config import config_fields
from himari.plugin.registry import Entry, describe_entry


def model_parameters(spec: ModelSpec, config: Any = None, n_features: int | None = None) -> ParamCount:
    config = spec.config() if config is None else config
    n = ModelContext().n_features if n_features is None else n_features
    if spec.parameter_count is not None:
        return ParamCount(*spec.parameter_count(config, n))
    import torch

    with torch.device("meta"):
        model = spec.factory(config, ModelContext(n_features=n))
    params = list(model.network.parameters())
    return ParamCount(sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def entry_row(entry: Entry[Any]) -> dict[str, Any]:
    row = describe_entry(entry)
    spec = entry.spec
    row["extras"] = list(spec.extras)
    if isinstance(spec, ModelSpec):
        row["paradigm"] = spec.paradigm
        try:
            count = model_parameters(spec)
            row["parameters"] = {"total": count.total, "trainable": count.trainable}
        except Exception as e:  # noqa: BLE001 - a listing must not die on one broken plugin
            row["parameters"] = {"error": f"{type(e).__name__}: {e}"}
    return row


def list_plugins(plugins: Any, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    return {
        "plugins": [entry_row(e) for e in plugins.entries(kinds)],
        "blocked": [{"plugin": b.plugin, "distribution": b.distribution, "version": b.version, "reason": b.reason}
                    for b in plugins.blocked()],
    }


def show_plugin(plugins: Any, name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Every plugin called ``name`` (of ``kind`` if given) with its config fields."""
    entries = [plugins.registry(kind).entry(name)] if kind else plugins.find(name)
    if not entries:
        import difflib

        from himari.plugin.registry import UnknownPluginError, blocked_modules_note

        blocked_as = [k for k in KINDS if name in plugins.registry(k).blocked]
        if blocked_as:
            raise UnknownPluginError(f"{' and '.join(blocked_as)} {name!r} is blocked by HIMARI_DISABLE_PLUGINS")
        names = all_names(plugins)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        modules = plugins.registry(KINDS[0]).blocked_modules
        raise UnknownPluginError(f"unknown plugin {name!r}{hint} (registered: {', '.join(names)})"
                                 f"{blocked_modules_note(modules)}")
    out = []
    for e in entries:
        row = entry_row(e)
        row["module"] = getattr(e.spec.factory, "__module__", None)
        row["config_class"] = e.spec.config.__name__
        row["config"] = [{"name": f.name, "type": f.type, "required": f.default is dataclasses.MISSING,
                          "default": None if f.default is dataclasses.MISSING else _plain(f.default), "doc": f.doc}
                         for f in config_fields(e.spec.config)]
        if isinstance(e.spec, ModelSpec):
            row["default_preprocess"] = list(e.spec.default_preprocess)
            row["recipe"] = None if e.spec.recipe is None else _plain(e.spec.recipe)
        out.append(row)
    return out


def _plain(v: Any) -> Any:
    """Plain JSON-able data: tuples as lists and mappings as dicts, all the way down (config
    defaults, a model's recipe)."""
    if isinstance(v, dict) or hasattr(v, "items"):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def all_names(plugins: Any, kind: str | None = None) -> list[str]:
    kinds = (kind,) if kind else KINDS
    return sorted({n for k in kinds for n in plugins.registry(k).names()})
