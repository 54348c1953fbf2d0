"""Data commands never destroy data: an output that is (or contains) an input, a directory of the
user's, the working directory or a path under a file is refused with exit code 2 before anything
is written; an earlier prepared directory is replaced only with --force."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.data.features import WARMUP
from himari.data.pipeline import PrepareConfig, default_prepared_dataset, prepare
from himari.data.synthetic import SynthConfig, synthesize
from himari.errors import DataError

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones included) with a hash of each file's bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _bars_csv(path: Path, bars: int = WARMUP + 600, seed: int = 1) -> Path:
    """A CSV that prepare accepts (old code would have prepared it, deleting what was in --out)."""
    frame = synthesize(SynthConfig(bars=bars, seed=seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(columns=["symbol", "filled"]).to_csv(path, index=False)
    return path


def _refused(res, *fragments: str) -> None:
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    for f in fragments:
        assert f in res.output, f"{f!r} not in {res.output!r}"


# ------------------------------------------------------------------------------- import / synth


@pytest.mark.parametrize("spelling", ["same", "dot-relative", "dotdot", "symlink", "hardlink"])
def test_import_refuses_an_output_that_is_the_input(tmp_path, monkeypatch, spelling):
    src = _bars_csv(tmp_path / "data" / "x.csv", bars=50)
    monkeypatch.chdir(tmp_path)
    out = {"same": "data/x.csv", "dot-relative": "./data/x.csv", "dotdot": "data/../data/x.csv"}.get(spelling)
    if spelling == "symlink":
        os.symlink(src, tmp_path / "data" / "link.parquet")
        out = "data/link.parquet"
    elif spelling == "hardlink":
        os.link(src, tmp_path / "data" / "hard.parquet")
        out = "data/hard.parquet"
    before = snapshot(tmp_path)
    res = _run("data", "import", "data/x.csv", "--out", out)
    _refused(res, "--out", "input file")
    assert snapshot(tmp_path) == before  # the CSV's bytes unchanged, no report, no temporary


def test_import_refuses_when_the_report_would_replace_an_input(tmp_path):
    """``--out bars.parquet`` writes ``bars.report.json``; an input of that name must survive."""
    src = _bars_csv(tmp_path / "bars.report.json", bars=50)
    other = _bars_csv(tmp_path / "other.csv", bars=50, seed=2)
    before = snapshot(tmp_path)
    res = _run("data", "import", str(other), str(src), "--format", "csv", "--symbol", "X",
               "--duplicates", "first", "--out", str(tmp_path / "bars.parquet"))
    _refused(res, "bars.report.json", "input file")
    assert snapshot(tmp_path) == before


def test_import_and_synth_outputs_under_a_file_or_onto_a_directory(tmp_path):
    src = _bars_csv(tmp_path / "x.csv", bars=50)
    (tmp_path / "adir").mkdir()
    before = snapshot(tmp_path)
    for cmd in (["data", "import", str(src)], ["data", "synth", "--bars", "100"]):
        _refused(_run(*cmd, "--out", tmp_path / "x.csv" / "sub.parquet"), "x.csv is a file, not a directory")
        _refused(_run(*cmd, "--out", tmp_path / "x.csv" / "a" / "b.parquet"), "is a file, not a directory")
        _refused(_run(*cmd, "--out", tmp_path / "adir"), "is a directory")
    assert snapshot(tmp_path) == before


def test_import_output_beside_the_input_still_works(tmp_path):
    src = _bars_csv(tmp_path / "x.csv", bars=50)
    res = _run("data", "import", str(src), "--out", tmp_path / "x.parquet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.parquet", "x.report.json"]


# ------------------------------------------------------------------------------------ prepare


def test_prepare_refuses_an_output_directory_holding_the_input(tmp_path):
    src = _bars_csv(tmp_path / "d" / "btcusdt_5m.csv")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        _refused(_run("data", "prepare", src, "--out", tmp_path / "d", *extra), "contains the input")
        _refused(_run("data", "prepare", src, "--out", tmp_path, *extra), "contains the input")
    assert snapshot(tmp_path) == before


def test_prepare_refuses_the_working_directory(tmp_path, monkeypatch):
    src = _bars_csv(tmp_path / "in" / "bars.csv")
    work = tmp_path / "home" / "work"
    (work / "notes").mkdir(parents=True)
    (work / "notes" / "todo.txt").write_text("mine")
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    _refused(_run("data", "prepare", src, "--out", os.getcwd()), "current directory")
    _refused(_run("data", "prepare", src, "--out", "."), "current directory")
    _refused(_run("data", "prepare", src, "--out", ".."), "current directory")
    monkeypatch.chdir(empty)  # even an empty working directory: it would be swapped away under the shell
    _refused(_run("data", "prepare", src, "--out", ".", "--force"), "current directory")
    assert snapshot(tmp_path) == before  # no "..*.tmp" anywhere either


def test_prepare_refuses_a_non_empty_directory_that_is_not_prepared_data(tmp_path):
    src = _bars_csv(tmp_path / "bars.csv")
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper.tex").write_text("years of work")
    (out / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        _refused(_run("data", "prepare", src, "--out", out, *extra), "not a himari-prepared directory")
    assert snapshot(tmp_path) == before


def test_prepare_replaces_earlier_prepared_data_only_with_force(tmp_path):
    src = _bars_csv(tmp_path / "bars.csv")
    out = tmp_path / "prep"
    assert _run("data", "prepare", src, "--out", out).exit_code == 0
    meta_before = (out / "metadata.json").read_bytes()
    before = snapshot(tmp_path)
    _refused(_run("data", "prepare", src, "--out", out, "--threshold", "0.01"), "--force")
    assert snapshot(tmp_path) == before
    res = _run("data", "prepare", src, "--out", out, "--threshold", "0.01", "--force")
    assert res.exit_code == 0, res.output
    assert (out / "metadata.json").read_bytes() != meta_before
    assert json.loads((out / "metadata.json").read_text())["labeler"]["params"]["threshold"] == 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv", "prep"]  # no temporaries left
    # a prepared directory with a file of the user's in it is not replaced, even with --force
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    _refused(_run("data", "prepare", src, "--out", out, "--force"), "notes.txt")
    assert snapshot(tmp_path) == before


def test_prepare_into_an_empty_directory_and_under_a_file(tmp_path):
    src = _bars_csv(tmp_path / "bars.csv")
    (tmp_path / "empty").mkdir()
    assert _run("data", "prepare", src, "--out", tmp_path / "empty").exit_code == 0
    assert (tmp_path / "empty" / "metadata.json").exists()
    before = snapshot(tmp_path)
    _refused(_run("data", "prepare", src, "--out", tmp_path / "bars.csv" / "x"), "bars.csv is a file, not a directory")
    _refused(_run("data", "prepare", "--synth-bars", "2000", "--out", tmp_path / "bars.csv" / "x"), "is a file")
    _refused(_run("data", "prepare", src, "--out", tmp_path / "bars.csv"), "is the input file", "new directory")
    assert snapshot(tmp_path) == before


def test_library_prepare_refuses_too_and_the_cache_still_refreshes(tmp_path, monkeypatch):
    from himari.data.synthetic import load_synthetic

    bars = load_synthetic(SynthConfig(bars=WARMUP + 400, seed=4))
    out = tmp_path / "p"
    prepare(bars, out)
    with pytest.raises(DataError, match="--force"):
        prepare(bars, out, PrepareConfig(label_params={"threshold": 0.01}))
    assert json.loads((out / "metadata.json").read_text())["labeler"]["params"]["threshold"] == 0.002
    prepare(bars, out, PrepareConfig(label_params={"threshold": 0.01}), force=True)
    assert json.loads((out / "metadata.json").read_text())["labeler"]["params"]["threshold"] == 0.01
    monkeypatch.setenv("HIMARI_CACHE_DIR", str(tmp_path / "cache"))
    p1 = default_prepared_dataset(bars=WARMUP + 400, seed=2)
    first = json.loads((p1 / "metadata.json").read_text())["created_at"]
    p2 = default_prepared_dataset(bars=WARMUP + 400, seed=2, refresh=True)  # re-prepares the entry in place
    assert p2 == p1 and json.loads((p2 / "metadata.json").read_text())["created_at"] >= first
    assert [p.name for p in p1.parent.iterdir()] == [p1.name]


def test_resolve_prepared_of_a_bars_file_writes_the_cache(tmp_path, monkeypatch):
    from himari.data.pipeline import resolve_prepared

    monkeypatch.setenv("HIMARI_CACHE_DIR", str(tmp_path / "cache"))
    src = _bars_csv(tmp_path / "bars.csv")
    d = resolve_prepared(src)
    assert d.parent == tmp_path / "cache" / "prepared" and (d / "metadata.json").exists()
    assert resolve_prepared(src) == d
    assert pd.read_csv(src).shape[0] == WARMUP + 600
