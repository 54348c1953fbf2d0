"""Chronological splits, embargo, walk-forward folds, train-only normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from himari.data.splits import Segment, chronological_split, fit_normalization, rows_of, walk_forward_folds
from himari.errors import DataError

STEP = 300 * 10**9


def _one(n=1000, warmup=100):
    ts = np.arange(n, dtype=np.int64) * STEP + 1_672_531_200 * 10**9
    return ts, [Segment("A", 0, n, warmup)]


def test_fraction_split_with_embargo():
    ts, segs = _one()
    s = chronological_split(ts, segs, train=0.7, validation=0.15, embargo=6)
    (a0, b0), = s["train"]
    (a1, b1), = s["validation"]
    (a2, b2), = s["test"]
    assert a0 == 100 and b2 == 1000
    assert a1 - b0 == 6 and a2 - b1 == 6  # embargo rows dropped before each boundary
    assert a1 == 100 + round(0.7 * 900) and a2 == 100 + round(0.85 * 900)


def test_date_split_and_errors():
    ts, segs = _one()
    s = chronological_split(ts, segs, dates=["2023-01-03", "2023-01-03T12:00"], embargo=2)
    assert ts[s["validation"][0][0]] >= np.datetime64("2023-01-03").astype("datetime64[ns]").astype(np.int64)
    assert ts[s["train"][0][1] - 1] < ts[s["validation"][0][0]]
    with pytest.raises(DataError):
        chronological_split(ts, segs, dates=["2023-01-04", "2023-01-03"])
    with pytest.raises(DataError):
        chronological_split(ts, segs, train=0.9, validation=0.2)
    with pytest.raises(DataError):
        chronological_split(ts, segs, dates=["not a date", "2023-01-03"])


def test_multi_symbol_split_shares_cut_times():
    n = 600
    ts1 = np.arange(n, dtype=np.int64) * STEP
    ts = np.r_[ts1, ts1]
    segs = [Segment("A", 0, n, 50), Segment("B", n, 2 * n, n + 50)]
    s = chronological_split(ts, segs, train=0.5, validation=0.25, embargo=3)
    assert len(s["train"]) == 2 and len(s["test"]) == 2
    for name, ranges in s.items():
        for a, b in ranges:
            assert (a < n) == (b <= n), "a range spans two symbols"
    assert ts[s["validation"][0][0]] == ts[s["validation"][1][0]]


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_walk_forward_folds(mode):
    ts, segs = _one(1100, 100)
    folds = walk_forward_folds(ts, segs, n_folds=4, mode=mode, embargo=5)
    assert len(folds) == 4
    for i, f in enumerate(folds):
        (ta, tb), = f["train"]
        (sa, sb), = f["test"]
        assert sa - tb == 5  # embargo before the test block
        assert sb - sa == 200
        assert ta == (100 if mode == "expanding" else 100 + 200 * i)
    assert folds[-1]["test"][0][1] == 1100


def test_normalization_uses_train_rows_only():
    x = np.zeros((100, 2), dtype=np.float32)
    x[:50] = [1.0, 5.0]
    x[50:] = 1000.0
    mean, std = fit_normalization(x, [(10, 50)])
    np.testing.assert_array_equal(mean, [1.0, 5.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])  # zero std -> 1
    assert list(rows_of([(0, 2), (5, 7)])) == [0, 1, 5, 6]
