"""Picking the torch device a run trains on."""

from __future__ import annotations

from himari.errors import CudaUnavailableError


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda[:N]`` must exist."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CudaUnavailableError(f"device {name!r}: torch sees no CUDA device "
                                       f"(torch {torch.__version__}); use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise CudaUnavailableError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    return name


def to_device(batch: object, device: str) -> object:
    """Move every tensor of a (nested) batch to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
