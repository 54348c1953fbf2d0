"""Fixtures of the CLI tests: a trained run (shared) and the shared BTC bars."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    """baseline-mlp trained for 2 tiny epochs through the CLI."""
    from typer.testing import CliRunner

    from himari.cli import app

    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    result = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--epochs", "2",
                                      "--batch-size", "128", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def shared_btc() -> Path:
    """The shared BTC/USDT 2023 5-minute bars; tests using it skip when they are absent."""
    path = SHARED_DATA / "btcusdt_5m.csv.gz"
    if not path.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return path
