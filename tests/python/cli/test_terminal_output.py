"""Training and backtest output in an 80-column console that is not a terminal (CliRunner, a
log file): epoch lines and the summary table fit, and no strategy name or run directory is
ever split across lines; ``himari backtest`` without --data says it scores the synthetic market."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.evaluation.report import epoch_lines, metrics_table, print_table

M = {"sharpe": 1.234, "total_return": 0.04567, "max_drawdown": 0.1234, "n_trades": 1234.0, "exposure": 0.5,
     "actions": {"SELL": 0.2, "HOLD": 0.5, "BUY": 0.3}, "collapsed": False}


def _console(width: int):
    from rich.console import Console

    return Console(file=io.StringIO(), width=width)


def _render(rows, width: int, title: str = "t") -> list[str]:
    console = _console(width)
    print_table(console, metrics_table(rows, title=title))
    return console.file.getvalue().splitlines()


def test_metrics_table_fits_80_columns_with_whole_names() -> None:
    rows = [("flag-trader", "validation", M, True), ("flag-trader", "test", {**M, "collapsed": True}, True),
            ("buy-and-hold", "test", {**M, "sharpe": -0.5, "total_return": -0.125}, False)]
    lines = _render(rows, 80)
    assert max(len(line) for line in lines) <= 80
    val = next(line for line in lines if line.startswith("flag-trader") and "validation" in line)
    # hand-formatted: Sharpe +1.23, return +4.57%, max DD 12.34%, 1,234 trades, exposure 50.0%, 20/50/30
    assert val.split() == ["flag-trader", "validation", "+1.23", "+4.57%", "12.34%", "1,234", "50.0%", "20/50/30"]
    bh = next(line for line in lines if line.startswith("buy-and-hold"))
    assert bh.split()[:4] == ["buy-and-hold", "test", "-0.50", "-12.50%"]
    assert "collapsed" in "\n".join(lines)
    header = next(line for line in lines if line.startswith("strategy"))
    assert header.split() == ["strategy", "split", "Sharpe", "return", "max", "DD", "trades", "exposure", "S/H/B", "%"]


def test_one_split_leaves_the_split_column_out() -> None:
    lines = _render([("buy-and-hold", "test", M, False), ("random", "test", M, False)], 80)
    header = next(line for line in lines if line.startswith("strategy"))
    assert "split" not in header and not any(" test " in line for line in lines)


def test_a_name_wider_than_the_console_is_never_cut_or_split() -> None:
    name = "runs/flag-trader/" + "x" * 70
    lines = _render([(name, "test", M, True), ("buy-and-hold", "test", M, False)], 80)
    row = next(line for line in lines if line.startswith(name))
    assert row.split()[1:] == ["+1.23", "+4.57%", "12.34%", "1,234", "50.0%", "20/50/30"]
    bh = next(line for line in lines if line.startswith("buy-and-hold"))
    assert len(bh.rstrip()) == len(row.rstrip())  # the columns stay aligned past the edge


def test_epoch_lines_fit_80_columns_and_stay_one_line_when_wide() -> None:
    val = {**M, "sharpe": -12.345, "total_return": -0.99456, "max_drawdown": 0.99456, "n_trades": 12345}
    narrow = epoch_lines(3, 10, 1.07123, 1.08034, val, True, 80)
    assert len(narrow) == 2 and all(len(line.replace("[green]", "").replace("[/]", "")) <= 80 for line in narrow)
    assert narrow[0] == "epoch 3/10  loss 1.0712  val_loss 1.0803  [green]best[/]"
    assert narrow[1] == "  val sharpe -12.35  return -99.46%  mdd 99.5%  trades 12,345  S/H/B 20/50/30"
    wide = epoch_lines(3, 10, 1.07123, None, val, False, 200)
    assert wide == ["epoch 3/10  loss 1.0712  val sharpe -12.35  return -99.46%  mdd 99.5%  trades 12,345  "
                    "S/H/B 20/50/30"]


@pytest.fixture(scope="module")
def run_80(small_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """baseline-mlp trained through the CLI in an 80-column non-terminal console, into a run
    directory named like a flag-trader run."""
    run_dir = tmp_path_factory.mktemp("long") / "runs" / "flag-trader" / "20250101-120000"
    out = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--epochs", "2",
                                   "--batch-size", "128", "--run-dir", str(run_dir)], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    return run_dir, out.output


def test_training_output_at_80_columns(run_80) -> None:
    run_dir, text = run_80
    lines = text.splitlines()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert any(line.startswith("training baseline-mlp") and line.endswith(f"run dir {run_dir}") for line in lines)
    assert f"run saved in {run_dir}" in lines
    for h in summary["history"]:
        i = next(i for i, line in enumerate(lines) if line.startswith(f"epoch {h['epoch']}/2  "))
        assert lines[i + 1] == (f"  val sharpe {h['sharpe']:+.2f}  return {100 * h['total_return']:+.2f}%  "
                                f"mdd {100 * h['max_drawdown']:.1f}%  trades {h['n_trades']:,.0f}  S/H/B "
                                + "/".join(f"{100 * v:.0f}" for v in h["actions"].values()))
        assert len(lines[i]) <= 80 and len(lines[i + 1]) <= 80
    table = [line for line in lines if line.startswith(("baseline-mlp ", "buy-and-hold ", "never-trade "))]
    assert len(table) == 4 and all(len(line) <= 80 for line in table)
    test_row = next(line for line in table if line.startswith("baseline-mlp") and " test " in line)
    assert test_row.split()[2] == f"{summary['test']['model']['sharpe']:+.2f}"


def test_backtest_leaderboard_never_splits_a_run_directory(run_80, tmp_path) -> None:
    run_dir, _ = run_80
    out = CliRunner().invoke(app, ["backtest", str(run_dir), "buy-and-hold", "never-trade", "--out",
                                   str(tmp_path / "bt.json")], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    results = {r["name"]: r for r in json.loads((tmp_path / "bt.json").read_text())["results"]}
    for name, r in results.items():
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.split()[1:3] == [f"{r['sharpe']:+.2f}", f"{100 * r['total_return']:+.2f}%"]
    assert f"written {tmp_path / 'bt.json'}" in lines


def test_backtest_without_data_says_it_scores_the_synthetic_market(tmp_path, monkeypatch) -> None:
    import himari.data.pipeline as pipeline

    real = pipeline.default_prepared_dataset
    monkeypatch.setattr(pipeline, "default_prepared_dataset",
                        lambda **kw: real(bars=8000, seed=3, cache=tmp_path / "cache"))
    out = CliRunner().invoke(app, ["backtest", "buy-and-hold", "--out", str(tmp_path / "bt.json")],
                             env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    assert "no --data: scoring on the built-in synthetic market (8,000 bars, seed 3)" in out.output
    with_data = CliRunner().invoke(app, ["backtest", "buy-and-hold", "--out", str(tmp_path / "bt2.json"),
                                         "--data", str(json.loads((tmp_path / "bt.json").read_text())["data"])],
                                   env={"COLUMNS": "80"})
    assert with_data.exit_code == 0 and "no --data" not in with_data.output


def test_volatility_drag_note_names_only_positive_sharpe_with_a_loss() -> None:
    from himari.evaluation.report import volatility_drag_note

    # two bars of +20% and -18%: arithmetic mean +1% (Sharpe > 0), compounded 1.2 * 0.82 - 1 = -1.6%
    drag = {"sharpe": 0.5, "total_return": 1.2 * 0.82 - 1}
    assert volatility_drag_note([("gain", {"sharpe": 1.0, "total_return": 0.1}),
                                 ("loss", {"sharpe": -1.0, "total_return": -0.1})]) is None
    note = volatility_drag_note([("a", drag), ("gain", {"sharpe": 1.0, "total_return": 0.1}), ("b", drag)])
    assert note is not None and note.startswith("a, b: a positive Sharpe beside a negative return")
