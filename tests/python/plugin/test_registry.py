"""The registry: duplicates name both plugins, unknown names get close matches, specs are checked."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from himari.errors import ConfigError
from himari.plugin import ModelSpec, PluginConflictError, Registry, TrackerSpec, UnknownPluginError
from himari.plugin.registry import Origin


@dataclass(frozen=True)
class DummyConfig:
    width: int = 4
    """A width."""


def spec(name: str = "tiny-model", **kw) -> ModelSpec:
    return ModelSpec(name=name, summary="a tiny model", config=DummyConfig, factory=lambda c, ctx: None, **kw)


def test_duplicate_names_both_plugins() -> None:
    reg = Registry("model", ModelSpec)
    with reg.origin(Origin("pkg_a.models", "himari-a", "1.0")):
        reg.add(spec())
    with reg.origin(Origin("pkg_b.models", "himari-b", "2.0")), pytest.raises(PluginConflictError) as e:
        reg.add(spec())
    msg = str(e.value)
    assert "pkg_a.models (himari-a 1.0)" in msg and "pkg_b.models (himari-b 2.0)" in msg
    assert isinstance(e.value, ValueError)


def test_unknown_name_suggests_close_matches() -> None:
    reg = Registry("model", ModelSpec)
    reg.add(spec("baseline-mlp"))
    reg.add(spec("flag-trader"))
    with pytest.raises(UnknownPluginError, match="did you mean baseline-mlp") as e:
        reg.get("baseline-mpl")
    assert isinstance(e.value, ConfigError)  # exit code 2 at the CLI
    with pytest.raises(UnknownPluginError, match="registered: baseline-mlp, flag-trader"):
        reg.get("zzz")


def test_blocked_names_are_skipped_and_reported() -> None:
    reg = Registry("model", ModelSpec, blocked=frozenset({"tiny-model"}))
    reg.add(spec())
    assert "tiny-model" not in reg
    with pytest.raises(UnknownPluginError, match="blocked by HIMARI_DISABLE_PLUGINS"):
        reg.get("tiny-model")


def test_registry_rejects_other_spec_types() -> None:
    reg = Registry("model", ModelSpec)
    with pytest.raises(TypeError, match="takes ModelSpec"):
        reg.add(TrackerSpec(name="t", summary="s", config=DummyConfig, factory=lambda c: None))


@pytest.mark.parametrize("kw, match", [
    ({"name": "Bad_Name"}, "kebab-case"),
    ({"code": "Z9"}, "A1..K8"),
    ({"paradigm": "magic"}, "paradigm"),
])
def test_spec_validation(kw, match) -> None:
    args = {"name": "ok-name", "summary": "s", "config": DummyConfig, "factory": lambda c, x: None, **kw}
    with pytest.raises(ValueError, match=match):
        ModelSpec(**args)


def test_codes_a1_to_k8_accepted() -> None:
    assert spec(code="A1").code == "A1" and spec(code="K8").code == "K8"
