"""Training on the GPU: the scores a run reports are those its saved model gives in
``himari backtest`` (on the CPU, in float32)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_a_gpu_run_reports_the_actions_its_saved_model_takes(small_prepared: Path, tmp_path: Path) -> None:
    """Mixed-precision training steps, float32 scoring: the test split's action shares in the
    summary equal those of the reloaded model acting on the CPU to within one row in 1,000
    (scored under bf16 autocast they differed by 0.44%). The model must trade, or the shares
    agree whatever the precision."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import tiny_run  # type: ignore[import-not-found]

    from himari.data import PreparedData
    from himari.evaluation.policy import action_distribution
    from himari.training.assemble import load_trained

    summary = tiny_run("baseline-mlp", small_prepared, tmp_path / "run",
                       sets=["train.device=cuda", "train.amp=true", "train.max_steps_per_epoch=40"])
    assert summary["device"].startswith("cuda")
    want = summary["test"]["model"]["actions"]
    assert max(want.values()) < 0.95, f"a static model proves nothing here: {want}"
    data = PreparedData(small_prepared)
    ranges = data.split("test")
    got = action_distribution(load_trained(tmp_path / "run").actions(data, ranges), ranges)
    assert max(abs(got[k] - want[k]) for k in want) <= 1e-3, (got, want)
