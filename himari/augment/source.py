"""What a generator is fitted on: the train split's rows of a prepared data set, and nothing else.

``generator_data`` builds the ``GeneratorData`` a generator's ``fit`` gets from the same train
view the preprocessors are fitted on (``himari.training.preprocess.fit_view``): the train ranges
cut at gaps and symbols, so the validation and test rows are never read.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from himari.errors import DataError
from himari.plugin.api import GeneratorData


def resolve_channels(requested: str | list[str] | tuple[str, ...] | None, default: tuple[str, ...],
                     available: list[str]) -> tuple[str, ...]:
    """The channels a generator fits: ``--features a,b,c``, ``all`` (every prepared feature), or
    the generator's default (every feature when its default is empty). Unknown names are a
    ``DataError`` naming ``--features`` and the closest feature names."""
    if requested is None or requested == ():
        names: list[str] = list(default) if default else list(available)
    elif isinstance(requested, str):
        names = list(available) if requested.strip() == "all" else [n.strip() for n in requested.split(",") if n.strip()]
    else:
        names = list(requested)
    if not names:
        raise DataError("--features: name at least one prepared feature (or 'all')")
    for n in names:
        if n not in available:
            close = difflib.get_close_matches(n, available, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise DataError(f"--features: {n!r} is not a feature of this data set{hint} "
                            f"(himari data info DIR lists them)")
    if len(set(names)) != len(names):
        raise DataError(f"--features: a feature is named twice ({', '.join(names)})")
    return tuple(names)


def generator_data(data: Any, channels: tuple[str, ...], *, splits: dict[str, list[tuple[int, int]]] | None = None,
                   seed: int = 0, device: str = "cpu") -> GeneratorData:
    """The train rows of ``data`` (its own train split, or ``splits["train"]``) as a generator's
    fit input: the chosen channels, labels, bars, segments; NaN or inf in a channel is refused."""
    from himari.training.preprocess import fit_view

    names = list(data.feature_names)
    splits = splits or {"train": data.split("train")}
    view = fit_view(data, np.asarray(data.features), tuple(names), splits, seed)
    if len(view.rows) == 0:
        raise DataError(f"{data.path}: the train split has no rows to fit a generator on")
    index = [names.index(c) for c in channels]
    x = np.ascontiguousarray(view.features[:, index], dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        col = channels[int(np.flatnonzero(bad.any(axis=0))[0])]
        raise DataError(f"{data.path}: feature {col!r} holds NaN or inf in the train split; choose other --features")
    labels = np.asarray(data.labels)[view.rows].astype(np.int8)
    return GeneratorData(features=x, feature_names=tuple(channels), labels=labels, bars=view.bars, rows=view.rows,
                         segments=view.segments, interval_seconds=view.interval_seconds, seed=seed, device=device)


def train_ranges(gd: GeneratorData) -> list[list[int]]:
    """The prepared-row ranges ``[start, stop)`` a generator was fitted on (one per segment)."""
    return [[int(gd.rows[a]), int(gd.rows[b - 1]) + 1] for a, b in gd.segments if b > a]
