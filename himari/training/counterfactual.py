"""Counterfactual price paths: train on bars that did not happen, with features and labels that
could have been computed from them.

A training method that changes the market itself (a block bootstrap of the train period's
returns, a synthetic crash) must not change the features directly: a feature computed from a
modified row would still carry the real path's rolling windows and filters, and a label would
still read the real future. These helpers instead replace the OHLCV bars of some row ranges and
recompute everything from the modified bars with the pipeline ``himari data prepare`` runs:

1. ``counterfactual_data(data, paths)``: a view of the prepared data with the bars of each
   ``[a, b)`` range replaced; the 60 features of every replaced row recomputed by
   ``compute_features`` over its symbol's series from the segment start (bars before ``a`` are the
   real ones: the counterfactual branches off at ``a``), sanitised as ``prepare`` does; labels
   and targets by the data set's own labeler and parameters. Rows outside the ranges keep their
   prepared values, bit for bit. The last ``lookahead`` rows of a range whose final close differs
   from the real one get no label (-1, target NaN): their future would join the counterfactual
   path to the real bars after it, with a jump that never happened.
2. ``counterfactual_context(ctx, paths)``: that view pushed through the run's fitted
   preprocessors (``ctx.preprocess``) and returned as a copy of the ``TrainContext`` whose
   features and labels differ only at the replaced rows; ``ctx.build_dataset(new_ctx, "train")``
   then builds the model's train data from it (the model's ``dataset`` and every method's
   ``dataset`` hook, as the Trainer does: offline-RL rewards come from the modified prices).
3. ``counterfactual_env_source(source, ctx)``: an online-RL env source with the replaced rows'
   prices and features.

``CounterfactualMethod`` puts the three together for a training method that draws new paths
every epoch from a generator seeded by (run seed, method stream, epoch), so a resumed run draws
what an uninterrupted one did.

Bars are handled as log offsets from the previous close (``bar_offsets``: open, high, low and
close of each bar), which a resampling or a synthetic event can move around and rescale and
``bars_from_offsets`` turns back into consistent bars (high >= open, close >= low).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from himari.errors import DataError

BAR_FIELDS = ("open", "high", "low", "close", "volume")
Path = Mapping[str, np.ndarray]
"""One range's replacement bars: ``open``, ``high``, ``low``, ``close``, ``volume`` (float64 ``[b - a]``)."""


# ------------------------------------------------------------------------ bars as offsets


def bar_offsets(open: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray,
                prev_close: float) -> np.ndarray:
    """``[n, 4]`` log offsets of each bar's open, high, low and close from the previous bar's
    close (``prev_close`` before the first): column 3 is the close-to-close log return."""
    c = np.asarray(close, dtype=np.float64)
    prev = np.log(np.r_[float(prev_close), c[:-1]])
    return np.stack([np.log(np.asarray(x, dtype=np.float64)) - prev for x in (open, high, low, close)], axis=1)


def bars_from_offsets(offsets: np.ndarray, prev_close: float) -> dict[str, np.ndarray]:
    """Bars from log offsets (``bar_offsets``' inverse): closes chain from ``prev_close``; each
    bar's high and low are widened to cover its open and close, so any offsets give valid bars."""
    off = np.asarray(offsets, dtype=np.float64)
    chain = np.cumsum(np.r_[np.log(float(prev_close)), off[:, 3]])  # chain[t + 1] = chain[t] + offset, exactly
    prev = chain[:-1]
    o, c = off[:, 0], off[:, 3]
    h = np.maximum(off[:, 1], np.maximum(o, c))
    lo = np.minimum(off[:, 2], np.minimum(o, c))
    return {"open": np.exp(prev + o), "high": np.exp(prev + h), "low": np.exp(prev + lo), "close": np.exp(prev + c)}


# ------------------------------------------------------------------------ the data view


def with_arrays(data: Any, **arrays: np.ndarray) -> Any:
    """A ``PreparedData`` sharing ``data``'s metadata and arrays except ``arrays`` (by name:
    ``features``, ``labels``, ``open`` ...), which replace its own. Nothing is written."""
    return data.view(**arrays)


def _segment_of(data: Any, a: int, b: int) -> Any:
    for seg in data.segments:
        if seg.start <= a and b <= seg.stop:
            return seg
    raise DataError(f"counterfactual path [{a}, {b}): the rows are not inside one symbol's segment")


