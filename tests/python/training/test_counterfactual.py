"""Counterfactual price paths (``himari.training.counterfactual``): the replaced rows' features and
labels are exactly what ``himari data prepare`` computes from the modified bars (checked against an
independent prepare of a modified bars frame), and nothing else changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from himari.data import PreparedData
from himari.data.pipeline import PrepareConfig, prepare
from himari.data.synthetic import SynthConfig, load_synthetic
from himari.errors import DataError
from himari.training.counterfactual import (
    bar_offsets,
    bars_from_offsets,
    counterfactual_context,
    counterfactual_data,
    counterfactual_env_source,
)

FIELDS = ("open", "high", "low", "close", "volume")


def _modified_path(data, a, b, seed=1):
    """A different but valid path for rows [a, b): real bar shapes, shuffled close returns, doubled volume."""
    rng = np.random.default_rng(seed)
    prev = float(data.close[a - 1])
    off = bar_offsets(data.open[a:b], data.high[a:b], data.low[a:b], data.close[a:b], prev)
    off = off[rng.permutation(len(off))] * 1.3
    bars = bars_from_offsets(off, prev)
    return {**bars, "volume": np.asarray(data.volume[a:b]) * 2.0}


def _prepare_modified(tmp_path, path, a, b):
    """The independent computation: the whole pipeline on the synthetic frame with rows [a, b) replaced."""
    loaded = load_synthetic(SynthConfig(bars=6000, seed=5))
    frame = loaded.frame.copy()
    for k in FIELDS:
        col = frame[k].to_numpy(copy=True)
        col[a:b] = path[k]
        frame[k] = col
    out = tmp_path / "modified"
    prepare(dataclasses.replace(loaded, frame=frame), out, PrepareConfig())
    return PreparedData(out)


def test_replaced_rows_equal_an_independent_prepare_of_the_modified_bars(small_prepared, tmp_path) -> None:
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    path = _modified_path(data, a, b)
    view = counterfactual_data(data, {(a, b): path})
    ref = _prepare_modified(tmp_path, path, a, b)
    assert not np.array_equal(np.asarray(ref.features[a:b]), np.asarray(data.features[a:b]))  # it did change
    np.testing.assert_array_equal(view.features[a:b], ref.features[a:b])  # bit for bit
    look = data.lookahead
    # the path ends away from the real close: the last `lookahead` labels would straddle the join
    assert path["close"][-1] != data.close[b - 1]
    np.testing.assert_array_equal(view.labels[a:b - look], ref.labels[a:b - look])
    np.testing.assert_array_equal(view.targets[a:b - look], ref.targets[a:b - look])
    assert (view.labels[b - look:b] == -1).all() and np.isnan(view.targets[b - look:b]).all()
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(view, k)[a:b], ref.__getattribute__(k)[a:b])


def test_nothing_outside_the_replaced_rows_changes(small_prepared) -> None:
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    view = counterfactual_data(data, {(a, b): _modified_path(data, a, b)})
    outside = np.r_[0:a, b:data.num_samples]
    for k in ("features", "labels", "targets", *FIELDS, "timestamps"):
        np.testing.assert_array_equal(getattr(view, k)[outside], getattr(data, k)[outside])
    # the prepared data itself is untouched (the view holds copies)
    assert np.array_equal(np.asarray(PreparedData(small_prepared).close), np.asarray(data.close))


def test_a_path_that_rejoins_the_real_close_keeps_every_label(small_prepared) -> None:
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    path = {k: np.array(getattr(data, k)[a:b], dtype=np.float64) for k in FIELDS}
    path["volume"][10:20] *= 3.0  # changes features (volume z-scores), not the close at b - 1
    view = counterfactual_data(data, {(a, b): path})
    np.testing.assert_array_equal(view.labels[a:b], data.labels[a:b])
    assert not np.array_equal(view.features[a + 10:a + 20], data.features[a + 10:a + 20])


def test_context_features_go_through_the_runs_preprocessing(small_prepared) -> None:
    from himari.plugin.api import TrainContext

    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    ctx = TrainContext(data=data, features=np.asarray(data.features) * 2.0 + 1.0, labels=np.asarray(data.labels),
                       splits=splits, env=None, preprocess=lambda d, raw: raw * 2.0 + 1.0)
    new = counterfactual_context(ctx, {(a, b): _modified_path(data, a, b)})
    np.testing.assert_array_equal(new.features[a:b], np.asarray(new.data.features[a:b]) * 2.0 + 1.0)
    np.testing.assert_array_equal(new.features[b:], ctx.features[b:])
    np.testing.assert_array_equal(new.features[:a], ctx.features[:a])
    np.testing.assert_array_equal(new.labels[b:], ctx.labels[b:])
    from himari.plugin.api import EnvSource

    rows = np.arange(a - 5, a + 5)
    src = EnvSource(open=np.asarray(data.open[rows]), close=np.asarray(data.close[rows]),
                    features=ctx.features[rows].astype(np.float32), config=None, rows=rows)
    out = counterfactual_env_source(src, new)
    np.testing.assert_array_equal(out.close[:5], data.close[a - 5:a])  # before the range: real
    np.testing.assert_array_equal(out.close[5:], new.data.close[a:a + 5])
    np.testing.assert_array_equal(out.features[5:], new.features[a:a + 5].astype(np.float32))


def test_offsets_round_trip_and_always_give_valid_bars() -> None:
    rng = np.random.default_rng(0)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    o = np.r_[99.0, c[:-1]] * np.exp(rng.normal(0, 0.001, 50))
    h = np.maximum(o, c) * 1.002
    lo = np.minimum(o, c) * 0.998
    back = bars_from_offsets(bar_offsets(o, h, lo, c, 99.5), 99.5)
    for k, x in (("open", o), ("high", h), ("low", lo), ("close", c)):
        np.testing.assert_allclose(back[k], x, rtol=1e-12)
    weird = bars_from_offsets(rng.normal(0, 0.02, (50, 4)), 10.0)  # offsets that contradict each other
    assert (weird["high"] >= np.maximum(weird["open"], weird["close"])).all()
    assert (weird["low"] <= np.minimum(weird["open"], weird["close"])).all()


def test_bad_paths_are_refused(small_prepared) -> None:
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    path = _modified_path(data, a, b)
    with pytest.raises(DataError, match="'close' is -1.0"):
        counterfactual_data(data, {(a, b): {**path, "close": np.r_[-1.0, path["close"][1:]]}})
    with pytest.raises(DataError, match="shape"):
        counterfactual_data(data, {(a, b): {**path, "open": path["open"][:-1]}})
    with pytest.raises(DataError, match="overlap"):
        counterfactual_data(data, {(a, a + 10): {k: v[:10] for k, v in path.items()},
                                   (a + 5, a + 15): {k: v[:10] for k, v in path.items()}})
