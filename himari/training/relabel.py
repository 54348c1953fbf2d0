"""A run's own labels: the run config's ``labels:`` section relabels the prepared bars at train time.

Labels are a modelling choice as much as a data one: a classifier trained to call 25-minute moves
of 0.2% trades far too often to pay a round-trip cost of 0.3%. A run (or a model's default recipe)
can therefore name its labeler and parameters, ``labels: {name: forward-return, horizon: 48,
threshold: 0.006}``, and the Trainer recomputes labels and targets from the prepared open, high,
low and close with the same registered labelers ``himari data prepare`` uses, symbol by symbol.

No look-ahead across a split: a label at row t reads prices up to ``t + lookahead``. The prepared
data's embargo only covers its own labeler's lookahead, so every row whose label would read past
the end of its own split range (train, validation or test, a walk-forward fold's ranges included)
is left unlabelled (``-1``): those rows are not trained or validated on, whatever the embargo.
Nothing is written; the prepared directory is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from himari.errors import ConfigError, DataError

Ranges = list[tuple[int, int]]


def check_labels_section(section: Any) -> dict[str, Any] | None:
    """The ``labels:`` section with the labeler's defaults filled in, or None (the data's labels).
    An unknown labeler or parameter, or a value out of range, is a ``ConfigError``."""
    from himari.data.labels import check_label_params

    if section is None:
        return None
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise ConfigError(f"labels: expected a mapping with the labeler's name and parameters, such as "
                          f"{{name: forward-return, horizon: 48, threshold: 0.006}}, got {section!r}")
    params = {k: v for k, v in section.items() if k != "name"}
    try:
        return {"name": section["name"], **check_label_params(section["name"], params)}
    except DataError as e:
        raise ConfigError(f"labels: {e}") from None


def relabelled(data: Any, section: Mapping[str, Any], splits: Mapping[str, Ranges]) -> Any:
    """A view of the prepared ``data`` whose labels, targets and labeler metadata come from
    ``section`` (checked by ``check_labels_section``), with the rows whose label reads past the
    end of their split range unlabelled (module docstring)."""
    from himari.data.labels import make_labels
    from himari.training.counterfactual import with_arrays

    name = section["name"]
    params = {k: v for k, v in section.items() if k != "name"}
    n = len(data.close)
    labels = np.full(n, -1, dtype=np.int8)
    targets = np.full(n, np.nan, dtype=np.float32)
    lookahead = 0
    for seg in data.segments:
        s = slice(seg.start, seg.stop)
        result = make_labels(name, np.asarray(data.open[s]), np.asarray(data.high[s]), np.asarray(data.low[s]),
                             np.asarray(data.close[s]), **params)
        labels[s], targets[s] = result.labels, result.target
        lookahead = int(result.lookahead)
    for ranges in splits.values():
        for a, b in ranges:
            labels[max(a, b - lookahead):b] = -1
    view = with_arrays(data, labels=labels, targets=targets)
    view.metadata = {**data.metadata, "labeler": {"name": name, "params": params, "lookahead": lookahead},
                     "relabelled": True}
    return view
