"""``--resume`` continues a run, an evaluation or a sweep with its saved settings: every option
given that would change them is refused by name (exit 2), whether or not it has a default, and an
option the command does not know is named as such (the parser would take its value for MODEL).
The check comes before the directory is read, so no training is needed here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app

runner = CliRunner()


@pytest.mark.parametrize("args, named", [
    (["--fee", "0.5", "--lr", "5", "--batch-size", "7"], "drop --batch-size, --lr, --fee"),
    (["--method", "curriculum", "--preprocess", "ekf", "--embargo", "100"], "drop --embargo, --preprocess, --method"),
    (["--walk-forward", "3", "--seeds", "4"], "drop --walk-forward, --seeds"),
    (["--resamples", "500", "--fold-mode", "rolling"], "drop --fold-mode, --resamples"),
    (["--validation-fraction", "0.5", "--slippage", "0"], "drop --validation-fraction, --slippage"),
    (["--walk-forward", "6"], "drop --walk-forward"),  # the default's value, given: refused too
])
def test_evaluate_resume_refuses_every_setting(tmp_path: Path, args: list[str], named: str) -> None:
    res = runner.invoke(app, ["evaluate", "--resume", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert "--resume continues the evaluation with its saved settings" in res.output and named in res.output


def test_evaluate_resume_keeps_its_output_options(tmp_path: Path) -> None:
    res = runner.invoke(app, ["evaluate", "--resume", str(tmp_path), "--strict", "--json"])
    assert res.exit_code == 2 and "not a himari evaluation directory" in res.output and "drop" not in res.output


@pytest.mark.parametrize("command, what", [(["evaluate"], "evaluation"), (["train"], "run"), (["sweep"], "sweep")])
@pytest.mark.parametrize("bogus", [["--bogus-option", "3.5"], ["--bogus-option=3.5"], ["--bogus-option"]])
def test_an_unknown_option_with_resume_is_named(tmp_path: Path, command: list[str], what: str,
                                                bogus: list[str]) -> None:
    res = runner.invoke(app, [*command, "--resume", str(tmp_path), *bogus])
    assert res.exit_code == 2, res.output
    assert f"--bogus-option: no such option with --resume, which continues the {what}" in res.output
    assert "MODEL" not in res.output


def test_sweep_resume_names_a_negative_flag_as_given(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sweep", "--resume", str(tmp_path), "--no-asha", "--top", "1"])
    assert res.exit_code == 2 and "drop --no-asha, --top" in res.output
