"""The train / validation / test row ranges an evaluation retrains a model on.

- **Walk-forward** (``walk_forward``): the usable period in ``n + 1`` equal time blocks; fold i
  tests on block i + 1 and trains on the blocks before it (``expanding``) or the one just before
  (``rolling``), with the embargo dropped from the end of its training rows
  (``himari.data.splits.walk_forward_folds``, the folds ``himari data prepare --folds`` writes).
- **Combinatorial purged cross-validation** (``cpcv``; Lopez de Prado, *Advances in Financial
  Machine Learning*, ch. 12): the usable period in ``n_groups`` equal time blocks; each split
  tests on ``n_test_groups`` of them and trains on the rest, **purged** (the ``embargo`` rows of a
  training block just before a test block are dropped: their labels look into it) and
  **embargoed** (the ``embargo`` rows just after a test block are dropped too: serial
  correlation). The ``C(n, k)`` splits' test blocks assemble into ``C(n - 1, k - 1)`` paths, each
  covering the whole period once, so a model gives a distribution of out-of-sample Sharpe
  ratios instead of one number.

Each fold's training rows lose their last ``validation_fraction`` (in time, over every symbol)
to a validation block, with an embargo between the two, so the Trainer picks ``best.pt`` on data
it neither trained on nor will be tested on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from himari.data.splits import Ranges, walk_forward_folds
from himari.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One retraining of the model: its row ranges and what it is."""

    name: str
    """``fold-3`` (walk-forward) or ``cpcv-7`` (a combinatorial split)."""
    train: Ranges
    validation: Ranges
    test: Ranges
    test_groups: tuple[int, ...] = ()
    """CPCV: the groups tested; each is its own list in ``group_tests`` (traded from flat)."""
    group_tests: tuple[Ranges, ...] = field(default_factory=tuple)

    def splits(self) -> dict[str, list[list[int]]]:
        """The ``splits:`` section of the fold's run config."""
        return {"train": [list(r) for r in self.train], "validation": [list(r) for r in self.validation],
                "test": [list(r) for r in self.test]}


def _rows(ranges: Ranges) -> int:
    return sum(b - a for a, b in ranges)


def carve_validation(train: Ranges, timestamps: np.ndarray, fraction: float, embargo: int) -> tuple[Ranges, Ranges]:
    """Split training ranges at the time their last ``fraction`` of rows begins: rows before the
    cut (less ``embargo`` rows) train, rows from it validate."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction: expected a value in (0, 1), got {fraction}")
    times = np.sort(np.concatenate([timestamps[a:b] for a, b in train]))
    cut_time = times[min(len(times) - 1, int(len(times) * (1 - fraction)))]
    fit, val = [], []
    for a, b in train:
        cut = a + int(np.searchsorted(timestamps[a:b], cut_time, side="left"))
        end = cut - embargo if cut < b else b  # the embargo separates the two only where they meet
        if end > a:
            fit.append((a, end))
        if b > cut:
            val.append((cut, b))
    return fit, val


def _check(fold: Fold, min_rows: int) -> None:
    for part in ("train", "validation", "test"):
        n = _rows(getattr(fold, part))
        if n < min_rows:
            raise ConfigError(f"{fold.name}: its {part} block has {n} rows, fewer than the {min_rows} a fold needs; "
                              f"use fewer folds or groups, a smaller validation fraction or more data")


def walk_forward(data: Any, n_folds: int, *, mode: str = "expanding", embargo: int,
                 validation_fraction: float = 0.2, min_rows: int = 200) -> list[Fold]:
    """``n_folds`` walk-forward folds of the prepared ``data`` (module docstring)."""
    if n_folds < 1:
        raise ConfigError(f"--walk-forward: expected at least 1 fold, got {n_folds}")
    ts = np.asarray(data.timestamps, dtype=np.int64)
    folds = []
    for i, f in enumerate(walk_forward_folds(ts, data.segments, n_folds=n_folds, mode=mode, embargo=embargo,
                                             option="--walk-forward")):
        fit, val = carve_validation(f["train"], ts, validation_fraction, embargo)
        fold = Fold(f"fold-{i}", fit, val, list(f["test"]))
        _check(fold, min_rows)
        folds.append(fold)
    tests = sorted(r for f in folds for r in f.test)
    if any(b[0] < a[1] for a, b in zip(tests, tests[1:])):
        raise ConfigError("walk-forward: test blocks overlap")
    return folds


def _groups(data: Any, n_groups: int) -> list[Ranges]:
    """The usable rows of every symbol in ``n_groups`` equal time blocks."""
    ts = np.asarray(data.timestamps, dtype=np.int64)
    usable = np.sort(np.concatenate([ts[s.first:s.stop] for s in data.segments if s.stop > s.first]))
    cuts = [usable[min(len(usable) - 1, round(len(usable) * k / n_groups))] for k in range(1, n_groups)]
    groups: list[Ranges] = [[] for _ in range(n_groups)]
    for s in data.segments:
        if s.stop <= s.first:
            continue
        bounds = [s.first, *(s.first + int(np.searchsorted(ts[s.first:s.stop], c)) for c in cuts), s.stop]
        for g in range(n_groups):
            if bounds[g + 1] > bounds[g]:
                groups[g].append((bounds[g], bounds[g + 1]))
    return groups


def cpcv(data: Any, n_groups: int, n_test_groups: int, *, embargo: int, validation_fraction: float = 0.2,
         min_rows: int = 200) -> tuple[list[Fold], list[list[tuple[int, int]]]]:
    """The combinatorial purged splits of ``data`` and their paths: path j is a list of
    ``(group, split index)``, one per group in time order (module docstring)."""
    if not (2 <= n_groups and 1 <= n_test_groups < n_groups):
        raise ConfigError(f"--cpcv {n_groups},{n_test_groups}: expected N >= 2 groups and 1 <= k < N test groups")
    if math.comb(n_groups, n_test_groups) > 200:
        raise ConfigError(f"--cpcv {n_groups},{n_test_groups}: {math.comb(n_groups, n_test_groups)} splits to train; "
                          "use fewer groups")
    ts = np.asarray(data.timestamps, dtype=np.int64)
    groups = _groups(data, n_groups)
    folds = []
    for i, test in enumerate(combinations(range(n_groups), n_test_groups)):
        train: Ranges = []
        for g in range(n_groups):
            if g in test:
                continue
            for a, b in groups[g]:
                if g + 1 in test:  # purge: these rows' labels look into the next (test) block
                    b -= embargo
                if g - 1 in test:  # embargo after a test block
                    a += embargo
                if b > a:
                    train.append((a, b))
        fit, val = carve_validation(sorted(train), ts, validation_fraction, embargo)
        group_tests = tuple(list(groups[g]) for g in test)
        fold = Fold(f"cpcv-{i}", fit, val, sorted(r for gt in group_tests for r in gt), tuple(test), group_tests)
        _check(fold, min_rows)
        folds.append(fold)
    n_paths = math.comb(n_groups - 1, n_test_groups - 1)
    paths: list[list[tuple[int, int]]] = [[] for _ in range(n_paths)]
    for g in range(n_groups):
        testing = [i for i, f in enumerate(folds) if g in f.test_groups]
        for j, i in enumerate(testing):
            paths[j].append((g, i))
    return folds, paths
