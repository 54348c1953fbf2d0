"""``himari plugins list`` is readable at 80 columns (no word split across lines, nothing past
the edge) and shows a plugin's seed code; a wide terminal gets every column on one line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.plugin import ModelSpec, TrackerSpec, hookimpl

SUMMARY = "an in-memory seed model whose summary is long enough to wrap at eighty columns (coded)"


@dataclass(frozen=True)
class CodedConfig:
    n: int = 1
    """How many."""


class CodedPlugin:
    @hookimpl
    def himari_register_models(self, registry):
        registry.add(ModelSpec(name="coded-model", summary=SUMMARY, config=CodedConfig, code="A3",
                               factory=lambda c, x: None, parameter_count=lambda c, n: (12_345, 678)))

    @hookimpl
    def himari_register_trackers(self, registry):
        registry.add(TrackerSpec(name="coded-tracker", summary="a tracker with a seed code", config=CodedConfig,
                                 code="K7", factory=lambda c: None))


@pytest.fixture
def with_coded_plugin(monkeypatch):
    """The installed plugins plus an in-memory one that declares seed codes."""
    import himari.plugin.manager as manager

    plugins = manager.build_plugins()
    plugins.register(CodedPlugin(), name="coded-plugin")
    monkeypatch.setattr(manager, "get_plugins", lambda: plugins)
    return plugins


def _list(columns: int) -> str:
    out = CliRunner().invoke(app, ["plugins", "list"], env={"COLUMNS": str(columns)})
    assert out.exit_code == 0, out.output
    return out.output


def _summaries() -> list[str]:
    data = json.loads(CliRunner().invoke(app, ["plugins", "list", "--json"]).output)
    return [r["summary"] for r in data["plugins"]]


def test_eighty_columns_split_no_word_and_show_codes(with_coded_plugin) -> None:
    text = _list(80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    tokens = set(re.split(r"[\s│┃]+", text))
    summaries = _summaries()
    assert SUMMARY in summaries
    for summary in summaries:
        for word in summary.split():
            assert word in tokens, f"{word!r} of {summary!r} is split across lines:\n{text}"
    for name in ("baseline-mlp", "confidence-penalty", "flag-trader", "tensorboard"):
        assert name in tokens
    # the code stands next to its plugin's name, on the same line
    assert any("coded-model (A3)" in line for line in lines), text
    assert any("coded-tracker (K7)" in line for line in lines), text
    assert "12,345 (678)" in text


def test_wide_terminal_shows_every_column_on_one_line(with_coded_plugin) -> None:
    text = _list(220)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 220
    header = next(line for line in lines if "summary" in line)
    for col in ("kind", "name", "code", "origin", "summary", "params (trainable)"):
        assert col in header
    for summary in _summaries():  # each summary whole on one line
        assert any(summary in line for line in lines), summary
    row = next(line for line in lines if "coded-model" in line)
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[:4] == ["model", "coded-model", "A3", "coded-plugin"]
    assert cells[-1] == "12,345 (678)"
    mlp = next(line for line in lines if "baseline-mlp" in line)
    assert "himari 0.1.0" in mlp and "16,643 (16,643)" in mlp


def test_blocked_plugins_listed_at_eighty_columns(monkeypatch) -> None:
    import himari.plugin.manager as manager

    monkeypatch.setattr(manager, "get_plugins", lambda: manager.build_plugins(disable="zscore"))
    text = _list(80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "blocked plugins" in text and "reason" in text
    row = next(line for line in text.splitlines() if "zscore" in line)
    assert "HIMARI_DISABLE_PLUGINS" in text and "himari 0.1.0" in row
