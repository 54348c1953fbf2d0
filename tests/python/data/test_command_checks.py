"""Bad options and bad values stop the data commands with one line naming the file or option and
exit code 2, before anything is written: blank symbols, synthetic bars outside the supported time
range, negative seeds, bars files not named .parquet, conflicting split options, labels that
leave the train split empty. Hints name options the command has; report and prepare agree with
import; the labels table and docs/data.md say what prepare really writes."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from himari.cli import app
from himari.data.features import WARMUP
from himari.data.frame import write_bars
from himari.data.ingest import import_bars
from himari.data.pipeline import ARRAY_FILES, PrepareConfig, prepare
from himari.data.prepared import PreparedData, render_summary
from himari.data.readers import read_source
from himari.data.synthetic import SynthConfig, load_synthetic, synthesize, write_synthetic
from himari.errors import DataError

runner = CliRunner()
DOC = Path(__file__).resolve().parents[3] / "docs" / "data.md"


def make_bars(n: int) -> pd.DataFrame:
    """Consistent 5-minute OHLCV bars from 2023-01-01 (UTC)."""
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame({"timestamp": pd.date_range("2023-01-01", periods=n, freq="5min", tz="UTC"),
                         "open": open_, "high": np.maximum(open_, close) * 1.001,
                         "low": np.minimum(open_, close) * 0.999, "close": close, "volume": rng.uniform(1, 10, n)})


def bars_csv(df: pd.DataFrame) -> str:
    out = df.copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.to_csv(index=False)


def _run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden temporaries included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def _refused(res, *fragments: str) -> str:
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    for f in fragments:
        assert f in res.output, f"{f!r} not in {res.output!r}"
    return res.output


def _csv(path: Path, n: int = 50, **columns: object) -> Path:
    df = make_bars(n)
    for k, v in columns.items():
        df[k] = v
    path.write_text(bars_csv(df))
    return path


def _prepare_csv(path: Path, bars: int = WARMUP + 600) -> Path:
    frame = synthesize(SynthConfig(bars=bars, seed=1))
    frame.drop(columns=["symbol", "filled"]).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------ 1. blank symbols


def test_import_names_the_row_of_a_blank_symbol_in_a_csv(tmp_path):
    src = tmp_path / "blanksym.csv"
    df = make_bars(50)
    df["symbol"] = "BTC"
    df.loc[5, "symbol"] = ""
    src.write_text(bars_csv(df))
    before = _files(tmp_path)
    out = _refused(_run("data", "import", src, "--out", tmp_path / "o.parquet"),
                   "blanksym.csv: line 7, column 'symbol'", "missing or blank", "--symbol")
    assert "IndexError" not in out
    assert _files(tmp_path) == before


def test_import_names_the_row_of_a_null_symbol_in_a_parquet(tmp_path):
    src = tmp_path / "nonesym.parquet"
    df = make_bars(50)
    df["symbol"] = "BTC"
    df.loc[5, "symbol"] = None
    df.to_parquet(src)
    before = _files(tmp_path)
    _refused(_run("data", "import", src, "--out", tmp_path / "o.parquet"),
             "nonesym.parquet: row 6, column 'symbol'", "missing or blank")
    assert _files(tmp_path) == before


def test_all_blank_symbols_are_named_as_such_not_as_an_interval_problem(tmp_path):
    src = _csv(tmp_path / "allblank.csv", symbol="")
    out = _refused(_run("data", "import", src, "--out", tmp_path / "o.parquet"),
                   "line 2, column 'symbol'", "49 more such rows")
    assert "interval" not in out
    # --symbol is the remedy the message offers: it works
    assert _run("data", "import", src, "--symbol", "BTC", "--out", tmp_path / "o.parquet").exit_code == 0


@pytest.mark.parametrize("command", ["import", "synth"])
@pytest.mark.parametrize("symbol", ["", "  "])
def test_an_empty_symbol_option_is_refused(tmp_path, command, symbol):
    src = _csv(tmp_path / "x.csv")
    before = _files(tmp_path)
    args = ["data", "import", src] if command == "import" else ["data", "synth", "--bars", "100"]
    _refused(_run(*args, "--symbol", symbol, "--out", tmp_path / "o.parquet"), "--symbol", "empty")
    assert _files(tmp_path) == before
    with pytest.raises(DataError, match="symbol is empty"):
        read_source(src, symbol=symbol)
    with pytest.raises(DataError, match="symbol is empty"):
        synthesize(SynthConfig(bars=10, symbol=symbol))


# ---------------------------------------------------- 2. synth stays inside the supported range


@pytest.mark.parametrize(("args", "fragments"), [
    (["--bars", "100000", "--interval", "1d"], ["bars", "supported range 1900-01-01 .. 2199-12-31", "64,648"]),
    (["--start", "2262-01-01"], ["--start", "supported range"]),
    (["--start", "2199-12-31T23:55"], ["bars", "supported range"]),  # the second bar opens in 2200
    (["--start", "1800-01-01"], ["--start", "supported range"]),
    (["--start", "foo"], ["--start", "cannot read 'foo'"]),
])
def test_synth_refuses_times_that_import_would_refuse(tmp_path, args, fragments):
    out = _refused(_run("data", "synth", "--bars", "10", *args, "--out", tmp_path / "s.parquet"), *fragments)
    assert "DateParseError" not in out
    assert _files(tmp_path) == {}


def test_synth_up_to_the_end_of_the_range_imports_back(tmp_path):
    """One definition of the range: the latest bars synth writes are ones import accepts."""
    src = tmp_path / "late.parquet"
    frame = write_synthetic(src, SynthConfig(bars=2, interval_seconds=300, start="2199-12-31T23:50"))
    assert str(frame["timestamp"].iat[-1]) == "2199-12-31 23:55:00+00:00"
    assert len(import_bars([src], tmp_path / "again.parquet").frame) == 2
    with pytest.raises(DataError, match="supported range"):
        synthesize(SynthConfig(bars=2, start="1899-12-31T23:55"))


# -------------------------------------------------------- 3. report gives import's verdict


def test_report_refuses_a_bars_file_with_times_import_refuses(tmp_path):
    frame = synthesize(SynthConfig(bars=20, seed=1))
    frame["timestamp"] = pd.date_range("1800-01-01", periods=20, freq="5min", tz="UTC")
    bars = tmp_path / "old.parquet"
    write_bars(frame, bars, 300)
    _refused(_run("data", "import", bars, "--out", tmp_path / "o.parquet"), "outside the supported range")
    _refused(_run("data", "report", bars), "old.parquet", "column 'timestamp'",
             "outside the supported range 1900-01-01 .. 2199-12-31")
    _refused(_run("data", "prepare", bars, "--out", tmp_path / "p"), "outside the supported range")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.parquet"]


# -------------------------------------------------------------------------- 4. seeds


@pytest.mark.parametrize("command", ["synth", "prepare", "augment"])
def test_a_negative_seed_is_an_option_error(tmp_path, command):
    args = {"synth": ["data", "synth", "--bars", "100", "--out", tmp_path / "s.parquet"],
            "prepare": ["data", "prepare", "--synth-bars", "3000", "--out", tmp_path / "p"],
            "augment": ["data", "augment", tmp_path / "none", "--method", "block-bootstrap", "--out", tmp_path / "a"]}
    res = _run(*args[command], "--seed", "-1")
    assert res.exit_code == 2, res.output
    assert "--seed" in res.output and "ValueError" not in res.output
    assert _files(tmp_path) == {}


def test_the_library_refuses_a_negative_seed_too():
    with pytest.raises(DataError, match=r"seed \(--seed\): must be an integer >= 0, got -1"):
        synthesize(SynthConfig(bars=10, seed=-1))


# ---------------------------------------------- 5. hints name options the command has


def _one_bar(tmp_path: Path) -> Path:
    return _csv(tmp_path / "one.csv", n=1)


def _two_steps(tmp_path: Path) -> Path:
    """5-minute bars, then 10-minute ones: as common as each other, so the interval is unclear."""
    df = make_bars(WARMUP + 600)
    df = df.iloc[list(range(800)) + list(range(800, len(df), 2))]
    path = tmp_path / "twostep.csv"
    path.write_text(bars_csv(df))
    return path


def test_report_has_the_options_its_hints_name(tmp_path):
    one = _one_bar(tmp_path)
    _refused(_run("data", "report", one), "pass --interval")
    assert _run("data", "report", one, "--interval", "5m").exit_code == 0
    dup = make_bars(20)
    dup = pd.concat([dup, dup.iloc[[3]].assign(close=dup["close"].iat[3] * 1.01)])
    (tmp_path / "dup.csv").write_text(bars_csv(dup))
    _refused(_run("data", "report", tmp_path / "dup.csv"), "pass --duplicates first|last")
    res = _run("data", "report", tmp_path / "dup.csv", "--duplicates", "last", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["symbols"][0]["conflicting_duplicates_resolved"] == 1
    bad = make_bars(20)
    bad.loc[4, "close"] = -1.0
    (tmp_path / "bad.csv").write_text(bars_csv(bad))
    _refused(_run("data", "report", tmp_path / "bad.csv"), "pass --drop-invalid")
    res = _run("data", "report", tmp_path / "bad.csv", "--drop-invalid", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["symbols"][0]["invalid_rows_dropped"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "dup.csv", "one.csv"]


@pytest.mark.parametrize("make", [_one_bar, _two_steps])
def test_prepare_says_to_import_with_the_option_first(tmp_path, make):
    src = make(tmp_path)
    out = _refused(_run("data", "prepare", src, "--out", tmp_path / "p"), "run himari data import with --interval")
    assert "pass --interval" not in out
    assert not (tmp_path / "p").exists()


def test_prepare_hints_for_invalid_rows_and_duplicates(tmp_path):
    bad = make_bars(WARMUP + 100)
    bad.loc[7, "low"] = 0.0
    (tmp_path / "bad.csv").write_text(bars_csv(bad))
    out = _refused(_run("data", "prepare", tmp_path / "bad.csv", "--out", tmp_path / "p"),
                   "run himari data import with --drop-invalid")
    assert "pass --drop-invalid" not in out
    blank = make_bars(WARMUP + 100)
    blank["symbol"] = "BTC"
    blank.loc[3, "symbol"] = ""
    (tmp_path / "blank.csv").write_text(bars_csv(blank))
    out = _refused(_run("data", "prepare", tmp_path / "blank.csv", "--out", tmp_path / "p"),
                   "column 'symbol'", "run himari data import with --symbol")
    assert "pass --symbol" not in out


# --------------------------------------------- 6. labels the train split cannot do without


def test_prepare_refuses_labels_that_leave_the_train_split_unlabelled(tmp_path):
    src = _prepare_csv(tmp_path / "small.csv")
    before = _files(tmp_path)
    _refused(_run("data", "prepare", src, "--out", tmp_path / "pz", "--labels", "risk-adjusted",
                  "--vol-window", "100000"), "labels none of the", "train split", "--vol-window")
    assert _files(tmp_path) == before


def test_prepare_refuses_a_fold_whose_training_block_has_no_label(tmp_path):
    bars = load_synthetic(SynthConfig(bars=WARMUP + 2000, seed=2))
    # labels start near bar 2,200: inside the train split, after fold 0's training block
    config = PrepareConfig(labeler="risk-adjusted", label_params={"vol_window": 2200}, folds=3)
    with pytest.raises(DataError, match="train block of fold 0"):
        prepare(bars, tmp_path / "p", config)
    assert not (tmp_path / "p").exists()
    prepare(bars, tmp_path / "p", PrepareConfig(labeler="risk-adjusted", label_params={"vol_window": 2200}))


def _labels_table(meta: dict) -> dict[str, list[str]]:
    console = Console(record=True, width=200)
    render_summary(meta, console)
    rows = {}
    for line in console.export_text().replace("┃", "│").splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 6:
            rows[cells[0]] = cells[1:]
    return rows


def test_the_labels_table_counts_rows_and_labelled_rows_alike_for_every_split(prepared_dir):
    meta = PreparedData(prepared_dir).metadata
    table = _labels_table(meta)
    after_warmup = sum(s["stop"] - s["first"] for s in meta["segments"])
    assert table["split"] == ["rows", "labelled", "SELL", "HOLD", "BUY"]
    assert table["all (after warm-up)"][:2] == [f"{after_warmup:,}", f"{meta['num_labeled']:,}"]
    assert meta["num_labeled"] < after_warmup  # the last bars have no label: the columns differ
    for name, ranges in meta["splits"].items():
        dist = meta["label_distribution_by_split"][name]
        assert table[name][:2] == [f"{sum(b - a for a, b in ranges):,}", f"{sum(dist.values()):,}"]
    empty = {**meta, "label_distribution_by_split": {**meta["label_distribution_by_split"],
                                                     "test": {"SELL": 0, "HOLD": 0, "BUY": 0}}}
    assert _labels_table(empty)["test"][1:] == ["0", "0", "0", "0"]


# ------------------------------------------------------------------------ 7. docs and --help


def test_docs_describe_the_prepared_directory_prepare_writes(prepared_dir):
    text = DOC.read_text(encoding="utf-8")
    for name in ARRAY_FILES.values():
        assert f"`{name}`" in text, name
    for key in PreparedData(prepared_dir).metadata:
        if key != "format" and key != "version":
            assert f"`{key}`" in text, key
    assert "`normalization`" not in text and "normalization()" not in text
    assert not hasattr(PreparedData, "normalization")
    help_text = _run("data", "prepare", "--help").output
    assert "normalisation" not in help_text and "normalization" not in help_text


# ------------------------------------------------------------- 8. bars files are .parquet


def test_import_refuses_an_output_not_named_parquet(tmp_path):
    src = _csv(tmp_path / "s50.csv")
    before = _files(tmp_path)
    _refused(_run("data", "import", src, "--out", tmp_path / "o.csv"), "must end in .parquet", "o.parquet")
    assert _files(tmp_path) == before


@pytest.mark.parametrize("out", ["sdir/", "sdir", "bars.parquet.csv"])
def test_synth_refuses_a_directory_name_or_another_suffix(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    _refused(_run("data", "synth", "--bars", "10", "--out", out), "--out")
    assert _files(tmp_path) == {}
    with pytest.raises(DataError, match="--out"):
        write_synthetic(out, SynthConfig(bars=10))
    assert _files(tmp_path) == {}


# ---------------------------------------------------------------- 9. prepare's options


@pytest.mark.parametrize("fraction", [["--train", "0.5"], ["--validation", "0.2"]])
def test_prepare_refuses_split_dates_with_fractions(tmp_path, fraction):
    src = _prepare_csv(tmp_path / "bars.csv")
    before = _files(tmp_path)
    _refused(_run("data", "prepare", src, "--out", tmp_path / "p", "--split-dates", "2023-01-05,2023-01-06",
                  *fraction), "--split-dates", fraction[0])
    assert _files(tmp_path) == before


def test_prepare_onto_its_input_file_says_so(tmp_path):
    bars = tmp_path / "bars.parquet"
    write_synthetic(bars, SynthConfig(bars=WARMUP + 200))
    before = _files(tmp_path)
    out = _refused(_run("data", "prepare", bars, "--out", bars), "is the input file", "choose a new directory")
    assert "delete it" not in out and "contains" not in out
    assert _files(tmp_path) == before


# ------------------------------------------------------------ 10. no numpy noise on errors


def test_extreme_prices_fail_cleanly_without_numpy_warnings(tmp_path):
    df = make_bars(WARMUP + 50)
    df["high"] = 1e308
    df["low"] = 1e-308
    (tmp_path / "ext.csv").write_text(bars_csv(df))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="is not finite"):
            prepare(tmp_path / "ext.csv", tmp_path / "p")
    assert [str(w.message) for w in caught] == []
    assert sorted(os.listdir(tmp_path)) == ["ext.csv"]
    assert np.isfinite(df["high"]).all()  # the input itself is valid: the features overflow


@pytest.mark.parametrize("args, message", [(["--synth-bars", "10"], "--synth-bars: only for the synthetic market"),
                                           (["--seed", "3"], "--seed: only for the synthetic market"),
                                           (["--fold-mode", "rolling"], "--fold-mode: only with --folds")])
def test_prepare_refuses_options_that_would_do_nothing(tmp_path, args, message):
    """A bars file ignored --synth-bars and --seed, and --fold-mode without --folds was ignored."""
    bars = tmp_path / "bars.parquet"
    write_synthetic(bars, SynthConfig(bars=3000, seed=1))
    res = CliRunner().invoke(app, ["data", "prepare", str(bars), "--out", str(tmp_path / "p"), *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and not (tmp_path / "p").exists()
