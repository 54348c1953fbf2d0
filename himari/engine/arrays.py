"""Turn array-likes from numpy, torch (CPU) or anything with ``__dlpack__``/``__array__`` into
numpy views without copying or changing their dtype. The native binding does the checking."""

from __future__ import annotations

from typing import Any

import numpy as np

from himari.engine._native import _core

ACTION_DTYPES: tuple[str, ...] = tuple(_core.ACTION_DTYPES)
"""The dtypes an action or signal array may have (native byte order): numpy names, in the order
error messages list them. The native core defines the list (HIMARI_FOR_EACH_ACTION_TYPE in
cpp/include/himari/common/action_types.h); other dtypes are rejected with a ShapeError, never
converted."""


def check_mode(mode: Any) -> str:
    """The position mode, checked here so a wrong type gets the same error as a wrong name."""
    from himari.errors import InvalidArgumentError

    if mode not in ("long_flat", "long_short"):
        raise InvalidArgumentError(f"mode: expected 'long_flat' or 'long_short', got {mode!r}")
    return str(mode)


def is_device_array(x: Any) -> bool:
    """True for CUDA memory: ``__cuda_array_interface__``, or ``__dlpack__`` on a CUDA device
    (DLPack device type 2). Duck-typed, so no framework is imported."""
    if hasattr(x, "__cuda_array_interface__"):
        return True
    device = getattr(x, "__dlpack_device__", None)
    return device is not None and device()[0] == 2


def as_host_array(x: Any) -> Any:
    """A numpy view of ``x``: zero-copy for arrays and CPU tensors, never a dtype change.

    torch tensors are recognised by duck typing (``__dlpack__``) so that this module never
    imports torch. Lists become arrays of numpy's inferred dtype; anything numpy cannot view
    passes through unchanged for the native checks to reject with a named error.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except (ValueError, TypeError):  # ragged: let the binding name the argument
            return x
    if not hasattr(x, "__dlpack__"):
        return x
    device = getattr(x, "__dlpack_device__", None)
    if device is not None and device()[0] != 1:  # 1 = kDLCPU
        from himari.errors import DeviceError

        raise DeviceError(
            f"expected a CPU array, got one on DLPack device {device()}: the CUDA backend is not in this release"
        )
    if getattr(x, "requires_grad", False):
        x = x.detach()
    return np.from_dlpack(x)
