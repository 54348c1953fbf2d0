"""Chronological splits, embargo, walk-forward folds, train-only normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from himari.data.splits import Segment, chronological_split, rows_of, walk_forward_folds
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
    for far in ("1500-01-01", "3000-01-01"):  # before: a raw OverflowError
        with pytest.raises(DataError, match=far):
            chronological_split(ts, segs, dates=[far, "2023-01-03"] if far < "2" else ["2023-01-03", far])


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


def test_rows_of_concatenates_ranges():
    assert list(rows_of([(0, 2), (5, 7)])) == [0, 1, 5, 6]
    assert rows_of([]).dtype == np.int64 and len(rows_of([])) == 0


def test_zscore_statistics_by_hand():
    """The one standardisation (``zscore``'s): population mean and std per column, a zero std
    becoming 1, fitted on the rows it is given (the train rows) and applied row by row."""
    from himari.data.normalize import apply_zscore, fit_zscore

    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], dtype=np.float32)
    mean, std = fit_zscore(x)
    np.testing.assert_allclose(mean, [3.0, 5.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), 1.0])  # ((-2)^2 + 0 + 2^2) / 3; zero std -> 1
    z = apply_zscore(np.array([[3.0, 6.0], [3.0 + 100 * np.sqrt(8 / 3), 4.0]]), mean, std, clip=10.0)
    np.testing.assert_allclose(z, [[0.0, 1.0], [10.0, -1.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="no rows"):
        fit_zscore(np.zeros((0, 2), np.float32))


@pytest.mark.parametrize(("train", "validation", "name"), [
    (float("nan"), 0.15, "train"), (0.7, float("nan"), "validation"), (float("inf"), 0.1, "train"),
    (0.0, 0.15, "train"), (1.0, 0.1, "train"), (-0.2, 0.1, "train"), (0.7, 0.0, "validation"),
    (0.7, -0.1, "validation"), (0.7, 0.3, "train + validation"), (0.8, 0.25, "train + validation"),
])
def test_split_fractions_must_be_in_the_open_unit_interval_and_leave_a_test_split(train, validation, name):
    ts, segs = _one()
    with pytest.raises(DataError, match=name.replace("+", r"\+")):
        chronological_split(ts, segs, train=train, validation=validation)


def test_every_split_must_be_non_empty_after_the_embargo():
    ts, segs = _one()  # 2023-01-01 .. 2023-01-04 11:15
    with pytest.raises(DataError, match="the test split is empty"):
        chronological_split(ts, segs, dates=["2023-01-03", "2024-01-01"])
    with pytest.raises(DataError, match="the validation split is empty"):
        chronological_split(ts, segs, dates=["2023-01-03", "2023-01-03T00:10"], embargo=6)


def test_fold_count_is_refused_before_any_work_when_blocks_cannot_hold_the_embargo():
    """20k rows with 100,000 folds: before, 391 s and 100,000 mostly empty folds."""
    import time

    ts, segs = _one(20_000, 1440)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"100000 folds .* at most 2650 folds fit \(--folds\)"):
        walk_forward_folds(ts, segs, n_folds=100_000, embargo=6)
    assert time.perf_counter() - t0 < 1.0
    # the documented limit is exact: usable // (embargo + 1) - 1 folds fit, one more does not
    usable = 20_000 - 1440
    most = usable // 7 - 1
    folds = walk_forward_folds(ts, segs, n_folds=most, mode="rolling", embargo=6)
    assert len(folds) == most and all(f["train"] and f["test"] for f in folds)
    with pytest.raises(DataError, match="folds"):
        walk_forward_folds(ts, segs, n_folds=most + 1, embargo=6)
    with pytest.raises(DataError, match="no walk-forward fold fits"):
        walk_forward_folds(*_one(110, 100), n_folds=1, embargo=6)


def test_a_fold_whose_training_range_the_embargo_empties_is_refused():
    """Two symbols over the same 10 bars: a block of 10 rows passes the count check, but each
    symbol has only 5 rows in it, fewer than the embargo, so fold 0 would train on nothing."""
    t = np.arange(10, dtype=np.int64) * STEP
    ts = np.r_[t, t]
    segs = [Segment("A", 0, 10, 0), Segment("B", 10, 20, 10)]
    with pytest.raises(DataError, match="fold 0: the train range is empty"):
        walk_forward_folds(ts, segs, n_folds=1, embargo=6)
    assert walk_forward_folds(ts, segs, n_folds=1, embargo=4)[0]["train"] == [(0, 1), (10, 11)]


@pytest.mark.parametrize(("args", "option"), [
    (["--folds", "100000"], "--folds"),
    (["--train", "nan"], "--train"),
    (["--validation", "nan"], "--validation"),
    (["--train", "0.9", "--validation", "0.1"], "--validation"),
    (["--train", "1.5"], "--train"),
    (["--split-dates", "2023-02-01,2030-01-01"], "test split is empty"),
])
def test_prepare_cli_refuses_bad_splits_before_computing_features(tmp_path, monkeypatch, args, option):
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.data.synthetic import SynthConfig, write_synthetic

    bars = tmp_path / "bars.parquet"
    write_synthetic(bars, SynthConfig(bars=20_000, seed=0))

    def boom(*a, **k):
        raise AssertionError("features computed before the splits were checked")

    monkeypatch.setattr("himari.data.pipeline.compute_features", boom)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = CliRunner().invoke(app, ["data", "prepare", str(bars), "--out", str(tmp_path / "p"), *args])
    assert res.exit_code == 2, res.output
    assert option in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
