"""docs/plugins.md documents every hook with its exact signature (datasette style)."""

from __future__ import annotations

import inspect
from pathlib import Path

from himari.plugin import spec

DOC = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def test_every_hook_is_documented_with_its_signature() -> None:
    text = DOC.read_text()
    for name in spec.HOOK_NAMES:
        fn = getattr(spec, name)
        params = ", ".join(inspect.signature(fn).parameters)
        assert f"{name}({params})" in text, f"docs/plugins.md lacks {name}({params})"


def test_hook_names_match_the_module() -> None:
    declared = {n for n in dir(spec) if n.startswith("himari_")}
    assert declared == set(spec.HOOK_NAMES)
