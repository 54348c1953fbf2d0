"""``himari train`` execution options: --decision-interval, --min-hold, --confidence and
--select-execution reach the run config, the choice reaches ``himari backtest``, bad values are
one-line usage errors, and a relaunch under torchrun keeps the flag."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from himari.cli import app

runner = CliRunner()
SMALL = ["--epochs", "1", "--batch-size", "128"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_help_lists_the_execution_options() -> None:
    out = invoke("train", "--help")
    assert out.exit_code == 0
    for option in ("--decision-interval", "--min-hold", "--confidence", "--select-execution"):
        assert option in out.output


def test_options_reach_the_run_config_and_backtest(small_prepared, tmp_path) -> None:
    run = tmp_path / "run"
    out = invoke("train", "baseline-mlp", "--data", str(small_prepared), *SMALL, "--decision-interval", "3",
                 "--min-hold", "6", "--confidence", "0.4", "--run-dir", str(run))
    assert out.exit_code == 0, out.output
    saved = yaml.safe_load((run / "config.yaml").read_text())["execution"]
    assert (saved["decision_interval"], saved["min_hold"], saved["confidence"], saved["select"]) == (3, 6, 0.4, False)

    chosen = tmp_path / "chosen"
    out = invoke("train", "baseline-mlp", "--data", str(small_prepared), *SMALL, "--select-execution",
                 "--set", "execution.grid_decision_interval=[1, 6]", "--run-dir", str(chosen))
    assert out.exit_code == 0, out.output
    assert yaml.safe_load((chosen / "config.yaml").read_text())["execution"]["select"] is True
    pick = json.loads((chosen / "execution.json").read_text())
    assert len(pick["grid"]) == 2 * 3 * 3
    assert f"decide every {pick['decision_interval']} bar" in out.output
    summary = json.loads((chosen / "summary.json").read_text())
    bt = json.loads(invoke("backtest", str(chosen), "--json", "--out", str(tmp_path / "bt.json")).output)
    assert bt["results"][0]["sharpe"] == summary["test"]["model"]["sharpe"]
    assert bt["results"][0]["n_trades"] == summary["test"]["model"]["n_trades"]


def test_bad_values_are_usage_errors(small_prepared, tmp_path) -> None:
    for option, value, text in (("--min-hold", "-1", "execution: min_hold"),
                                ("--decision-interval", "0", "execution: decision_interval"),
                                ("--confidence", "1", "execution: confidence")):
        out = invoke("train", "baseline-mlp", "--data", str(small_prepared), option, value,
                     "--run-dir", str(tmp_path / "r"))
        assert out.exit_code == 2 and text in out.output, out.output
        assert not (tmp_path / "r").exists()


def test_resume_refuses_execution_options(tmp_path) -> None:
    out = invoke("train", "--resume", str(tmp_path), "--select-execution")
    assert out.exit_code == 2 and "--select-execution" in out.output


def test_relaunch_keeps_the_flag(small_prepared, tmp_path, monkeypatch) -> None:
    from himari.training import distributed

    seen: list[list[str]] = []
    monkeypatch.setattr(distributed, "launch", lambda n, args: seen.append(args) or 0)
    out = invoke("train", "baseline-mlp", "--data", str(small_prepared), "--device", "cpu", "--select-execution",
                 "--min-hold", "6", "--devices", "2", "--run-dir", str(tmp_path / "r"))
    assert out.exit_code == 0, out.output
    args = seen[0]
    assert args.count("--select-execution") == 1 and "True" not in args and "False" not in args  # bare
    assert args[args.index("--min-hold") + 1] == "6"
