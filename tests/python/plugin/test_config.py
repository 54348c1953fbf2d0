"""Config dataclasses: documented fields, and strict building from plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from himari.errors import ConfigError
from himari.plugin.config import build_config, config_fields, config_to_dict


@dataclass(frozen=True)
class SampleConfig:
    hidden_sizes: tuple[int, ...] = (8, 4)
    """Widths."""
    loss: Literal["ce", "focal"] = "ce"
    """Which loss."""
    rate: float = 0.5
    """A rate."""
    flag: bool = False
    """A switch."""
    name: str | None = None
    """Optional name."""


def test_fields_carry_defaults_and_docstrings() -> None:
    fields = {f.name: f for f in config_fields(SampleConfig)}
    assert fields["hidden_sizes"].default == (8, 4) and fields["hidden_sizes"].doc == "Widths."
    assert fields["loss"].doc == "Which loss."
    assert list(fields) == ["hidden_sizes", "loss", "rate", "flag", "name"]


def test_build_converts_losslessly() -> None:
    cfg = build_config(SampleConfig, {"hidden_sizes": [3, 2, 1], "rate": 1, "loss": "focal", "name": "x"}, "p")
    assert cfg == SampleConfig((3, 2, 1), "focal", 1.0, False, "x")
    assert config_to_dict(cfg)["hidden_sizes"] == [3, 2, 1]


@pytest.mark.parametrize("values, match", [
    ({"hiden_sizes": [1]}, r"p\.hiden_sizes: unknown key .*did you mean hidden_sizes"),
    ({"rate": "fast"}, r"p\.rate: expected a number"),
    ({"flag": 1}, r"p\.flag: expected true or false"),
    ({"loss": "mse"}, r"p\.loss: expected one of 'ce', 'focal'"),
    ({"hidden_sizes": [1, "a"]}, r"p\.hidden_sizes\[1\]: expected an integer"),
    ({"hidden_sizes": 3}, r"p\.hidden_sizes: expected a list"),
    ("not a mapping", r"p: expected a mapping"),
])
def test_bad_values_name_the_key(values, match) -> None:
    with pytest.raises(ConfigError, match=match):
        build_config(SampleConfig, values, "p")


def test_a_default_its_annotation_refuses_is_found_when_the_config_is_built() -> None:
    """``span: int = "48"`` trained, and then its run could never be resumed or backtested: the
    saved config.yaml was refused when read back."""
    @dataclass(frozen=True)
    class Wrong:
        span: int = "48"  # type: ignore[assignment]

    with pytest.raises(ConfigError, match=r"plugins.p.span: expected an integer, got '48' \(the default of Wrong.span"):
        build_config(Wrong, {}, "plugins.p")
    assert build_config(Wrong, {"span": 3}, "plugins.p").span == 3  # a value given replaces it


def test_a_bare_tuple_or_list_annotation_takes_a_list() -> None:
    """YAML has lists only: ``spans: tuple = (1, 2)`` was saved as [1, 2] and then refused
    ("expected tuple"), and ``--set spans=[3,4]`` could never work."""
    @dataclass(frozen=True)
    class Bare:
        spans: tuple = (1, 2)
        names: list = dataclasses.field(default_factory=list)

    got = build_config(Bare, {"spans": [3, 4], "names": ["a"]}, "plugins.p")
    assert got.spans == (3, 4) and got.names == ["a"]
    with pytest.raises(ConfigError, match="plugins.p.spans: expected a list, got 3"):
        build_config(Bare, {"spans": 3}, "plugins.p")
