"""The single import of the native extension, so a missing build fails with one clear message."""

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
