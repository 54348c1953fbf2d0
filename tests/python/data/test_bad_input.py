"""Bad input never passes silently: each defect is an error naming file, line and column, or a
repair behind an explicit option that the report counts. Nothing is written when import fails."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari.data.frame import ImportOptions
from himari.data.ingest import import_bars, load_bars
from himari.errors import DataError

HEADER = "timestamp,open,high,low,close,volume\n"


def _row(i: int, o=100.0, h=101.0, l=99.0, c=100.5, v=5.0, minutes: int = 5) -> str:
    t = pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(minutes=minutes * i)
    return f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{o},{h},{l},{c},{v}\n"


def _good(n: int = 10) -> str:
    return HEADER + "".join(_row(i) for i in range(n))


def _expect_error(path: Path, *fragments: str, **options) -> str:
    with pytest.raises(DataError) as e:
        load_bars([path], options=ImportOptions(**options) if options else None)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_unsorted_rows_are_sorted_and_reported(write_csv):
    rows = [_row(i) for i in range(10)]
    rows[3], rows[6] = rows[6], rows[3]
    loaded = load_bars([write_csv("u.csv", HEADER + "".join(rows))])
    ts = loaded.frame["timestamp"].array.asi8
    assert (np.diff(ts) > 0).all()
    assert loaded.log.symbols["U"].unsorted_rows >= 1
    assert loaded.report.symbols[0].unsorted_rows >= 1
    assert any("not sorted" in w for w in loaded.report.symbols[0].warnings)


def test_exact_duplicates_dropped_and_reported(write_csv):
    text = _good(10) + _row(4) + _row(7)
    loaded = load_bars([write_csv("d.csv", text)])
    assert len(loaded.frame) == 10
    assert loaded.report.symbols[0].duplicates_dropped == 2


def test_the_same_timestamp_in_two_symbols_is_no_duplicate(write_csv):
    a = write_csv("a.csv", _good(10))
    b = write_csv("b.csv", HEADER + "".join(_row(i) for i in range(9, 19)))  # starts at a's last bar
    loaded = load_bars([a, b])
    assert loaded.frame.groupby("symbol").size().tolist() == [10, 10]
    assert all(s.duplicates_dropped == 0 for s in loaded.report.symbols)


def test_conflicting_duplicates_error_names_both_rows(write_csv):
    p = write_csv("dup.csv", _good(5) + _row(2, c=123.0))
    msg = _expect_error(p, "dup.csv: line 4", "dup.csv: line 7", "column 'close'", "duplicate timestamp", "100.5", "123.0")
    assert "--duplicates" in msg
    keep_last = load_bars([p], options=ImportOptions(duplicates="last"))
    assert keep_last.frame["close"].iat[2] == 123.0
    assert keep_last.report.symbols[0].conflicting_duplicates_resolved == 1
    keep_first = load_bars([p], options=ImportOptions(duplicates="first"))
    assert keep_first.frame["close"].iat[2] == 100.5


@pytest.mark.parametrize(
    ("row", "column", "what"),
    [
        (_row(3, c="nan"), "close", "NaN"),
        (_row(3, c=""), "close", "NaN"),
        (_row(3, o="inf"), "open", "infinite"),
        (_row(3, l=0.0), "low", "not positive"),
        (_row(3, o=-1.0), "open", "not positive"),
        (_row(3, v=-2.0), "volume", "negative"),
        (_row(3, h=98.0, l=99.0), "high", "high is below low"),
    ],
)
def test_invalid_values_error_with_file_line_column(write_csv, row, column, what):
    text = HEADER + "".join(_row(i) for i in range(3)) + row + "".join(_row(i) for i in range(4, 8))
    p = write_csv("bad.csv", text)
    _expect_error(p, "bad.csv: line 5", f"column '{column}'", what, "--drop-invalid")
    # the explicit repair drops the row, and the report says so
    loaded = load_bars([p], options=ImportOptions(drop_invalid=True, interval="5m"))
    assert len(loaded.frame) == 7
    assert loaded.report.symbols[0].invalid_rows_dropped == 1
    assert loaded.report.symbols[0].gaps == 1


def test_non_numeric_value_and_bad_timestamp(write_csv):
    p = write_csv("txt.csv", _good(3) + _row(3, h="abc"))
    _expect_error(p, "txt.csv", "line 5", "column 'high'", "not a number", "abc")
    p2 = write_csv("ts.csv", _good(3) + "yesterday,1,2,0.5,1,1\n")
    _expect_error(p2, "ts.csv", "line 5", "column 'timestamp'", "yesterday")


def test_missing_columns(write_csv):
    p = write_csv("m.csv", "timestamp,open,high,low,close\n2023-01-01T00:00:00Z,1,2,0.5,1\n")
    _expect_error(p, "m.csv", "missing column", "'volume'")


def test_mixed_intervals_within_and_across_files(write_csv):
    rows = [_row(i) for i in range(6)] + [_row(0, minutes=1).replace("00:00:00", "00:27:00")]
    p = write_csv("mixed.csv", HEADER + "".join(rows))
    _expect_error(p, "mixed.csv", "column 'timestamp'", "not a multiple of the 5m interval", "mixed intervals")
    hourly = write_csv("h.csv", HEADER + "".join(_row(i, minutes=60) for i in range(5)))
    five = write_csv("f.csv", HEADER + "".join(_row(i, minutes=5) for i in range(5)).replace("2023-01-01", "2023-02-01"))
    with pytest.raises(DataError, match=r"mixed intervals across files or symbols.*h\.csv: 1h.*f\.csv: 5m"):
        load_bars([hourly, five], symbol="X")
    # one file, two symbols at different intervals: refused whichever symbol comes first
    for slow in ("AAA", "ZZZ"):
        text = ("timestamp,open,high,low,close,volume,symbol\n"
                + "".join(_row(i).rstrip("\n") + ",MMM\n" for i in range(12))
                + "".join(_row(i, minutes=15).rstrip("\n") + f",{slow}\n" for i in range(4)))
        p = write_csv(f"two-{slow}.csv", text)
        with pytest.raises(DataError, match=rf"mixed intervals across files or symbols.*two-{slow}\.csv \(MMM\): 5m"):
            load_bars([p])
        with pytest.raises(DataError, match=rf"mixed intervals across files or symbols.*two-{slow}\.csv \({slow}\): 15m"):
            load_bars([p], options=ImportOptions(fill_gaps="forward"))
    half = HEADER + "".join(_row(i, minutes=5) for i in range(6)) + "".join(_row(i, minutes=60) for i in range(1, 7))
    _expect_error(write_csv("half.csv", half), "half.csv", "mixed intervals")
    _expect_error(write_csv("int.csv", _good(6)), "--interval 1h", interval="1h")


def test_empty_header_only_blank_line_and_truncated_gzip(tmp_path, write_csv):
    _expect_error(write_csv("empty.csv", ""), "empty.csv", "empty")
    _expect_error(write_csv("blank.csv", "\n\n"), "blank.csv", "empty")
    _expect_error(write_csv("hdr.csv", HEADER), "hdr.csv", "no data rows")
    _expect_error(write_csv("hole.csv", _good(3) + "\n" + _row(3)), "hole.csv", "line 5", "empty row")
    load_bars([write_csv("trail.csv", _good(3) + "\n\n")])  # trailing blank lines are fine
    full = gzip.compress((_good(3000)).encode())
    trunc = tmp_path / "trunc.csv.gz"
    trunc.write_bytes(full[: len(full) // 2])
    _expect_error(trunc, "trunc.csv.gz", "truncated")
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(full[:20] + b"\x00" * 50 + full[70:])
    _expect_error(corrupt, "corrupt.csv.gz")
    _expect_error(tmp_path / "nope.csv", "no such file")
    _expect_error(write_csv("gz0.csv.gz", ""), "empty")


def test_bad_binary_formats(tmp_path):
    f = tmp_path / "x.feather"
    f.write_bytes(b"not a feather file at all")
    _expect_error(f, "x.feather", "cannot read")
    j = tmp_path / "x.json"
    j.write_text("[[1, 2, 3")
    _expect_error(j, "x.json", "malformed JSON")
    pq = tmp_path / "x.parquet"
    pq.write_bytes(b"PAR1garbage")
    _expect_error(pq, "x.parquet", "cannot read Parquet")


def test_ohlc_inconsistency_reported_and_repaired(write_csv):
    p = write_csv("o.csv", _good(3) + _row(3, o=100.0, h=100.2, l=99.0, c=100.5) + _row(4))
    loaded = load_bars([p])
    assert loaded.report.symbols[0].ohlc_inconsistent == 1
    assert any("--repair-ohlc" in w for w in loaded.report.symbols[0].warnings)
    fixed = load_bars([p], options=ImportOptions(repair_ohlc=True))
    assert fixed.report.symbols[0].ohlc_inconsistent == 0
    assert fixed.report.symbols[0].ohlc_repaired == 1
    assert fixed.frame["high"].iat[3] == 100.5
    low = write_csv("l.csv", _good(3) + _row(3, o=100.0, h=101.0, l=100.2, c=99.8) + _row(4))
    fixed = load_bars([low], options=ImportOptions(repair_ohlc=True))
    assert fixed.frame["low"].iat[3] == 99.8 and fixed.frame["high"].iat[3] == 101.0  # the low clamped down


def test_fill_gaps_forward_marks_filled_bars(write_csv):
    rows = [_row(i) if i < 7 else _row(i, o=120.0, h=121.0, l=119.0, c=120.0) for i in range(10) if i not in (4, 5, 6)]
    p = write_csv("g.csv", HEADER + "".join(rows))  # the close jumps to 120 after the gap
    plain = load_bars([p])
    assert plain.report.symbols[0].gaps == 1 and plain.report.symbols[0].missing_bars == 3
    assert plain.report.symbols[0].longest_gap_bars == 3
    filled = load_bars([p], options=ImportOptions(fill_gaps="forward"))
    f = filled.frame
    assert len(f) == 10 and f["filled"].sum() == 3
    gap = f.iloc[4:7]
    assert (gap["volume"] == 0).all()
    assert (gap[["open", "high", "low", "close"]].to_numpy() == 100.5).all()  # the close before the gap, never after
    assert filled.report.symbols[0].filled_bars == 3


def test_nothing_written_when_import_fails(tmp_path, write_csv):
    good = write_csv("good.csv", _good(10))
    out = tmp_path / "out" / "bars.parquet"
    import_bars([good], out)
    before = out.read_bytes()
    bad = write_csv("bad.csv", _good(3) + _row(3, c="nan"))
    with pytest.raises(DataError):
        import_bars([bad], out)
    assert out.read_bytes() == before  # the previous output is untouched
    fresh = tmp_path / "fresh" / "bars.parquet"
    fresh.parent.mkdir()
    with pytest.raises(DataError):
        import_bars([bad], fresh)
    assert not fresh.exists() and not fresh.with_name("bars.report.json").exists()
    assert [p.name for p in fresh.parent.iterdir()] == []  # no temp files left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["bars.parquet", "bars.report.json"]


def _numeric_ts_csv(first: int, n: int = 6) -> str:
    """A bar at unix second ``first``, then n bars of 5 minutes from 2023-01-01."""
    start = 1_672_531_200
    rows = [f"{first},100,101,99,100.5,5\n"] + [f"{start + 300 * i},100,101,99,100.5,5\n" for i in range(n)]
    return HEADER + "".join(rows)


@pytest.mark.parametrize("value", [-300, -1, 0, 300, 31_535_999, -1_600_000_000_000, 9_000_000_000_000_000_000])
def test_unix_times_before_1971_or_past_2199_are_refused(write_csv, value):
    """Before, -300 imported as a 1969 bar (and --fill-gaps forward then made 5.6M bars)."""
    p = write_csv("neg.csv", _numeric_ts_csv(value))
    msg = _expect_error(p, "neg.csv: line 2", "column 'timestamp'", "1971-01-01", str(value))
    assert "ISO-8601" in msg


def test_unix_time_boundary_is_accepted(write_csv):
    p = write_csv("ok.csv", HEADER + "".join(f"{31_536_000 + 300 * i},100,101,99,100.5,5\n" for i in range(6)))
    loaded = load_bars([p])
    assert loaded.frame["timestamp"].iat[0] == pd.Timestamp("1971-01-01", tz="UTC")


@pytest.mark.parametrize("stamp", ["-9999-01-01T00:00:00Z", "1677-09-21T00:05:00Z", "1677-09-22T00:00:00Z",
                                   "1899-12-31T23:55:00Z", "2200-01-01T00:00:00Z", "2262-04-11T00:00:00Z"])
def test_iso_times_outside_1900_to_2199_are_refused(write_csv, stamp):
    """Pandas' nanosecond range ends in 1677 and 2262: those gave raw OutOfBoundsDatetime errors,
    an overflowing 'bar is -87395 days after' message, or (2262) a silent import."""
    p = write_csv("iso.csv", HEADER + _row(0) + stamp + ",100,101,99,100.5,5\n" + _row(2))
    _expect_error(p, "iso.csv: line 3", "column 'timestamp'", stamp, "1900-01-01 .. 2199-12-31")


def test_historic_iso_dates_are_accepted(write_csv):
    text = HEADER + "".join(f"1900-01-01T00:{5 * i:02d}:00Z,10,11,9,10.5,5\n" for i in range(6))
    loaded = load_bars([write_csv("old.csv", text)])
    assert loaded.frame["timestamp"].iat[0] == pd.Timestamp("1900-01-01", tz="UTC")


def test_datetime_columns_outside_the_range_are_refused(tmp_path):
    ts = pd.date_range("1850-01-01", periods=6, freq="5min", tz="UTC")
    df = pd.DataFrame({"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.0, "volume": 1.0})
    p = tmp_path / "old.parquet"
    df.to_parquet(p)
    _expect_error(p, "old.parquet: row 1", "column 'timestamp'", "1900-01-01")


def test_fill_gaps_refuses_an_absurd_expansion_naming_the_gap(tmp_path, write_csv):
    """10 bars, then one a year later: filling would make 105,000 bars out of 11."""
    text = _good(10) + "2024-01-01T00:00:00Z,100,101,99,100.5,5\n"
    p = write_csv("far.csv", text)
    msg = _expect_error(p, "far.csv: line 11", "far.csv: line 12", "--fill-gaps", "105,", "2023-01-01T00:45:00",
                        "2024-01-01T00:00:00", fill_gaps="forward")
    assert f"{10}x" in msg
    assert len(load_bars([p], options=ImportOptions(interval="5m")).frame) == 11  # without filling: fine
    out = tmp_path / "o" / "far.parquet"
    with pytest.raises(DataError, match="--fill-gaps"):
        import_bars([p], out, options=ImportOptions(fill_gaps="forward"))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_fill_gaps_up_to_the_limit_is_allowed(write_csv):
    """11 input rows may become 110 bars (10x), not 111."""
    base = pd.Timestamp("2023-01-01", tz="UTC")
    rows = [_row(i) for i in range(10)]
    ok = (base + pd.Timedelta(minutes=5 * 109)).strftime("%Y-%m-%dT%H:%M:%SZ")
    loaded = load_bars([write_csv("ten.csv", HEADER + "".join(rows) + f"{ok},100,101,99,100.5,5\n")],
                       options=ImportOptions(fill_gaps="forward"))
    assert len(loaded.frame) == 110 and int(loaded.frame["filled"].sum()) == 99
    over = (base + pd.Timedelta(minutes=5 * 110)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _expect_error(write_csv("eleven.csv", HEADER + "".join(rows) + f"{over},100,101,99,100.5,5\n"),
                  "111", fill_gaps="forward")


def test_cli_refuses_a_negative_unix_time_and_writes_nothing(tmp_path, write_csv):
    from typer.testing import CliRunner

    from himari.cli import app

    p = write_csv("neg.csv", _numeric_ts_csv(-300))
    res = CliRunner().invoke(app, ["data", "import", str(p), "--fill-gaps", "forward", "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 2 and "neg.csv: line 2, column 'timestamp'" in res.output
    assert sorted(x.name for x in tmp_path.iterdir()) == ["neg.csv"]


def test_a_himari_bars_file_edited_to_high_below_low_is_refused(tmp_path):
    """Import refuses high < low, but a himari Parquet read back skipped the check: prepare then
    wrote a negative high-low range feature."""
    from himari.data.frame import write_bars
    from himari.data.ingest import read_bars
    from himari.data.synthetic import SynthConfig, synthesize

    frame = synthesize(SynthConfig(bars=300, seed=1))
    frame.loc[120, "high"] = frame.loc[120, "low"] / 2
    path = tmp_path / "edited.parquet"
    write_bars(frame, path, 300)
    with pytest.raises(DataError, match="row 120, column 'high': high is below low"):
        read_bars(path)


def test_interval_units_read_as_written_and_a_month_is_refused():
    """Binance names a month 1M; it was read as one minute."""
    from himari.data.intervals import parse_interval

    assert [parse_interval(t) for t in ("5m", "5min", "1H", "300s", "1d", "1w", "300")] == [300, 300, 3600, 300,
                                                                                           86400, 604800, 300]
    with pytest.raises(DataError, match="months"):
        parse_interval("1M")
