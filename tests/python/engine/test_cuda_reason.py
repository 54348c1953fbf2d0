"""Where CUDA cannot be used, the user is told why (a CPU build, no driver, no GPU), by
``cuda_unavailable_reason()``, ``himari info``, and every refusal of ``--device cuda``."""

from __future__ import annotations

import re

import pytest

import himari.engine as engine
from himari.engine.device import check_device
from himari.errors import CudaUnavailableError


def test_no_usable_cuda_comes_with_a_reason_the_refusal_repeats() -> None:
    if engine.cuda_available():
        pytest.skip("a CUDA device is visible on this machine")
    reason = engine.cuda_unavailable_reason()
    assert reason
    if engine.cuda_compiled():  # the CUDA build on a machine without a usable GPU
        assert re.search(r"driver|GPU|device", reason), reason
        assert "no CUDA support" not in reason
    else:
        assert "no CUDA support" in reason and "CUDA wheel" in reason
    for device in ("cuda", "cuda:0"):
        with pytest.raises(CudaUnavailableError) as info:
            check_device(device)
        assert reason in str(info.value)


@pytest.mark.cuda
def test_a_visible_device_has_no_reason() -> None:
    if not engine.cuda_available():
        pytest.skip("no CUDA device")
    assert engine.cuda_unavailable_reason() is None
    assert check_device("cuda") == "cuda:0"


def test_build_summary_names_the_cuda_release_and_architectures() -> None:
    build = engine.build_info()["build"]
    if engine.cuda_compiled():
        assert re.search(r"CUDA \d+\.\d+ \(architectures [0-9a-z\- ]+\) compiled", build), build
    else:
        assert build.endswith("CUDA not compiled"), build
    assert engine.build_info()["cuda_unavailable_reason"] == engine.cuda_unavailable_reason()
