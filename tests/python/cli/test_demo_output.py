"""``himari demo`` prints returns, drawdowns and exposure in percent and Sharpe as a number (like
train and backtest), and explains a positive Sharpe beside a negative return."""

from __future__ import annotations

from typer.testing import CliRunner

from himari.cli import app


def _rows(output: str) -> dict[str, list[str]]:
    """Table rows by strategy name: the cells after the name."""
    out = {}
    for line in output.splitlines():
        for name in ("buy-and-hold", "never-trade", "random x8 (median)", "random x8 (best)"):
            if line.startswith(name + " "):
                out[name] = line[len(name):].split()
    return out


def test_demo_formats_metrics_as_percentages(monkeypatch) -> None:
    import himari.demo
    from himari.demo import DemoResult

    def metrics(total: float, sharpe: float, mdd: float, trades: float, exposure: float) -> dict[str, float]:
        return {"total_return": total, "sharpe": sharpe, "max_drawdown": mdd, "n_trades": trades,
                "exposure": exposure, "annual_return": 0.0, "sortino": 0.0}

    fixed = DemoResult(bars=3000, random_strategies=8, backtest_seconds=0.001, env_envs=64,
                       env_steps_per_second=2e7, ekf_samples_per_second=1e7, ekf_final_volatility=0.00105,
                       table=[{"strategy": "buy-and-hold", **metrics(-0.0390, 0.0206, 0.2595, 1, 1.0)},
                              {"strategy": "never-trade", **metrics(0.0, 0.0, 0.0, 0, 0.0)},
                              {"strategy": "random x8 (median)", **metrics(-0.78291, -16.304, 0.78491, 1000.0,
                                                                           0.50224)},
                              {"strategy": "random x8 (best)", **metrics(0.12345, 1.5, 0.0612, 1007, 0.5055)}])
    monkeypatch.setattr(himari.demo, "run_demo", lambda **kw: fixed)
    out = CliRunner().invoke(app, ["demo", "--bars", "3000", "--random-strategies", "8"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    rows = _rows(out.output)
    assert rows["buy-and-hold"] == ["+0.02", "-3.90%", "25.95%", "1", "100.0%"]
    assert rows["never-trade"] == ["+0.00", "+0.00%", "0.00%", "0", "0.0%"]
    assert rows["random x8 (median)"] == ["-16.30", "-78.29%", "78.49%", "1,000", "50.2%"]
    assert rows["random x8 (best)"] == ["+1.50", "+12.35%", "6.12%", "1,007", "50.5%"]
    header = next(line for line in out.output.splitlines() if line.startswith("strategy"))
    assert header.split() == ["strategy", "Sharpe", "return", "max", "DD", "trades", "exposure"]
    # only buy-and-hold has a positive Sharpe with a negative return: the note names it alone
    note = next(line for line in out.output.splitlines() if "volatility drag" in line)
    assert note.startswith("buy-and-hold: a positive Sharpe beside a negative return")
    assert "random" not in note and "arithmetic mean of the per-bar returns" in note
    assert "(last per-bar volatility 0.105%)" in out.output


def test_demo_table_matches_run_demo() -> None:
    from himari.demo import run_demo

    res = run_demo(bars=3000, seed=1, random_strategies=8)
    out = CliRunner().invoke(app, ["demo", "--bars", "3000", "--seed", "1", "--random-strategies", "8"],
                             env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    rows = _rows(out.output)
    assert len(rows) == 4
    for r in res.table:
        cells = rows[str(r["strategy"])]
        assert cells == [f"{float(r['sharpe']):+.2f}", f"{100 * float(r['total_return']):+.2f}%",
                         f"{100 * float(r['max_drawdown']):.2f}%", f"{float(r['n_trades']):,.0f}",
                         f"{100 * float(r['exposure']):.1f}%"]
    drag = [str(r["strategy"]) for r in res.table if r["sharpe"] > 0 and r["total_return"] < 0]
    assert ("volatility drag" in out.output) == bool(drag)


def test_demo_refuses_a_negative_seed_and_no_random_policies_by_option() -> None:
    """Out-of-range options stop at the option (exit 2, naming it) before any work, instead of
    NumPy's errors from deep inside (a negative seed, an arg-max over zero random policies)."""
    for option, value in (("--seed", "-1"), ("--random-strategies", "0")):
        result = CliRunner().invoke(app, ["demo", "--bars", "3000", option, value])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}'" in result.output and "ValueError" not in result.output
