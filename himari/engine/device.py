"""Device names, CUDA availability, the caller's CUDA stream, and device-array conversion."""

from __future__ import annotations

import sys
from typing import Any

from himari.engine._native import _core


def cuda_compiled() -> bool:
    """True when this build contains the CUDA backend."""
    return bool(_core.cuda_compiled())


def cuda_available() -> bool:
    """True when CUDA is compiled in and at least one device is visible."""
    return cuda_compiled() and _core.cuda_device_count() > 0


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here, in words a user can act on (a CPU build, no NVIDIA driver or
    one too old, no GPU visible), or None when a device is visible. ``himari info`` prints it so
    that a user who installed the CUDA wheel on a machine without a GPU sees why, not just False."""
    reason = str(_core.cuda_unavailable_reason())
    return reason or None


def check_device(device: str) -> str:
    """Validate a device name (``cpu``, ``cuda``, ``cuda:N``); raise CudaUnavailableError when
    this build or machine cannot run CUDA kernels, rather than silently running on the CPU."""
    from himari.errors import InvalidArgumentError

    if not isinstance(device, str):
        raise InvalidArgumentError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device == "cpu":
        return device
    _core.require_device(device)  # parses; raises CudaUnavailableError with the reason
    return f"cuda:{device_index(device)}"


def device_index(device: str) -> int:
    """The ordinal of ``cuda`` / ``cuda:N`` (``cuda`` is the current torch device when torch is
    in use, else 0)."""
    if device == "cuda":
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.current_device())
        return 0
    return int(device.split(":", 1)[1])


def current_stream(device: int) -> int:
    """The caller's current CUDA stream on ``device`` as an integer, so native work is ordered
    with the caller's own: torch's current stream when torch is in use, else CuPy's, else the
    legacy default stream (0). Neither framework is imported here."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return int(torch.cuda.current_stream(device).cuda_stream)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        with cupy.cuda.Device(device):
            return int(cupy.cuda.get_current_stream().ptr)
    return 0


def as_framework_array(array: Any) -> Any:
    """A native ``DeviceArray`` as a torch tensor (zero-copy, DLPack) when torch is installed;
    else the ``DeviceArray`` itself (``cupy.from_dlpack`` and ``numpy()`` work on it)."""
    try:
        import torch
    except ImportError:
        return array
    return torch.from_dlpack(array)


def build_info() -> dict[str, object]:
    """What the native core was built with, for ``himari info``."""
    return {
        "build": _core.build_summary(),
        "cuda_compiled": cuda_compiled(),
        "cuda_devices": int(_core.cuda_device_count()),
        "cuda_unavailable_reason": cuda_unavailable_reason(),
    }
