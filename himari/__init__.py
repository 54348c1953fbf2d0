"""himari: a trading-research toolkit with a C++/CUDA core.

The package root stays import-light: it never imports torch or the native module, so
``import himari`` is instant and works for tooling (CLI completion, plugin listing). It
registers the gymnasium env ``himari/Trading-v0`` when gymnasium is already imported
(``himari.engine`` always does).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("himari")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if "gymnasium" in sys.modules:  # registering is then free; himari.engine always registers
    from himari._gym import register_envs

    register_envs()

__all__ = ["__version__"]
