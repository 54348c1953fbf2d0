"""A model's settings given as options (``--dropout 0.2``) merge with the other options, before
``--set``: sources merge in order, the YAML file, the options, then ``--set`` (docs/training.md),
so ``--set baseline-mlp.dropout=0.3`` wins over ``--dropout 0.2`` in train, evaluate and sweep.
Nothing trains here: the command's hand-off is replaced by one that keeps what it was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from himari.cli import app

runner = CliRunner()
BOTH = ["--dropout", "0.2", "--set", "baseline-mlp.dropout=0.3"]


class _Trainer:
    """Stands in for the Trainer: keeps the run config it was given."""

    seen: ClassVar[list[Any]] = []

    def __init__(self, run: Any, plugins: Any = None, run_dir: Path | None = None) -> None:
        self.run, self.run_dir = run, run_dir
        _Trainer.seen.append(run)

    def fit(self) -> dict[str, Any]:
        return {}

    def release_data_parallel(self) -> None:
        pass


def test_train_set_wins_over_a_model_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import himari.training.trainer

    _Trainer.seen.clear()
    monkeypatch.setattr(himari.training.trainer, "Trainer", _Trainer)
    res = runner.invoke(app, ["train", "baseline-mlp", "--run-dir", str(tmp_path / "run"), *BOTH])
    assert res.exit_code == 0, res.output
    assert _Trainer.seen[0].to_dict()["plugins"]["baseline-mlp"]["dropout"] == 0.3
    # and the option alone still sets it
    res = runner.invoke(app, ["train", "baseline-mlp", "--run-dir", str(tmp_path / "run"), "--dropout", "0.2"])
    assert res.exit_code == 0 and _Trainer.seen[1].to_dict()["plugins"]["baseline-mlp"]["dropout"] == 0.2


def test_evaluate_set_wins_over_a_model_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import himari.evaluate.session
    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config

    seen: ClassVar[list[Any]] = []
    monkeypatch.setattr(himari.evaluate.session, "run_evaluation",
                        lambda config, *a: seen.append(config) or {"gates": []})
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--out", str(tmp_path / "ev"), *BOTH])
    assert res.exit_code == 0, res.output
    run = merge_run_config(plugins=get_plugins(), overrides={"model": "baseline-mlp"}, sets=list(seen[0].sets))
    assert run.to_dict()["plugins"]["baseline-mlp"]["dropout"] == 0.3


def test_sweep_set_wins_over_a_model_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import himari.sweep.runner
    from himari.plugin.manager import get_plugins

    seen: ClassVar[list[Any]] = []
    monkeypatch.setattr(himari.sweep.runner, "run_sweep", lambda settings, *a, **k: seen.append(settings) or {})
    res = runner.invoke(app, ["sweep", "baseline-mlp", "--grid", "lr=1e-3,3e-3", "--out", str(tmp_path / "sw"),
                              "--json", *BOTH])
    assert res.exit_code == 0, res.output
    run = seen[0].run_config(get_plugins(), {"lr": 1e-3}, 0, None)
    assert run.to_dict()["plugins"]["baseline-mlp"]["dropout"] == 0.3
