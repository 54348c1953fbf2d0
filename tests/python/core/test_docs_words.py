"""README.md and docs/*.md speak to users about the product: no word about issues, tickets,
hand-over notes, sessions or how the work was organised (links to a project's issue tracker,
such as a GitHub issues URL, are fine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
URL = re.compile(r"https?://\S+")
FORBIDDEN = [
    (re.compile(r"\bissues?\b", re.I), "issue"),
    (re.compile(r"\bhand-?\s?overs?\b", re.I), "hand-over"),
    (re.compile(r"\btickets?\b", re.I), "ticket"),
    (re.compile(r"\bsession notes?\b", re.I), "session note"),
    (re.compile(r"\b(helper|steering|developer) sessions?\b", re.I), "session"),
    (re.compile(r"\bworktrees?\b", re.I), "worktree"),
    (re.compile(r"\bthe brief\b", re.I), "the brief"),
]


def offending_lines(text: str) -> list[str]:
    """Lines of ``text`` that speak of the work rather than the product."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        plain = URL.sub("", line)
        out += [f"{n}: {word}: {line.strip()}" for pattern, word in FORBIDDEN if pattern.search(plain)]
    return out


def test_docs_exist() -> None:
    assert (ROOT / "README.md").exists() and len(DOCS) > 5


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_speak_about_the_product(path: Path) -> None:
    assert offending_lines(path.read_text(encoding="utf-8")) == []


def test_the_check_catches_work_words_and_spares_links() -> None:
    assert offending_lines("The issue's target is 4,822,276.")
    assert offending_lines("comes with this plugin's hand-over note")
    assert offending_lines("see ticket 12") and offending_lines("a Handover for later")
    assert offending_lines("as the session notes say")
    assert not offending_lines("report bugs at https://github.com/example/himari/issues/new")
    assert not offending_lines("the NVLink-multicast note and a training session")
