"""The prepared directory: arrays, metadata, labels kept out of features, atomic output, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from himari.data.atomic import atomic_directory, atomic_path
from himari.data.features import FEATURE_NAMES, WARMUP
from himari.data.pipeline import PrepareConfig, default_prepared_dataset, prepare, resolve_prepared
from himari.data.prepared import PreparedData
from himari.data.synthetic import SynthConfig, load_synthetic
from himari.errors import DataError


def test_prepared_arrays_and_metadata(prepared_dir):
    d = PreparedData(prepared_dir)
    m = d.metadata
    n = m["num_samples"]
    assert n == 6000 and m["feature_dim"] == 60 and m["feature_names"] == list(FEATURE_NAMES)
    assert d.features.dtype == np.float32 and d.features.shape == (n, 60)
    assert isinstance(d.features, np.memmap)
    assert d.labels.dtype == np.int8 and d.targets.dtype == np.float32
    assert d.open.dtype == np.float64 and d.close.shape == (n,) and d.timestamps.dtype == np.int64
    assert m["warmup"] == WARMUP and (np.asarray(d.features[:WARMUP]) == 0).all()
    assert np.isfinite(d.features).all()
    for key in ("symbols", "label_distribution", "labeler", "span", "sources", "splits", "embargo",
                "interval", "segments", "folds"):
        assert key in m
    assert "normalization" not in m  # a run's zscore preprocessor fits its own on the train split
    assert m["labeler"] == {"name": "forward-return", "params": {"horizon": 5, "threshold": 0.002}, "lookahead": 6}
    assert m["embargo"] == 6 and len(m["folds"]) == 3
    assert sum(m["label_distribution"].values()) == m["num_labeled"]
    assert (d.labels[-6:] == -1).all()
    frame = load_synthetic(SynthConfig(bars=6000, seed=3)).frame  # the bars prepared_dir was made from
    for k in ("open", "high", "low", "close", "volume"):
        arr = getattr(d, k)
        assert arr.dtype == np.float64 and arr.shape == (n,)
        np.testing.assert_array_equal(arr, frame[k].to_numpy(np.float64), err_msg=k)
    assert m["sources"][0]["format"] == "synthetic"


def test_labels_never_enter_features(tmp_path):
    """Different labelers (and so different labels) leave the feature bytes identical."""
    bars = load_synthetic(SynthConfig(bars=WARMUP + 400, seed=5))
    outs = {}
    for name, params in (("forward-return", {}), ("triple-barrier", {"horizon": 7}), ("risk-adjusted", {"horizon": 3})):
        out = tmp_path / name
        prepare(bars, out, PrepareConfig(labeler=name, label_params=params))
        outs[name] = PreparedData(out)
    f0 = outs["forward-return"]
    for d in outs.values():
        assert (np.asarray(d.features) == np.asarray(f0.features)).all()
    assert not (np.asarray(outs["triple-barrier"].labels) == np.asarray(f0.labels)).all()
    # and no feature is the label in disguise
    lab = np.asarray(f0.labels).astype(float)
    ok = lab >= 0
    ok[:WARMUP] = False
    for j, name in enumerate(FEATURE_NAMES):
        col = np.asarray(f0.features[ok, j], dtype=np.float64)
        if col.std() > 0:
            assert abs(np.corrcoef(col, lab[ok])[0, 1]) < 0.5, name


def test_embargo_below_lookahead_rejected(tmp_path):
    bars = load_synthetic(SynthConfig(bars=WARMUP + 300, seed=1))
    with pytest.raises(DataError, match="embargo"):
        prepare(bars, tmp_path / "x", PrepareConfig(embargo=2))
    assert not (tmp_path / "x").exists()


def test_too_short_and_unknown_symbol(tmp_path):
    with pytest.raises(DataError, match="warm-up"):
        prepare(load_synthetic(SynthConfig(bars=WARMUP)), tmp_path / "s")
    with pytest.raises(DataError, match="not in the bars"):
        prepare(load_synthetic(SynthConfig(bars=WARMUP + 100)), tmp_path / "s", PrepareConfig(symbols=("BTC",)))
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    d = tmp_path / "dir"
    d.mkdir()
    (d / "keep").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(d) as tmp:
            (tmp / "new").write_text("2")
            raise RuntimeError("boom")
    assert [p.name for p in d.iterdir()] == ["keep"]
    with atomic_directory(d) as tmp:
        (tmp / "new").write_text("2")
    assert [p.name for p in d.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f.txt"]


def test_default_prepared_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HIMARI_CACHE_DIR", str(tmp_path / "cache"))
    p1 = default_prepared_dataset(bars=WARMUP + 500, seed=2)
    stamp = (p1 / "metadata.json").stat().st_mtime_ns
    p2 = default_prepared_dataset(bars=WARMUP + 500, seed=2)
    assert p1 == p2 and (p2 / "metadata.json").stat().st_mtime_ns == stamp
    assert json.loads((p1 / "metadata.json").read_text())["num_samples"] == WARMUP + 500
    assert resolve_prepared(p1) == p1
    with pytest.raises(DataError, match="not a prepared"):
        resolve_prepared(tmp_path)


def test_two_symbols_stack_and_splits_stay_within_a_symbol(tmp_path):
    from himari.data.datasets import SequenceDataset, TabularDataset
    from himari.data.ingest import import_bars
    from himari.data.synthetic import write_synthetic

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_synthetic(a, SynthConfig(bars=WARMUP + 600, seed=1, symbol="AAA"))
    write_synthetic(b, SynthConfig(bars=WARMUP + 600, seed=2, symbol="BBB", initial_price=3.0))
    import_bars([a, b], tmp_path / "both.parquet")
    meta = prepare(tmp_path / "both.parquet", tmp_path / "p")
    assert meta["symbols"] == ["AAA", "BBB"] and meta["num_samples"] == 2 * (WARMUP + 600)
    segs = meta["segments"]
    assert segs[1]["start"] == segs[0]["stop"] == WARMUP + 600
    d = PreparedData(tmp_path / "p")
    for split in ("train", "validation", "test"):
        ranges = d.split(split)
        assert len(ranges) == 2
        for lo, hi in ranges:
            assert any(s["first"] <= lo and hi <= s["stop"] for s in segs)
    ds = SequenceDataset(d, "train", length=64)
    assert all(any(s["start"] <= ds.rows(i)[0] and ds.rows(i)[1] < s["stop"] for s in segs) for i in range(len(ds)))
    assert len(TabularDataset(d, "test")) > 0
    only = prepare(tmp_path / "both.parquet", tmp_path / "q", PrepareConfig(symbols=("BBB",)))
    assert only["symbols"] == ["BBB"] and only["num_samples"] == WARMUP + 600


def test_package_exports_resolve():
    import himari.data as hd
    import himari.data.pipeline

    assert hd.prepare is himari.data.pipeline.prepare
    for name in hd.__all__:
        assert getattr(hd, name) is not None
