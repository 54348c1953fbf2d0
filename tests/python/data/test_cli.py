"""``himari data`` commands through Typer's runner: output files, exit codes, --verbose."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from himari.cli import app, exit_code_for
from himari.errors import CudaError, DataError

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_help_and_no_args():
    assert _run("--help").exit_code == 0
    res = _run("data")
    assert "import" in res.output and "prepare" in res.output and "synth" in res.output


def test_synth_import_prepare_info_report(tmp_path):
    synth = tmp_path / "synth.parquet"
    res = _run("data", "synth", "--bars", "3000", "--seed", "1", "--out", str(synth))
    assert res.exit_code == 0, res.output
    assert synth.exists() and (tmp_path / "synth.report.json").exists()
    csv = tmp_path / "s.csv"
    import pandas as pd

    pd.read_parquet(synth).drop(columns=["symbol", "filled"]).to_csv(csv, index=False)
    bars = tmp_path / "bars.parquet"
    res = _run("data", "import", str(csv), "--out", str(bars))
    assert res.exit_code == 0, res.output
    assert "Data report" in res.output and bars.exists()
    report = json.loads((tmp_path / "bars.report.json").read_text())
    assert report["symbols"][0]["rows"] == 3000
    out = tmp_path / "prep"
    res = _run("data", "prepare", str(bars), "--out", str(out), "--labels", "triple-barrier", "--horizon", "10",
               "--folds", "2", "--split-dates", "2023-01-08,2023-01-10")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["labeler"]["name"] == "triple-barrier" and meta["labeler"]["params"]["horizon"] == 10
    assert meta["split_rule"] == {"dates": ["2023-01-08", "2023-01-10"]} and len(meta["folds"]) == 2
    res = _run("data", "info", str(out))
    assert res.exit_code == 0 and "SELL" in res.output
    assert json.loads(_run("data", "info", str(out), "--json").output)["feature_dim"] == 60
    res = _run("data", "report", str(bars), "--json")
    assert res.exit_code == 0 and json.loads(res.output)["interval"] == "5m"


def test_prepare_without_bars_uses_the_synthetic_market(tmp_path):
    out = tmp_path / "p"
    res = _run("data", "prepare", "--out", str(out), "--synth-bars", "2500", "--seed", "3")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_samples"] == 2500 and meta["sources"][0]["format"] == "synthetic"


def test_bad_input_exit_code_2_one_line_and_nothing_written(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2023-01-01T00:00:00Z,1,2,0.5,1,1\n2023-01-01T00:05:00Z,1,0.1,0.5,1,1\n")
    out = tmp_path / "o.parquet"
    res = _run("data", "import", str(bad), "--out", str(out))
    assert res.exit_code == 2
    assert "error:" in res.output and "bad.csv: line 3, column 'high'" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()
    res = _run("--verbose", "data", "import", str(bad), "--out", str(out))
    assert res.exit_code == 2 and "Traceback" in res.output
    res = _run("data", "prepare", str(bad), "--out", str(tmp_path / "p"), "--labels", "forward-return", "--z", "1")
    assert res.exit_code == 2 and not (tmp_path / "p").exists()
    res = _run("data", "import", str(bad), "--out", str(out), "--fill-gaps", "sideways")
    assert res.exit_code == 2  # usage error from Typer


BAD_FILES = {
    "nan.csv": "timestamp,open,high,low,close,volume\n2023-01-01T00:00:00Z,1,2,0.5,nan,1\n",
    "missing.csv": "timestamp,open,high,low,close\n2023-01-01T00:00:00Z,1,2,0.5,1\n",
    "empty.csv": "",
    "dup.csv": ("timestamp,open,high,low,close,volume\n2023-01-01T00:00:00Z,1,2,0.5,1,1\n"
                "2023-01-01T00:05:00Z,1,2,0.5,1,1\n2023-01-01T00:00:00Z,1,2,0.5,1.5,1\n"),
    "mixed.csv": ("timestamp,open,high,low,close,volume\n2023-01-01T00:00:00Z,1,2,0.5,1,1\n"
                  "2023-01-01T00:05:00Z,1,2,0.5,1,1\n2023-01-01T00:10:00Z,1,2,0.5,1,1\n2023-01-01T00:12:00Z,1,2,0.5,1,1\n"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_input_exits_2_naming_the_file(tmp_path, name):
    p = tmp_path / name
    p.write_text(BAD_FILES[name])
    res = _run("data", "import", str(p), "--out", str(tmp_path / "o.parquet"))
    assert res.exit_code == 2, res.output
    assert name in res.output and "error:" in res.output
    assert not (tmp_path / "o.parquet").exists()
    truncated = tmp_path / "t.csv.gz"
    import gzip

    truncated.write_bytes(gzip.compress(b"timestamp,open,high,low,close,volume\n" * 2000)[:200])
    assert _run("data", "import", str(truncated), "--out", str(tmp_path / "o.parquet")).exit_code == 2


def test_no_torch_at_import_time():
    import subprocess
    import sys

    code = ("import sys, himari.data.datasets, himari.data.pipeline, himari.data.synthetic, himari.cli.data; "
            "assert 'torch' not in sys.modules, 'torch imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wrong_labeler_parameter_is_usage_error(tmp_path):
    res = _run("data", "prepare", "--out", str(tmp_path / "p"), "--synth-bars", "2000", "--labels", "triple-barrier", "--threshold", "0.1")
    assert res.exit_code == 2 and "unknown parameter" in res.output


def test_exit_code_mapping():
    assert exit_code_for(DataError("x")) == 2
    assert exit_code_for(CudaError("x")) == 1
    assert exit_code_for(RuntimeError("x")) == 1


def test_main_runs_the_app(monkeypatch, capsys):
    from himari.cli import main

    monkeypatch.setattr("sys.argv", ["himari", "data", "info", "/nonexistent"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2


@pytest.mark.parametrize("args", [["backtest", "--help"], ["plugins", "list", "--json"]])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(args):
    """`himari plugins list --json | head -1`: the output's reader is gone before the command
    writes, which is no error of the user's; an output longer than the stream's buffer (the JSON
    list) printed "error: BrokenPipeError"."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "himari", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    proc.stdout.close()  # no reader left: the first write fails with EPIPE, whatever its size
    _, err = proc.communicate(timeout=120)
    assert b"error" not in err.lower() and b"Traceback" not in err, err.decode()
    assert proc.returncode in (0, 1, 141, -13), proc.returncode
