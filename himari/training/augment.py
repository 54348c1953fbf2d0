"""``himari train --augment SET``: the synthetic set's rows as extra train rows of a run.

The set is checked against the run before anything is trained (``SyntheticSet.check_source`` and
``check_ranges``): made from this prepared data, by a generator fitted on rows that the run's
validation and test ranges (with the labels' look-ahead, or the data's embargo where longer) do
not touch. Its rows then go through the run's preprocessors with the states fitted on the real
train rows (never refitted), each window a segment of its own: the synthetic rows have no bars
(NaN prices, prepared row -1), so a preprocessor that reads bars fails here with its name, and
one that reads the rows before each row is refused (``_require_row_by_row``). Rows without a
label are dropped. The model adds the result to its train split only (``TrainContext.synthetic``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from himari.data.synthetic_set import SyntheticSet
from himari.errors import ConfigError
from himari.plugin.api import Bars, PreprocessData, SyntheticRows

AUGMENT_JSON = "augment.json"
"""The run's record of the set it trained on (path, content hash, generator, rows)."""


def check_model_augments(model: str, spec: Any, plugins: Any) -> None:
    """Refuse ``--augment`` for a model that does not add synthetic rows to its train split."""
    if not getattr(spec, "augment", False):
        able = [n for n in plugins.models().names() if getattr(plugins.models().get(n), "augment", False)]
        raise ConfigError(f"augment: model {model!r} ({spec.paradigm}) does not train on synthetic rows; "
                          f"--augment works with {', '.join(able) or 'no installed model'}")


def transform_rows(x: np.ndarray, window: int, states: list[dict[str, Any]], configs: dict[str, Any],
                   plugins: Any, names: tuple[str, ...], seed: int, interval_seconds: int, source: Path) -> np.ndarray:
    """``x`` (rows of consecutive windows) through the run's fitted preprocessors."""
    n = len(x)
    segments = tuple((a, a + window) for a in range(0, n, window))
    nan = np.full(n, np.nan)
    bars = Bars(open=nan, high=nan, low=nan, close=nan, volume=nan, timestamps=np.full(n, -1, dtype=np.int64))
    out, columns = np.ascontiguousarray(x, dtype=np.float32), names
    for entry in states:
        name = entry["name"]
        pre = plugins.preprocessors().get(name).factory(configs[name])
        pre.load_state_dict(entry["state"])
        new = _transform(pre, name, _view(out, columns, bars, segments, interval_seconds, seed), source)
        if new.shape[0] != n or not np.isfinite(new).all():
            raise ConfigError(f"preprocessor {name!r} gave non-finite values or a wrong shape {new.shape} for the "
                              f"synthetic rows of {source} (it reads bars, which synthetic rows do not have); "
                              f"--augment works with preprocessors that read the features only")
        # the same rows cut otherwise: each row alone (windows of several rows), or all joined
        # into one run (one-row windows); a transform of each row on its own gives them alike
        other = tuple((i, i + 1) for i in range(n)) if window > 1 else ((0, n),)
        if other != segments:
            _require_row_by_row(name, new, _transform(pre, name, _view(out, columns, bars, other, interval_seconds,
                                                                       seed), source), source)
        out = np.ascontiguousarray(new)
        columns = tuple(entry.get("columns") or columns)
    return out


def _view(features: np.ndarray, names: tuple[str, ...], bars: Bars, runs: tuple[tuple[int, int], ...],
          interval_seconds: int, seed: int) -> PreprocessData:
    """Synthetic rows as a preprocessor sees them: every run a train range, no prepared row."""
    return PreprocessData(features=features, feature_names=names, bars=bars,
                          rows=np.full(len(features), -1, dtype=np.int64), segments=runs, splits={"train": runs},
                          interval_seconds=interval_seconds, seed=seed)


def _transform(pre: Any, name: str, view: PreprocessData, source: Path) -> np.ndarray:
    """The preprocessor's output on ``view``; whatever it raises on rows without bars is refused
    naming it."""
    try:
        return np.asarray(pre.transform(view), dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - whatever the plugin raises on rows without bars
        raise ConfigError(f"preprocessor {name!r} cannot transform the synthetic rows of {source} "
                          f"({type(e).__name__}: {e}); --augment works with preprocessors that read "
                          f"the features only") from None


def _require_row_by_row(name: str, as_given: np.ndarray, cut_otherwise: np.ndarray, source: Path) -> None:
    """Refuse a preprocessor whose output at a row reads the rows before it (``fan``,
    ``conversational-ae``): a synthetic window has no history, so its first rows (every row of a
    one-row set) would come out unlike any real row, silently (a set of distinct rows became
    one repeated input with varied labels). Found by transforming the rows cut into runs two
    ways: a row-by-row transform gives the same rows both ways."""
    if as_given.shape == cut_otherwise.shape and np.allclose(as_given, cut_otherwise, rtol=1e-5, atol=1e-6):
        return
    raise ConfigError(f"preprocessor {name!r} reads the rows before each row (its output on the synthetic rows "
                      f"of {source} changed when they were cut into runs another way), and a synthetic "
                      f"window has no history before it; --augment works with preprocessors that transform "
                      f"each row on its own (such as zscore): train without {name!r} or without --augment")


def synthetic_rows(path: str | Path, data: Any, splits: dict[str, list[tuple[int, int]]],
                   states: list[dict[str, Any]], configs: dict[str, Any], plugins: Any,
                   seed: int) -> tuple[SyntheticRows, dict[str, Any]]:
    """The checked, preprocessed rows of the set at ``path`` and the record the run keeps."""
    s = SyntheticSet(path)
    s.check_source(data)
    s.check_ranges(splits, where=f"this run ({data.path})", embargo=int(data.metadata.get("embargo") or 0))
    x, y = s.rows(list(data.feature_names))
    x = transform_rows(x, s.window, states, configs, plugins, tuple(data.feature_names), seed,
                       int(data.metadata.get("interval_seconds", 0)), s.path)
    keep = y >= 0
    rows = SyntheticRows(features=np.ascontiguousarray(x[keep]), labels=y[keep], source=str(s.path),
                         generator=s.generator)
    record = {"path": str(s.path.resolve()), "set_id": s.set_id, "generator": s.generator,
              "config": s.metadata["generator"].get("config"), "seed": s.metadata.get("seed"),
              "rows": int(keep.sum()), "train_span": s.metadata["source"].get("train_span")}
    return rows, record


def check_resumed_set(run_dir: Path, record: dict[str, Any]) -> None:
    """A resumed run must train on the very set it started with."""
    path = run_dir / AUGMENT_JSON
    if not path.exists():
        return
    from himari.training.rundir import read_json

    saved = read_json(path, "record of the run's synthetic set")
    if not isinstance(saved, dict) or saved.get("set_id") != record["set_id"]:
        raise ConfigError(f"{record['path']}: the synthetic set changed since this run started ({path} records "
                          f"another content); resume needs the same set")
