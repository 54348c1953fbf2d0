"""Makes the slow NumPy reference (engine_reference.py) importable by the engine tests.

pytest runs with --import-mode=importlib, which does not put test folders on sys.path; the
reference is a plain module beside the tests, so this folder is added once here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
