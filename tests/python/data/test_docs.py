"""docs/data.md documents every feature, from the one definition (no drift)."""

from __future__ import annotations

from pathlib import Path

from himari.data.docgen import BEGIN, END, render_block
from himari.data.features import FEATURE_NAMES
from himari.data.labels import LABELERS

DOC = Path(__file__).resolve().parents[3] / "docs" / "data.md"


def test_feature_table_is_generated_and_current():
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index(BEGIN): text.index(END) + len(END)]
    assert block == render_block(), "run: python -m himari.data.docgen docs/data.md"


def test_every_feature_and_labeler_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for name in FEATURE_NAMES:
        assert f"`{name}`" in text, name
    for name in LABELERS:
        assert f"`{name}`" in text, name
    for cmd in ("himari data import", "himari data synth", "himari data prepare"):
        assert cmd in text
