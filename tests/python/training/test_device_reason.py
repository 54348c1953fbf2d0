"""`--device cuda` on a machine where training cannot use CUDA names what is missing: torch's side
(a CPU build, or no GPU seen) and the native core's (a CPU build, no driver, no GPU)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="training needs torch")

import himari.engine as engine  # noqa: E402
from himari.errors import CudaUnavailableError  # noqa: E402
from himari.training.device import resolve_device  # noqa: E402


def test_cuda_refusal_names_torch_and_the_core() -> None:
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    with pytest.raises(CudaUnavailableError) as info:
        resolve_device("cuda")
    message = str(info.value)
    if torch.version.cuda is None:
        assert f"torch {torch.__version__} is a CPU build" in message
    else:
        assert f"(CUDA {torch.version.cuda}) sees no GPU" in message
    reason = engine.cuda_unavailable_reason()
    if reason:
        assert f"himari's core: {reason}" in message
    assert message.endswith("use --device cpu or auto")
