"""Chronological splits and walk-forward folds pinned against hand-worked rows (mutation-tested:
each test names the wrong implementation it catches).

The usual series: 14 five-minute bars of one symbol with a warm-up of 2, so the usable rows
are 2 .. 13 (twelve rows). A range is half-open ``(start, stop)``; the embargo drops the last
``embargo`` rows before every cut, so that a label at row t, reading up to t + lookahead with
lookahead <= embargo, never reads a row of the next period.
"""

from __future__ import annotations

import numpy as np
import pytest

from himari.data.splits import (
    Segment,
    check_fold_count,
    check_split_dates,
    chronological_split,
    walk_forward_folds,
)
from himari.errors import DataError

STEP = 300 * 10**9
T0 = 1_672_531_200 * 10**9  # 2023-01-01 00:00 UTC


def _twelve_usable() -> tuple[np.ndarray, list[Segment]]:
    """Rows 0 .. 13, warm-up rows 0 and 1: usable rows 2 .. 13."""
    return T0 + np.arange(14, dtype=np.int64) * STEP, [Segment("A", 0, 14, 2)]


def test_fraction_cuts_round_to_the_nearest_usable_row() -> None:
    """train 0.6, validation 0.2 of 12 usable rows: the cuts fall at usable row round(7.2) = 7
    (row 9) and round(0.8 * 12 = 9.6) = 10 (row 12). Embargo 2 drops rows 7, 8 and 10, 11:

    train [2, 7)   validation [9, 10)   test [12, 14)

    The last train row, 6, reads up to row 6 + 2 = 8 < 9; the last validation row, 9, up to
    11 < 12. Without the embargo: [2, 9), [9, 12), [12, 14).

    Catches: cuts that floor (9.6 -> 9: validation [9, 9) empty, refused) or round up (7.2 ->
    8: train [2, 8), validation [10, 10)) instead of rounding to the nearest row.
    """
    ts, segs = _twelve_usable()
    s = chronological_split(ts, segs, train=0.6, validation=0.2, embargo=2)
    assert s == {"train": [(2, 7)], "validation": [(9, 10)], "test": [(12, 14)]}
    s = chronological_split(ts, segs, train=0.6, validation=0.2, embargo=0)
    assert s == {"train": [(2, 9)], "validation": [(9, 12)], "test": [(12, 14)]}


def test_fraction_cuts_are_times_of_the_pooled_usable_rows_of_every_symbol() -> None:
    """A: 10 bars at times 0 .. 9 (rows 0 .. 9); B: 6 bars at times 4 .. 9 (rows 10 .. 15); no
    warm-up. The 16 usable times sorted: 0 1 2 3 4 4 5 5 6 6 7 7 8 8 9 9. train 0.5 and
    validation 0.25 cut at pooled index 8 (time 6) and 12 (time 8), shared by both symbols.
    Embargo 1:

    A: train times 0..5 -> rows [0, 6) - 1 = [0, 5); validation 6, 7 -> [6, 8) - 1 = [6, 7);
       test 8, 9 -> [8, 10)
    B: train times 4, 5 -> rows [10, 12) - 1 = [10, 11); validation -> [12, 13); test [14, 16)

    Catches: cut points taken per symbol (A alone would cut at times 5 and 8 - 0.5), from the
    unsorted concatenation of the symbols' times, or from rows including the warm-up.
    """
    ts = T0 + np.r_[np.arange(10), np.arange(4, 10)].astype(np.int64) * STEP
    segs = [Segment("A", 0, 10, 0), Segment("B", 10, 16, 10)]
    s = chronological_split(ts, segs, train=0.5, validation=0.25, embargo=1)
    assert s == {"train": [(0, 5), (10, 11)], "validation": [(6, 7), (12, 13)], "test": [(8, 10), (14, 16)]}


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
def test_walk_forward_with_two_train_blocks(mode: str) -> None:
    """n_folds 2, train_blocks 2: the 12 usable rows in 4 blocks of 3, [2, 5) [5, 8) [8, 11)
    [11, 14). Fold 0 tests on block 2, fold 1 on block 3. Rolling trains on the two blocks just
    before the test block, expanding on every block before it; embargo 1 drops the last
    training row:

    fold 0: train [2, 8) - 1 = [2, 7),  test [8, 11)            (both modes)
    fold 1: rolling [5, 11) - 1 = [5, 10), expanding [2, 10);  test [11, 14)

    Catches: a rolling window of one block whatever ``train_blocks`` (fold 0 [5, 7)), and a
    block count of ``n_folds + 1`` that ignores ``train_blocks``.
    """
    ts, segs = _twelve_usable()
    folds = walk_forward_folds(ts, segs, n_folds=2, mode=mode, train_blocks=2, embargo=1)  # type: ignore[arg-type]
    assert folds == [
        {"train": [(2, 7)], "test": [(8, 11)]},
        {"train": [(5, 10)] if mode == "rolling" else [(2, 10)], "test": [(11, 14)]},
    ]


