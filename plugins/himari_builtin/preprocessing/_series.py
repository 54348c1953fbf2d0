"""What the built-in preprocessors that read a series over time share: where they restart, and
refusing input they cannot use (non-finite values, a state fitted on other features).

Where a filter or a trailing window restarts (``restart_pieces``): at each of ``data.segments``
(a missing bar or another symbol breaks the series) and at the first row of each train range.
The second cut is what "fitted on the train split only" needs from a causal filter: the train
rows' outputs then come from train bars alone (the rows before the train split, the feature
warm-up of the prepared data, never reach them), exactly as ``fit``, which sees the train rows
only, computes them. Rows after a train range (validation, test) continue from the rows before
them, as a filter running live would; that reads only the past, so it stays causal.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def restart_pieces(data: Any) -> list[tuple[int, int]]:
    """``data.segments`` cut at the first row of every train range: ``[a, b)`` runs over which a
    filter or window runs without restarting (positions among ``data``'s rows)."""
    starts = sorted({int(a) for a, _ in data.splits.get("train", ())})
    out: list[tuple[int, int]] = []
    for a, b in data.segments:
        cuts = [int(a), *(s for s in starts if a < s < b), int(b)]
        out.extend((x, y) for x, y in zip(cuts[:-1], cuts[1:]) if y > x)
    return out


def require_finite(method: str, values: np.ndarray, data: Any, what: str) -> None:
    """Refuse NaN or infinite ``values`` (``[n]`` or ``[n, F]``, rows of ``data``), naming the
    method, the prepared row and, for features, the column."""
    from himari.plugin.api import DataError

    bad = ~np.isfinite(values)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
    row = int(data.rows[i]) if len(data.rows) > i else i
    if values.ndim == 2:
        j = int(np.flatnonzero(bad[i])[0])
        name = data.feature_names[j] if j < len(data.feature_names) else f"column {j}"
        raise DataError(f"{method}: {what} {name!r} is {values[i, j]} at prepared row {row} "
                        f"({int(bad.sum())} non-finite values); it needs finite input")
    raise DataError(f"{method}: {what} is {values[i]} at prepared row {row} "
                    f"({int(bad.sum())} non-finite values); it needs finite input")


def require_width(method: str, fitted: int | None, data: Any) -> None:
    """Refuse data whose number of input features differs from the one the state was fitted on."""
    from himari.plugin.api import ConfigError

    if fitted is None:
        raise RuntimeError(f"{method}: transform before fit")
    got = int(data.features.shape[1])
    if got != fitted:
        raise ConfigError(f"{method}: its state was fitted on {fitted} input features, the data has {got} "
                          f"(a state from another feature set or preprocessing chain)")


__all__ = ["require_finite", "require_width", "restart_pieces"]
