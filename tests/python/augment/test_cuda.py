"""The torch generators on a GPU: fitted and sampled on the device, the set comes back to the CPU
with finite values, and the reloaded generator (on the CPU) holds the same network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

@pytest.mark.parametrize("method", ["timegan", "tab-ddpm"])
def test_fit_and_sample_on_cuda(method: str, small_prepared: Path, tmp_path: Path, _generators: Any) -> None:
    from himari.augment.run import AugmentRequest, load_generator, make_set

    settings = {"timegan": {"window": 8, "hidden": 4, "layers": 2, "iterations": 4, "batch_size": 16},
                "tab-ddpm": {"timesteps": 10, "layers": [16], "dim_t": 8, "steps": 4, "batch_size": 64,
                             "crash_bars": 24, "n_quantiles": 50}}[method]
    meta = make_set(AugmentRequest(data=small_prepared, method=method, out=tmp_path / "s", windows=20,
                                   settings=settings, device="cuda"), plugins=_generators)
    assert meta["device"].startswith("cuda")
    windows = np.load(tmp_path / "s" / "windows.npy")
    assert windows.shape[0] == 20 and np.isfinite(windows).all()
    gen = load_generator(tmp_path / "s")
    assert next(gen.network.parameters()).device.type == "cpu"
