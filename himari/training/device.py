"""Picking the torch device a run trains on, and the one it is scored on."""

from __future__ import annotations

import os
from pathlib import Path

from himari.errors import CudaUnavailableError

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def is_device_name(name: str) -> bool:
    """Whether ``name`` is one of ``DEVICE_NAMES`` (checked before torch is imported, so a typo
    fails as a setting, not as torch's error about device types it knows)."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda[:N]`` must exist."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CudaUnavailableError(f"device {name!r}: {why_no_cuda()}; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise CudaUnavailableError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    return name


def scoring_device(run_dir: str | os.PathLike[str]) -> str:
    """Where to act when scoring a finished run: the device it trained on (its summary's
    ``device``) when torch sees that device here, else the CPU.

    A large model (FLAG-TRADER's language model, a full-size CGDT) is slow to act bar by bar on
    the CPU, and on its own GPU its decisions match the run's end-of-training scores, which were
    made there. A run trained on a GPU and scored on a machine without one acts on the CPU, whose
    logits can differ in the last bits, so a decision on the edge of a tie can come out the other
    way."""
    import json

    import torch

    from himari.training.rundir import SUMMARY

    try:
        trained = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8")).get("device", "cpu")
        device = torch.device(trained) if isinstance(trained, str) else None
    except (OSError, ValueError, AttributeError, RuntimeError):  # no summary, a damaged one, no device name
        return "cpu"
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return "cpu"
    return trained if (device.index or 0) < torch.cuda.device_count() else "cuda"


def why_no_cuda() -> str:
    """What is missing for CUDA training, from both sides a run needs: torch (a CPU build, or a
    CUDA build that sees no GPU) and himari's native core (a CPU build, no driver, no GPU)."""
    import torch

    from himari.engine import cuda_unavailable_reason

    if torch.version.cuda is None:
        parts = [f"torch {torch.__version__} is a CPU build (install a CUDA build of torch)"]
    else:
        parts = [f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"]
    native = cuda_unavailable_reason()
    if native:
        parts.append(f"himari's core: {native}")
    return "; ".join(parts)


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
