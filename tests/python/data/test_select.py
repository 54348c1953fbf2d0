"""The bars a scoring command trades: a split or every usable bar, narrowed to a date range
(``select_ranges`` and ``PreparedData.select``), checked against hand-worked rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari.data.splits import Segment, parse_time, select_ranges
from himari.errors import DataError

STEP = 300 * 10**9
T0 = pd.Timestamp("2023-01-01", tz="UTC").value


def _two_symbols():
    """A: rows 0..100 from 00:00 (warm-up 10 rows); B: rows 100..160 from 02:00 (warm-up 10),
    both 5-minute bars, so their times overlap from 02:00 to 06:55."""
    ts = np.r_[T0 + np.arange(100) * STEP, T0 + 2 * 3600 * 10**9 + np.arange(60) * STEP].astype(np.int64)
    return ts, [Segment("A", 0, 100, 10), Segment("B", 100, 160, 110)]


def test_all_is_every_row_after_each_warm_up() -> None:
    ts, segs = _two_symbols()
    assert select_ranges(ts, segs) == [(10, 100), (110, 160)]


def test_a_date_range_is_cut_per_symbol_inclusive_from_exclusive_to() -> None:
    ts, segs = _two_symbols()
    # 04:10 is A's row 50 (250 min) and B's row 100 + 26 (130 min after 02:00); 05:00 (exclusive)
    # is A's row 60 and B's row 136
    assert select_ranges(ts, segs, start="2023-01-01T04:10", end="2023-01-01 05:00") == [(50, 60), (126, 136)]
    # open ends: from 06:00 on (A row 72, B row 148); before 01:00 (A row 12, B nothing)
    assert select_ranges(ts, segs, start="2023-01-01T06:00") == [(72, 100), (148, 160)]
    assert select_ranges(ts, segs, end="2023-01-01T01:00") == [(10, 12)]
    # a time zone is honoured: 06:10+02:00 is 04:10 UTC
    assert select_ranges(ts, segs, start="2023-01-01T06:10+02:00", end="2023-01-01T05:00") == [(50, 60), (126, 136)]


def test_a_split_is_narrowed_within_its_own_blocks() -> None:
    ts, segs = _two_symbols()
    base = [(10, 40), (45, 80), (110, 150)]
    # 03:00 = A row 36, B row 112; 06:00 = A row 72, B row 148
    assert select_ranges(ts, segs, base, start="2023-01-01T03:00", end="2023-01-01T06:00") == \
        [(36, 40), (45, 72), (112, 148)]
    assert select_ranges(ts, segs, base) == base


def test_a_block_of_one_bar_is_left_out() -> None:
    ts, segs = _two_symbols()
    # A row 39 alone in (10, 40): one bar cannot be traded (decide at a close, fill at the next open)
    assert select_ranges(ts, segs, [(10, 40)], start=int(ts[39])) == []
    assert select_ranges(ts, segs, [(10, 40)], start=int(ts[38])) == [(38, 40)]


@pytest.mark.parametrize("start,end,text", [
    ("2023-01-02", "2023-01-02", "--from 2023-01-02 must come before --to 2023-01-02"),
    ("2023-01-03", "2023-01-02", "--from 2023-01-03 must come before --to 2023-01-02"),
    ("2023-13-01", None, "--from 2023-13-01: cannot parse"),
    (None, "soon", "--to soon: cannot parse"),
    ("", None, "--from : cannot parse ''"),
])
def test_bad_windows_are_refused_naming_the_option(start, end, text) -> None:
    ts, segs = _two_symbols()
    with pytest.raises(DataError, match=text.replace("+", r"\+")):
        select_ranges(ts, segs, start=start, end=end)


def test_parse_time_refuses_pandas_missing_time() -> None:
    for value in ("", "NaT"):
        with pytest.raises(DataError, match="cannot parse"):
            parse_time(value)


@pytest.fixture(scope="module")
def two_symbol_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, synthesize

    a = synthesize(SynthConfig(bars=2600, seed=21, start="2024-03-01", symbol="AAA"))
    b = synthesize(SynthConfig(bars=2200, seed=22, start="2024-03-02T06:00", symbol="BBB"))
    folder = tmp_path_factory.mktemp("select")
    csv = folder / "two.csv"
    pd.concat([a, b], ignore_index=True).to_csv(csv, index=False)
    prepare(csv, folder / "prepared", PrepareConfig())
    return folder / "prepared"


def _blocks(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of True rows of length >= 2, by a plain scan."""
    out, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            if j - i >= 2:
                out.append((i, j))
            i = j
        else:
            i += 1
    return out


def test_prepared_select_matches_a_row_mask_of_the_data(two_symbol_prepared) -> None:
    from himari.data import PreparedData

    data = PreparedData(two_symbol_prepared)
    segs = data.segments
    assert [s.symbol for s in segs] == ["AAA", "BBB"] and all(s.first > s.start for s in segs)
    assert data.select("all") == [(s.first, s.stop) for s in segs]
    ts = np.asarray(data.timestamps)
    lo, hi = parse_time("2024-03-08T10:00"), parse_time("2024-03-09T12:30")
    usable = np.zeros(len(ts), dtype=bool)
    for s in segs:
        usable[s.first:s.stop] = True
    mask = usable & (ts >= lo) & (ts < hi)  # BBB's warm-up rows keep the two symbols' blocks apart
    expected = _blocks(mask)
    got = data.select("all", "2024-03-08T10:00", "2024-03-09T12:30")
    assert got == expected and len(got) == 2
    assert sum(b - a for a, b in got) == int(mask.sum())
    # the test split (from 2024-03-09 11:00 in both symbols) from 18:00 on: inside each block
    test = data.select("test", start="2024-03-09T18:00")
    test_rows = np.zeros(len(ts), dtype=bool)
    for a, b in data.split("test"):
        test_rows[a:b] = True
    assert test == _blocks(test_rows & (ts >= parse_time("2024-03-09T18:00")))
    assert len(test) == 2 and all(a > a0 and b == b0 for (a, b), (a0, b0) in zip(test, data.split("test")))


def test_prepared_select_refuses_an_empty_selection_with_the_span(two_symbol_prepared) -> None:
    from himari.data import PreparedData

    data = PreparedData(two_symbol_prepared)
    with pytest.raises(DataError, match=r"no bars to score in .*prepared from 2020-01-01 to 2021-01-01 .*its bars "
                                        r"after the feature warm-up span 2024-03-0\d \d\d:\d\d \.\. 2024-03-1"):
        data.select("all", "2020-01-01", "2021-01-01")
    with pytest.raises(DataError, match="the train split of .* the train split's bars span"):
        data.select("train", start="2030-01-01")
    with pytest.raises(DataError, match="--split 'everything': choose one of train, validation, test, all"):
        data.select("everything")
