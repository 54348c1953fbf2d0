"""The package's front door: import cost, the demo, `himari info`, `--version`, python -m."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import himari
from himari.cli import app

runner = CliRunner()


def test_import_himari_is_light() -> None:
    """`import himari` (and the CLI app) must not load torch or the native module."""
    code = "import sys, himari, himari.cli; print('torch' in sys.modules, 'himari._core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_version_flag() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"himari {himari.__version__}"


def test_info_json_reports_build() -> None:
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["version"] == himari.__version__
    assert isinstance(data["cuda_compiled"], bool)
    assert data["cuda_available"] in (True, False)


def test_demo_runs_and_reports_baselines() -> None:
    result = runner.invoke(app, ["demo", "--bars", "3000", "--random-strategies", "8"])
    assert result.exit_code == 0, result.output
    for text in ("buy-and-hold", "never-trade", "random x8", "steps/s", "EKF"):
        assert text in result.output


def test_demo_numbers_are_consistent() -> None:
    from himari.demo import run_demo

    res = run_demo(bars=3000, seed=1, random_strategies=4, n_envs=4)
    rows = {str(r["strategy"]): r for r in res.table}
    assert rows["never-trade"]["total_return"] == 0.0
    assert rows["never-trade"]["n_trades"] == 0.0
    assert rows["buy-and-hold"]["n_trades"] == 1.0
    assert rows["buy-and-hold"]["exposure"] > 0.99
    assert res.env_steps_per_second > 0 and res.ekf_samples_per_second > 0


def test_python_dash_m() -> None:
    out = subprocess.run([sys.executable, "-m", "himari", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"himari {himari.__version__}"