def _check_path(a: int, b: int, path: Path) -> dict[str, np.ndarray]:
    out = {}
    for k in BAR_FIELDS:
        if k not in path:
            raise DataError(f"counterfactual path [{a}, {b}): missing '{k}'")
        x = np.asarray(path[k], dtype=np.float64)
        if x.shape != (b - a,):
            raise DataError(f"counterfactual path [{a}, {b}): '{k}' has shape {x.shape}, expected ({b - a},)")
        bad = ~np.isfinite(x) | ((x <= 0) if k != "volume" else (x < 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"counterfactual path [{a}, {b}): '{k}' is {x[i]} at row {a + i} "
                            f"(prices must be finite and > 0, volume finite and >= 0)")
        out[k] = x
    return out


def counterfactual_data(data: Any, paths: Mapping[tuple[int, int], Path]) -> Any:
    """A view of ``data`` with each ``[a, b)`` range's bars replaced by ``paths[(a, b)]`` and the
    replaced rows' features, labels and targets recomputed by the prepare pipeline from the
    modified bars (module docstring). Ranges must not overlap; the view's ``edited`` lists them."""
    from himari.data.features import compute_features
    from himari.data.labels import make_labels
    from himari.data.pipeline import _sanitize_features

    ranges = sorted((int(a), int(b)) for a, b in paths)
    for (_, b0), (a1, _) in zip(ranges[:-1], ranges[1:]):
        if a1 < b0:
            raise DataError(f"counterfactual paths overlap at row {a1}")
    bars = {k: np.array(getattr(data, k), dtype=np.float64) for k in BAR_FIELDS}
    checked = {}
    for a, b in ranges:
        checked[(a, b)] = _check_path(a, b, paths[(a, b)])
        for k in BAR_FIELDS:
            bars[k][a:b] = checked[(a, b)][k]
    features = np.array(data.features)
    labels = np.array(data.labels)
    targets = np.array(data.targets)
    ts = np.asarray(data.timestamps, dtype=np.int64)
    lab = data.metadata["labeler"]
    lookahead = int(lab["lookahead"])
    by_segment: dict[int, list[tuple[int, int]]] = {}
    segs = {}
    for a, b in ranges:
        if b <= a:
            continue
        seg = _segment_of(data, a, b)
        by_segment.setdefault(seg.start, []).append((a, b))
        segs[seg.start] = seg
    for start, rs in by_segment.items():
        seg = segs[start]
        end = max(b for _, b in rs)  # features are causal: the rows up to the last edit suffice
        sl = slice(seg.start, end)
        raw = compute_features(*(bars[k][sl] for k in BAR_FIELDS), ts[sl])
        feats = _sanitize_features(raw, seg.symbol, ts[sl])
        stop = min(seg.stop, end + lookahead + 1)  # every label of a row < end reads bars < stop
        ls = slice(seg.start, stop)
        result = make_labels(lab["name"], bars["open"][ls], bars["high"][ls], bars["low"][ls], bars["close"][ls],
                             **lab["params"])
        for a, b in rs:
            features[a:b] = feats[a - seg.start: b - seg.start]
            labels[a:b] = result.labels[a - seg.start: b - seg.start]
            targets[a:b] = result.target[a - seg.start: b - seg.start]
            if b < seg.stop and bars["close"][b - 1] != float(data.close[b - 1]):
                cut = max(a, b - lookahead)
                labels[cut:b] = -1
                targets[cut:b] = np.nan
    view = with_arrays(data, features=features, labels=labels, targets=targets, **bars)
    view.edited = ranges
    return view


def counterfactual_context(ctx: Any, paths: Mapping[tuple[int, int], Path]) -> Any:
    """A copy of the ``TrainContext`` ``ctx`` on ``counterfactual_data(ctx.data, paths)``: its
    ``data`` is the view, its ``features`` (through the run's fitted preprocessors,
    ``ctx.preprocess``) and ``labels`` equal ``ctx``'s except at the replaced rows."""
    view = counterfactual_data(ctx.data, paths)
    raw = np.asarray(view.features, dtype=np.float32)
    pre = ctx.preprocess(view, raw) if ctx.preprocess is not None else raw
    features = np.array(ctx.features)
    labels = np.array(ctx.labels)
    if pre.shape[1] != features.shape[1]:
        raise DataError(f"counterfactual features have {pre.shape[1]} columns after preprocessing, the run's "
                        f"have {features.shape[1]}")
    for a, b in view.edited:
        features[a:b] = pre[a:b]
        labels[a:b] = view.labels[a:b]
    return dataclasses.replace(ctx, data=view, features=features, labels=labels)


def counterfactual_env_source(source: Any, ctx: Any) -> Any:
    """``source`` (an ``EnvSource``) with the prices and features of the rows ``ctx`` replaced
    (``ctx`` from ``counterfactual_context``); bars that are not prepared rows stay as they are."""
    if source.rows is None:
        return source
    rows = np.asarray(source.rows, dtype=np.int64)
    open_, close, feats = np.array(source.open), np.array(source.close), np.array(source.features)
    for a, b in getattr(ctx.data, "edited", ()):
        hit = (rows >= a) & (rows < b)
        if hit.any():
            open_[hit] = ctx.data.open[rows[hit]]
            close[hit] = ctx.data.close[rows[hit]]
            feats[hit] = ctx.features[rows[hit]]
    return dataclasses.replace(source, open=open_, close=close, features=feats)


# ------------------------------------------------------------------------ a method's skeleton


class CounterfactualMethod:
    """Base of training methods that train on new counterfactual paths every epoch.

    A subclass sets ``name`` and ``stream`` (a number of its own, so two such methods draw
    independent paths) and defines ``paths(ctx, rng) -> {(a, b): bars}`` over the train split.
    The hooks then: ``epoch_dataset`` returns the epoch's train data rebuilt from the
    counterfactual context (it replaces the data it is given, so list such a method first in
    ``--method``: the methods after it wrap the new data); ``env_source`` hands online-RL envs the
    counterfactual market. ``rng`` is ``numpy.random.default_rng([seed, stream, epoch])``: a pure
    function of the epoch, identical on every rank; the state records the last epoch drawn.
    """

    name = "counterfactual"
    stream = 0

    def __init__(self) -> None:
        self.epoch_drawn = -1
        self._cache: tuple[int, Any] | None = None

    def paths(self, ctx: Any, rng: np.random.Generator) -> dict[tuple[int, int], Path]:
        raise NotImplementedError

    def generator(self, ctx: Any, epoch: int) -> np.random.Generator:
        return np.random.default_rng([int(ctx.seed), int(self.stream), int(epoch)])

    def epoch_context(self, ctx: Any) -> Any:
        """The counterfactual ``TrainContext`` of ``ctx.epoch`` (built once per epoch)."""
        epoch = int(ctx.epoch)
        if self._cache is None or self._cache[0] != epoch:
            paths = self.paths(ctx, self.generator(ctx, epoch))
            self._cache = (epoch, counterfactual_context(ctx, paths))
            self.epoch_drawn = epoch
        return self._cache[1]

    def epoch_dataset(self, dataset: Any, ctx: Any) -> Any:
        from himari.errors import TrainingError

        if ctx.build_dataset is None:
            raise TrainingError(f"{self.name}: this Trainer cannot rebuild the train data (no ctx.build_dataset)")
        return ctx.build_dataset(self.epoch_context(ctx), "train")

    def env_source(self, source: Any, ctx: Any) -> Any:
        return counterfactual_env_source(source, self.epoch_context(ctx))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_drawn": int(self.epoch_drawn)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_drawn = int(state.get("epoch_drawn", -1))
        self._cache = None


def check_counterfactual_order(methods: list[tuple[str, Any]]) -> None:
    """Refuse ``--method`` lists whose counterfactual methods would silently do nothing: each
    ``CounterfactualMethod`` trains on paths of its own over the train split, built from the real
    data, so a second one replaces the first's market, and a method listed before one whose
    ``epoch_dataset`` changes the epoch's data (a curriculum stage, online augmentation) has its
    data replaced. Methods after it wrap its data and compose, except one that declares
    ``real_market_only = True`` (it reads the real prices once at set-up, as multi-task's
    targets do, so it cannot follow a counterfactual market)."""
    from himari.errors import ConfigError

    names = [n for n, m in methods if isinstance(m, CounterfactualMethod)]
    fixed = [n for n, m in methods if getattr(m, "real_market_only", False)]
    if names and fixed:
        raise ConfigError(f"--method: {', '.join(fixed)} computes its targets from the real market's prices once, "
                          f"at set-up, so next to {names[0]} it would train on the real market's future while the "
                          f"model is shown a counterfactual one; use one of them")
    if len(names) > 1:
        raise ConfigError(f"--method: {' and '.join(names)} each train on counterfactual paths of their own, drawn "
                          f"from the real market, so the later replaces the earlier's; use one of them")
    if names:
        first = next(i for i, (n, _) in enumerate(methods) if n == names[0])
        before = [n for n, m in methods[:first] if callable(getattr(m, "epoch_dataset", None))]
        if before:
            raise ConfigError(f"--method: {names[0]} rebuilds each epoch's training data from its counterfactual "
                              f"market, replacing what {', '.join(before)} listed before it made; list {names[0]} "
                              f"first")


__all__ = ["BAR_FIELDS", "CounterfactualMethod", "check_counterfactual_order", "bar_offsets", "bars_from_offsets", "counterfactual_context",
           "counterfactual_data", "counterfactual_env_source", "with_arrays"]
