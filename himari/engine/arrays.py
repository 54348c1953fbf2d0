"""Turn array-likes from numpy, torch (CPU) or anything with ``__dlpack__``/``__array__`` into
numpy views without copying or changing their dtype. The native binding does the checking."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_host_array(x: Any) -> Any:
    """A zero-copy numpy view of ``x`` when it is a CPU tensor; other inputs pass through.

    torch tensors are recognised by duck typing (``__dlpack__`` plus ``device``) so that this
    module never imports torch.
    """
    if isinstance(x, np.ndarray) or not hasattr(x, "__dlpack__"):
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
