"""himari: a trading-research toolkit with a C++/CUDA core.

The package root stays import-light: it never imports torch or the native module, so
``import himari`` is instant and works for tooling (CLI completion, plugin listing).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("himari")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
