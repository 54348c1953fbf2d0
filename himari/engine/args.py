"""Scalar arguments of the engine's Python API, checked before they reach the native core.

Why here and not in the binding: pybind11 converts leniently in some places and strictly in
others. A float passed as a count used to be truncated by the wrapper's ``int()`` (``n_envs=2.5``
built 2 envs), a string flag was read by its truthiness (``random_start='False'`` was True), and
an integer too wide for the native type raised pybind11's ``TypeError`` instead of the
documented ``InvalidArgumentError``. Each scalar now passes through one of these three checks,
which refuse anything that is not exactly the kind of value asked for, with the argument's name.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from himari.errors import InvalidArgumentError

INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


def integer(name: str, value: Any, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``: Python and numpy integers only, never a
    bool, a float (even a whole one: 3.0 is more often a slip than a count) or a string."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name}: expected an integer, got {value!r}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise InvalidArgumentError(f"{name}: expected an integer in [{minimum}, {maximum}], got {number}")
    return number


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool: True or False (Python or numpy) only, so that ``'False'``, ``0.0`` or
    ``None`` never stand for a choice the caller did not make."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def real(name: str, value: Any) -> float:
    """``value`` as a float: a Python or numpy real number, not a bool or a string. Its domain
    (a fee in [0, 1), a positive year, a finite coefficient) is the native core's to check, with
    the same message on every path."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name}: expected a number, got {value!r}")
    return float(value)


__all__ = ["INT32_MAX", "INT64_MAX", "INT64_MIN", "UINT64_MAX", "flag", "integer", "real"]
