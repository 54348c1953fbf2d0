"""A trial the scheduler (ASHA) stopped: its run is ended from its last checkpoint into an
ordinary finished run and scored; one stopped at its last epoch counts as finished. No Ray
here: the stop is simulated by interrupting the Trainer right after an epoch's checkpoints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from rich.console import Console

from himari.plugin.manager import get_plugins
from himari.sweep.trial import epoch_metrics, score_trial
from himari.training import rundir
from himari.training.config import merge_run_config
from himari.training.trainer import Trainer


class _Stop(Exception):
    pass


def _stopped_run(data: Path, run_dir: Path, after_epoch: int) -> None:
    """A 2-epoch run stopped right after epoch ``after_epoch`` (0-based) wrote its checkpoints,
    where a trial's report to Tune is, and where the scheduler stops it."""

    class Stopped(Trainer):
        def end_epoch(self, epoch: int) -> None:
            super().end_epoch(epoch)
            if epoch == after_epoch:
                raise _Stop

    run = merge_run_config(plugins=get_plugins(), overrides={"model": "baseline-mlp", "data": str(data)},
                           sets=["train.epochs=2", "train.batch_size=128", "train.max_steps_per_epoch=4",
                                 "train.progress=false"])
    with pytest.raises(_Stop):
        Stopped(run, plugins=get_plugins(), run_dir=run_dir, console=Console(file=io.StringIO())).fit()
    assert (run_dir / rundir.LAST).exists() and not (run_dir / rundir.SUMMARY).exists()


def test_a_trial_stopped_after_its_first_epoch_is_ended_and_scored(small_prepared: Path, tmp_path: Path) -> None:
    _stopped_run(small_prepared, tmp_path / "run", after_epoch=0)
    score = score_trial(str(tmp_path / "run"), str(tmp_path / "scores" / "run.json"), stopped=True)
    summary = json.loads((tmp_path / "run" / rundir.SUMMARY).read_text())
    assert summary["epochs_run"] == 1 and summary["stopped_early"] is True
    assert score["stopped_early"] is True and score["epochs_run"] == 1 and score["epochs"] == 2
    assert json.loads((tmp_path / "scores" / "run.json").read_text()) == json.loads(json.dumps(score))
    assert len(score["actions"]) == sum(b - a for a, b in score["ranges"])


def test_a_trial_stopped_at_its_last_epoch_ran_its_course(small_prepared: Path, tmp_path: Path) -> None:
    _stopped_run(small_prepared, tmp_path / "run", after_epoch=1)
    score = score_trial(str(tmp_path / "run"), str(tmp_path / "s.json"), stopped=True)
    assert score["stopped_early"] is False and score["epochs_run"] == 2


def test_each_epoch_reports_its_validation_numbers() -> None:
    entry = {"epoch": 3, "sharpe": 1.5, "total_return": 0.02, "max_drawdown": 0.01, "n_trades": 7,
             "train_loss": 0.9, "validation_loss": float("nan")}
    assert epoch_metrics(entry) == {"epoch": 3, "validation_sharpe": 1.5, "validation_total_return": 0.02,
                                    "validation_max_drawdown": 0.01, "validation_trades": 7, "train_loss": 0.9,
                                    "validation_loss": None}
