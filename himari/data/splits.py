"""Chronological splits and walk-forward folds, with an embargo between every pair of periods.

A split is a list of half-open row ranges ``(start, stop)`` into the prepared arrays; a range
never spans two symbols (segments), and no range starts before its segment's feature warm-up.
Cut points are *times*, shared by all symbols, so "train" means the same calendar period for
BTC and ETH. Before every cut the last ``embargo`` rows of the earlier period are dropped: a
label at row t reads prices up to t + lookahead, so with ``embargo >= lookahead`` no label of an
earlier period sees a price of the later one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from himari.errors import DataError

Ranges = list[tuple[int, int]]
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Segment:
    """One symbol's rows ``[start, stop)`` in the prepared arrays; ``first`` = start + warm-up."""

    symbol: str
    start: int
    stop: int
    first: int


def _usable_times(timestamps: np.ndarray, segments: Sequence[Segment]) -> np.ndarray:
    parts = [timestamps[s.first: s.stop] for s in segments if s.stop > s.first]
    if not parts:
        raise DataError("no rows after the feature warm-up: the data is shorter than the warm-up")
    return np.sort(np.concatenate(parts))


def _cut_by_fraction(times: np.ndarray, fractions: Sequence[float]) -> list[int]:
    """Time cut points (ns) at cumulative row fractions of the usable rows."""
    cuts, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        k = min(len(times) - 1, max(0, int(round(acc * len(times)))))
        cuts.append(int(times[k]))
    return cuts


def _periods(timestamps: np.ndarray, segments: Sequence[Segment], cuts: Sequence[int], embargo: int) -> list[Ranges]:
    """Rows of each period between consecutive cuts, per segment, minus the embargo."""
    out: list[Ranges] = [[] for _ in range(len(cuts) + 1)]
    for s in segments:
        if s.stop <= s.first:
            continue
        ts = timestamps[s.first: s.stop]
        bounds = [0, *(int(np.searchsorted(ts, c, side="left")) for c in cuts), len(ts)]
        for i in range(len(bounds) - 1):
            a, b = bounds[i], bounds[i + 1]
            if i < len(bounds) - 2:
                b = max(a, b - embargo)
            if b > a:
                out[i].append((s.first + a, s.first + b))
    return out


def parse_time(value: str | int | pd.Timestamp) -> int:
    """A date or timestamp (naive = UTC) as int64 ns."""
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"cannot parse {value!r} as a date") from e
    if t is pd.NaT:  # "", "NaT": pandas' missing time, not a date
        raise DataError(f"cannot parse {value!r} as a date")
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    try:
        return int(t.value)
    except (OverflowError, ValueError) as e:  # outside the nanosecond range 1677 .. 2262
        raise DataError(f"date {value!r} is outside the supported range 1677-09-22 .. 2262-04-11") from e


def check_fractions(train: float, validation: float) -> None:
    """Split fractions: ``train`` and ``validation`` finite in (0, 1) with a sum below 1, so
    that the test split (the rest) is not empty either."""
    for name, x in (("train", train), ("validation", validation)):
        try:
            v = float(x)
        except (TypeError, ValueError):
            v = float("nan")
        if not (np.isfinite(v) and 0.0 < v < 1.0):
            raise DataError(f"split fraction {name} (--{name}): must be a number in (0, 1), got {x!r}")
    if float(train) + float(validation) >= 1.0:
        raise DataError(f"split fractions: train + validation must be below 1 (the test split gets the rest), "
                        f"got --train {train} + --validation {validation} = {float(train) + float(validation):g}")


