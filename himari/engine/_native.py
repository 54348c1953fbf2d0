"""The single import of the native extension, so a missing build fails with one clear message.

Type checkers read the module's types from himari/_core.pyi beside the extension
(tests/python/engine/test_core_stub.py keeps it true to the module).
"""

from __future__ import annotations

try:
    from himari import _core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "himari's native core (himari._core) is not built. Install the package with "
        "`pip install .` (or `pip install -e .`) so scikit-build-core compiles it; running from the "
        "source tree without installing cannot import it."
    ) from exc

__all__ = ["_core"]
