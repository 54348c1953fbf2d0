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


@pytest.mark.parametrize("d_threshold", [0.0, 1e9])  # the discriminator steps every iteration / never
def test_timegan_replayed_as_cuda_graphs_fits_what_the_eager_fit_does(d_threshold: float, small_prepared: Path,
                                                                      tmp_path: Path, _generators: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Six iterations per phase: two eager, four replayed. A replay that kept its first batch, skipped
    an optimiser step, or stepped the discriminator regardless of its loss ends elsewhere."""
    from himari.augment.run import AugmentRequest, load_generator, make_set

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    nets = {}
    for graphs in (False, True):
        settings = {"window": 8, "hidden": 8, "layers": 2, "iterations": 6, "batch_size": 16,
                    "d_threshold": d_threshold, "cuda_graphs": graphs}
        out = tmp_path / f"s-{graphs}"
        make_set(AugmentRequest(data=small_prepared, method="timegan", out=out, windows=20, settings=settings,
                                device="cuda"), plugins=_generators)
        nets[graphs] = load_generator(out).network.state_dict()
    for name, eager in nets[False].items():
        torch.testing.assert_close(nets[True][name], eager, rtol=1e-4, atol=1e-5, msg=name)


def test_tab_ddpm_replayed_as_a_cuda_graph_fits_what_the_eager_fit_does(small_prepared: Path, tmp_path: Path,
                                                                       _generators: Any) -> None:
    """Eight steps, two eager and six replayed, each on a new batch, new timesteps and new noise
    (drawn outside the graph): a replay that kept the recorded draws or skipped the step ends
    elsewhere."""
    from himari.augment.run import AugmentRequest, load_generator, make_set

    nets, logs = {}, {}
    for graphs in (False, True):
        settings = {"timesteps": 10, "layers": [16], "dim_t": 8, "steps": 8, "batch_size": 64, "crash_bars": 24,
                    "n_quantiles": 50, "cuda_graphs": graphs}
        out = tmp_path / f"s-{graphs}"
        meta = make_set(AugmentRequest(data=small_prepared, method="tab-ddpm", out=out, rows=20, settings=settings,
                                       device="cuda"), plugins=_generators)
        nets[graphs], logs[graphs] = load_generator(out).network.state_dict(), meta["fit_log"]
    assert logs[True] == pytest.approx(logs[False], rel=1e-4)
    for name, eager in nets[False].items():
        torch.testing.assert_close(nets[True][name], eager, rtol=1e-4, atol=1e-5, msg=name)