def check_fold_count(n_folds: int, usable_rows: int, *, embargo: int, train_blocks: int = 1,
                     option: str = "--folds") -> None:
    """Refuse a fold count whose blocks could not hold more than the embargo.

    The usable rows are cut into ``n_folds + train_blocks`` blocks; a fold trains on whole
    blocks minus the ``embargo`` rows before its test block, so every block needs at least
    ``embargo + 1`` rows for every fold's training and test ranges to be non-empty. Only
    arithmetic: this runs before anything is computed. ``option`` names the fold count's option
    in the message (``--folds`` of ``data prepare``, ``--walk-forward`` of ``evaluate``).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 1 or train_blocks < 1:
        raise DataError(f"folds: need n_folds >= 1 and train_blocks >= 1, got {n_folds!r}, {train_blocks!r}")
    per_block = usable_rows // (n_folds + train_blocks)
    if per_block < embargo + 1:
        most = usable_rows // (embargo + 1) - train_blocks
        limit = f"at most {most} folds fit" if most >= 1 else "no walk-forward fold fits"
        raise DataError(f"folds: {n_folds} folds cut the {usable_rows:,} rows after the warm-up into blocks of "
                        f"about {per_block:,} rows, but each block needs at least the embargo + 1 = {embargo + 1} "
                        f"rows; {limit} ({option})")


def check_split_dates(dates: Sequence[str]) -> list[int]:
    """Two dates, validation start before test start; returns them as int64 ns cut points."""
    if len(dates) != 2:
        raise DataError(f"split dates: expected two dates (validation start, test start), got {list(dates)}")
    cuts = [parse_time(d) for d in dates]
    if cuts[0] >= cuts[1]:
        raise DataError(f"split dates: {dates[0]} must come before {dates[1]}")
    return cuts


def chronological_split(timestamps: np.ndarray, segments: Sequence[Segment], *, train: float = 0.7,
                        validation: float = 0.15, dates: Sequence[str] | None = None,
                        embargo: int = 0) -> dict[str, Ranges]:
    """Train / validation / test by row fractions (test = the rest) or by two cut dates."""
    if embargo < 0:
        raise DataError(f"embargo: must be >= 0, got {embargo}")
    if dates is not None:
        cuts = check_split_dates(dates)
    else:
        check_fractions(train, validation)
        cuts = _cut_by_fraction(_usable_times(timestamps, segments), [train, validation, 1.0 - train - validation])
    periods = _periods(timestamps, segments, cuts, embargo)
    result = dict(zip(SPLIT_NAMES, periods, strict=True))
    for name in SPLIT_NAMES:
        if not result[name]:
            raise DataError(f"the {name} split is empty after the embargo of {embargo} rows "
                            "(check the fractions or dates against the data's span and length)")
    return result


def walk_forward_folds(timestamps: np.ndarray, segments: Sequence[Segment], *, n_folds: int = 5,
                       mode: Literal["expanding", "rolling"] = "expanding", train_blocks: int = 1,
                       embargo: int = 0, option: str = "--folds") -> list[dict[str, Ranges]]:
    """Walk-forward folds: the usable period in ``n_folds + train_blocks`` equal blocks.

    Fold i tests on block ``train_blocks + i``; it trains on every block before it
    (``expanding``) or on the ``train_blocks`` blocks just before it (``rolling``). The embargo
    is dropped from the end of each fold's training rows. Every fold's training and test ranges
    must be non-empty (``check_fold_count`` refuses hopeless counts before any work).
    """
    if mode not in ("expanding", "rolling"):
        raise DataError(f"fold mode: expected 'expanding' or 'rolling', got {mode!r}")
    if embargo < 0:
        raise DataError(f"embargo: must be >= 0, got {embargo}")
    times = _usable_times(timestamps, segments)
    check_fold_count(n_folds, len(times), embargo=embargo, train_blocks=train_blocks, option=option)
    k = n_folds + train_blocks
    cuts = _cut_by_fraction(times, [1.0 / k] * k)
    blocks = _periods(timestamps, segments, cuts, 0)
    folds = []
    for i in range(n_folds):
        test_block = train_blocks + i
        first = 0 if mode == "expanding" else test_block - train_blocks
        train: Ranges = _merge([r for b in blocks[first:test_block] for r in b], segments)
        train = _drop_tail(train, embargo, segments)
        test = list(blocks[test_block])
        for name, ranges in (("train", train), ("test", test)):
            if not ranges:
                raise DataError(f"fold {i}: the {name} range is empty after the embargo of {embargo} rows; "
                                "use fewer folds (--folds)")
        folds.append({"train": train, "test": test})
    return folds


def _merge(ranges: Ranges, segments: Sequence[Segment]) -> Ranges:
    """Join touching ranges of one segment (its adjacent blocks). Ranges of two segments stay
    apart even where one symbol's rows end on the row the next symbol's begin (a symbol without
    warm-up rows): a range never spans two symbols, and the embargo comes off each one's end."""
    starts = {s.start for s in segments}
    out: Ranges = []
    for a, b in sorted(ranges):
        if out and out[-1][1] == a and a not in starts:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _drop_tail(ranges: Ranges, embargo: int, segments: Sequence[Segment]) -> Ranges:
    """Drop ``embargo`` rows from the end of the last range of each segment."""
    out: Ranges = []
    for s in segments:
        mine = [r for r in ranges if s.start <= r[0] < s.stop]
        if mine:
            a, b = mine[-1]
            mine[-1] = (a, max(a, b - embargo))
            out.extend(r for r in mine if r[1] > r[0])
    return out


SELECTIONS = (*SPLIT_NAMES, "all")
"""What a scoring command's ``--split`` takes: a split of the prepared data, or ``all`` of it."""


def usable_ranges(segments: Sequence[Segment]) -> Ranges:
    """Every row after the feature warm-up: one range per segment, ``[first, stop)``."""
    return [(s.first, s.stop) for s in segments if s.stop > s.first]


def time_window(start: str | int | pd.Timestamp | None = None,
                end: str | int | pd.Timestamp | None = None) -> tuple[int | None, int | None]:
    """``--from`` / ``--to`` as int64 ns (naive = UTC; None: open); refuses an unparseable date
    and ``start >= end`` with a ``DataError`` naming the option."""
    bounds: list[int | None] = []
    for option, value in (("--from", start), ("--to", end)):
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_time(value))
        except DataError as e:
            raise DataError(f"{option} {value}: {e}") from None
    lo, hi = bounds
    if lo is not None and hi is not None and lo >= hi:
        raise DataError(f"--from {start} must come before --to {end} (--to is exclusive)")
    return lo, hi


def select_ranges(timestamps: np.ndarray, segments: Sequence[Segment], base: Ranges | None = None, *,
                  start: str | int | pd.Timestamp | None = None,
                  end: str | int | pd.Timestamp | None = None) -> Ranges:
    """The rows a scoring command trades: those of ``base`` (a split's ranges; None: every
    usable row, ``usable_ranges``) whose bar opened at or after ``start`` and before ``end``
    (UTC dates or times; None: open-ended).

    Every range stays within one contiguous block of ``base`` (one symbol), so each is traded
    from a flat account on its own. A block left with fewer than two bars is dropped: a trade
    needs a decision at one bar's close and a fill at the next bar's open. The result may be
    empty; callers refuse that with the data's span in the message (``PreparedData.select``).
    """
    lo, hi = time_window(start, end)
    out: Ranges = []
    for a, b in (usable_ranges(segments) if base is None else base):
        ts = timestamps[a:b]
        i = 0 if lo is None else int(np.searchsorted(ts, lo, side="left"))
        j = len(ts) if hi is None else int(np.searchsorted(ts, hi, side="left"))
        if j - i >= 2:
            out.append((a + i, a + j))
    return out


def rows_of(ranges: Ranges) -> np.ndarray:
    """All row indices of a list of ranges."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])
