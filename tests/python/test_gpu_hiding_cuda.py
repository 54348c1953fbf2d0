"""Hiding the GPU from one test leaves it to the GPU tests after it in the same process: torch
caches its device count on the first call after CUDA starts, and a count taken while
CUDA_VISIBLE_DEVICES is empty (a seed calls torch's own function, not the stand-in) would stay 0
for the rest of the process."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_hiding_the_gpu_after_cuda_started_keeps_the_true_device_count(gpu_hider: Any) -> None:
    torch.cuda.init()
    true_count = torch._C._cuda_getDeviceCount()
    assert hasattr(torch.cuda, "_cached_device_count")
    torch.cuda._cached_device_count = None  # as if no count had been taken since CUDA started
    torchs_own_count = torch.cuda.device_count  # the function torch's seeding calls
    with pytest.MonkeyPatch.context() as mp:
        gpu_hider(mp)
        assert torch.cuda.device_count() == 0  # the stand-in, for the hidden test
        torchs_own_count()
        torch.manual_seed(0)
    assert torch.cuda.is_available() and torch.cuda.device_count() == true_count