def test_fold_count_limit_counts_the_train_blocks() -> None:
    """12 usable rows, embargo 2, train_blocks 2: a block needs embargo + 1 = 3 rows, so at most
    12 // 3 - 2 = 2 folds fit (4 blocks of 3). 3 folds (5 blocks of 12 // 5 = 2 rows) are
    refused. With 2 folds and embargo 2: fold 0 trains on [2, 8) - 2 = [2, 6), fold 1 (rolling)
    on [5, 11) - 2 = [5, 9).

    Catches: a fold-count check that divides by ``n_folds + 1`` whatever ``train_blocks`` (12
    // 4 = 3 rows: 3 folds wrongly accepted).
    """
    check_fold_count(2, 12, embargo=2, train_blocks=2)
    with pytest.raises(DataError, match="at most 2 folds fit"):
        check_fold_count(3, 12, embargo=2, train_blocks=2)
    ts, segs = _twelve_usable()
    with pytest.raises(DataError, match="at most 2 folds fit"):
        walk_forward_folds(ts, segs, n_folds=3, mode="rolling", train_blocks=2, embargo=2)
    folds = walk_forward_folds(ts, segs, n_folds=2, mode="rolling", train_blocks=2, embargo=2)
    assert [f["train"] for f in folds] == [[(2, 6)], [(5, 9)]]


def test_a_negative_embargo_is_refused() -> None:
    """An embargo of -1 would not drop rows but add one: train [2, 10) and validation [9, 13)
    would share row 9 (and the validation would overlap the test at row 12).

    Catches: an embargo check that lets a negative value through (``embargo < -1``).
    """
    ts, segs = _twelve_usable()
    with pytest.raises(DataError, match="embargo: must be >= 0"):
        chronological_split(ts, segs, train=0.6, validation=0.2, embargo=-1)


def test_equal_split_dates_are_refused_by_name() -> None:
    """Validation and test starting at the same time would leave an empty validation period;
    the dates themselves are refused, naming them.

    Catches: a date check ``cuts[0] > cuts[1]`` that lets equal dates through.
    """
    with pytest.raises(DataError, match="2023-01-01T00:30 must come before 2023-01-01T00:30"):
        check_split_dates(["2023-01-01T00:30", "2023-01-01T00:30"])
    assert check_split_dates(["2023-01-01T00:30", "2023-01-01T00:35"]) == [T0 + 6 * STEP, T0 + 7 * STEP]


def test_an_unknown_fold_mode_is_refused() -> None:
    """``mode`` is ``expanding`` or ``rolling``; a typo ("roling") must not silently fall back to
    one of them (with ``mode == "expanding"`` as the only test, it would train rolling).

    Catches: a missing mode check.
    """
    ts, segs = _twelve_usable()
    with pytest.raises(DataError, match="fold mode: expected 'expanding' or 'rolling', got 'roling'"):
        walk_forward_folds(ts, segs, n_folds=2, mode="roling", embargo=1)  # type: ignore[arg-type]


def test_a_fold_never_joins_two_symbols_and_embargoes_each() -> None:
    """A: rows 0 .. 5 at times 0 .. 5; B: rows 6 .. 17 at times 3 .. 14; neither has warm-up
    rows, so A's last row (5) touches B's first (6). One fold, embargo 1: the 18 pooled times
    sorted are 0 1 2 3 3 4 4 5 5 6 7 ... 14, cut in two at index 9, time 6.

    train: A's times 0 .. 5 -> [0, 6) - 1 = [0, 5);  B's times 3 .. 5 -> [6, 9) - 1 = [6, 8)
    test:  B's times 6 .. 14 -> [9, 18)

    Catches: joining touching ranges across the symbol boundary before the embargo, which gave
    one range [0, 8) spanning both symbols, with A's last row kept and B's embargo taken off the
    joined range's end only.
    """
    ts = np.array([*range(6), *range(3, 15)], dtype=np.int64) * STEP + T0
    segs = [Segment("A", 0, 6, 0), Segment("B", 6, 18, 6)]
    assert walk_forward_folds(ts, segs, n_folds=1, embargo=1) == [{"train": [(0, 5), (6, 8)], "test": [(9, 18)]}]


def test_walk_forward_refuses_a_negative_embargo() -> None:
    """With an embargo of -1 a fold's training range would reach one row into its test block.

    Catches: walk_forward_folds without the embargo check chronological_split has.
    """
    ts, segs = _twelve_usable()
    with pytest.raises(DataError, match="embargo: must be >= 0"):
        walk_forward_folds(ts, segs, n_folds=2, embargo=-1)
