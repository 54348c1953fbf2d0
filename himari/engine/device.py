"""Device names and CUDA availability."""

from __future__ import annotations

from himari.engine._native import _core


def cuda_compiled() -> bool:
    """True when this build contains the CUDA backend."""
    return bool(_core.cuda_compiled())


def cuda_available() -> bool:
    """True when CUDA is compiled in and at least one device is visible."""
    return cuda_compiled() and _core.cuda_device_count() > 0


def check_device(device: str) -> str:
    """Validate a device name; raise CudaUnavailableError where this build cannot use it.

    In this release every computation runs on the CPU; asking for ``cuda`` fails loudly rather
    than silently running on the CPU.
    """
    from himari.errors import InvalidArgumentError

    if not isinstance(device, str):
        raise InvalidArgumentError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device == "cpu":
        return device
    # Parses and raises CudaUnavailableError with the reason (no CUDA build, no device, no kernel).
    _core.require_device(device)
    return device  # pragma: no cover - reached once CUDA kernels exist


def build_info() -> dict[str, object]:
    """What the native core was built with, for ``himari info``."""
    return {
        "build": _core.build_summary(),
        "cuda_compiled": cuda_compiled(),
        "cuda_devices": int(_core.cuda_device_count()),
    }
