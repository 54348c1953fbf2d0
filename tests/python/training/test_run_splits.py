"""A run with row ranges of its own (a walk-forward fold, or ``splits`` in its config) trains on
those rows only: the data its model and methods read (``ctx.data.split``, the datasets built from
it) holds the run's ranges, never the prepared data set's default ones, which overlap a fold's
test block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from himari.plugin.manager import get_plugins
from himari.training.config import merge_run_config

P = get_plugins()

TINY = {
    "cql": ["cql.hidden_sizes=[16]"],
    "cgdt": ["cgdt.d_model=16", "cgdt.n_layers=1", "cgdt.n_heads=2", "cgdt.context_length=8", "cgdt.critic_steps=2",
             "cgdt.target_quantiles=[0.5]"],
}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every dataset built while the test runs (``himari.data.datasets``' classes)."""
    from himari.data import datasets

    out: list[Any] = []
    init = datasets._Base.__init__

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        out.append(self)

    monkeypatch.setattr(datasets._Base, "__init__", recording)
    return out


def _fold_splits(n: int, default_train: tuple[int, int]) -> dict[str, list[tuple[int, int]]]:
    """A fold that trains on a late block, across the end of the data set's default train split."""
    _, b = default_train
    return {"train": [(b - 1200, b + 600)], "validation": [(b + 610, b + 1000)], "test": [(b + 1010, n)]}


def test_the_data_view_gives_the_given_splits_and_shares_the_arrays(small_prepared: Path) -> None:
    from himari.data import PreparedData

    data = PreparedData(small_prepared)
    default = {k: data.split(k) for k in ("train", "validation", "test")}
    fold = _fold_splits(len(data.close), default["train"][0])
    view = data.with_splits(fold)
    assert {k: view.split(k) for k in fold} == fold
    assert {k: data.split(k) for k in default} == default  # the data itself is unchanged
    assert np.shares_memory(view.close, data.close) and np.shares_memory(view.features, data.features)


@pytest.mark.parametrize("model", sorted(TINY))
def test_a_fold_run_builds_its_training_data_from_its_own_rows(model: str, small_prepared: Path, tmp_path: Path,
                                                                built: list[Any]) -> None:
    """Every dataset the model builds covers exactly the run's ranges of its split; with the data
    set's default splits the train data would start thousands of rows earlier, inside no range of
    the fold, and its validation data would overlap the fold's train block."""
    from himari.data import PreparedData
    from himari.training.trainer import Trainer

    data = PreparedData(small_prepared)
    fold = _fold_splits(len(data.close), data.split("train")[0])
    run = merge_run_config(plugins=P, overrides={"model": model, "data": str(small_prepared), "splits": fold},
                           sets=["recipe=none", "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32",
                                 "train.progress=false", *TINY[model]])
    Trainer(run, plugins=P, run_dir=tmp_path / "run").fit()
    assert {ds.split for ds in built} >= {"train", "validation"}
    for ds in built:
        assert ds.ranges == fold[ds.split], ds.split
        (a, b), = fold[ds.split]
        rows = np.asarray(ds.source_rows)
        assert len(rows) and rows.min() >= a and rows.max() < b, ds.split


@pytest.mark.parametrize("model", sorted(TINY))
def test_a_model_reads_the_context_splits_not_the_data_sets(model: str, small_prepared: Path,
                                                             built: list[Any]) -> None:
    """Given the data with its default splits and a context whose train split is a later block
    (what maml's task batches do), the model's train data covers the context's block only."""
    from himari.data import PreparedData
    from himari.plugin.api import ModelContext, TrainContext
    from himari.trading import EnvConfig

    data = PreparedData(small_prepared)
    fold = _fold_splits(len(data.close), data.split("train")[0])
    feats = np.nan_to_num(np.asarray(data.features, dtype=np.float32))
    run = merge_run_config(plugins=P, overrides={"model": model}, sets=["recipe=none", *TINY[model]])
    spec = P.models().get(model)
    instance = spec.factory(run.plugin_configs[model], ModelContext(n_features=feats.shape[1], env=EnvConfig()))
    ctx = TrainContext(data=data, features=feats, labels=np.asarray(data.labels), splits=fold, env=EnvConfig(),
                       model=ModelContext(n_features=feats.shape[1]))
    instance.dataset(ctx, "train")
    (a, b), = fold["train"]
    ds, = built
    rows = np.asarray(ds.source_rows)
    assert ds.ranges == [(a, b)] and rows.min() >= a and rows.max() < b


def test_ranges_outside_the_data_are_refused(small_prepared: Path) -> None:
    from himari.data import PreparedData
    from himari.data.datasets import TabularDataset
    from himari.errors import DataError

    data = PreparedData(small_prepared)
    with pytest.raises(DataError, match=r"ranges: \[10, 99999\) is not a range of rows"):
        TabularDataset(data, "train", ranges=[(10, 99_999)])
    (a, b), = data.split("validation")
    assert TabularDataset(data, "train", ranges=[(a, b)]).ranges == [(a, b)]


def test_baseline_mlp_reads_the_context_splits(small_prepared: Path) -> None:
    """baseline-mlp's examples are the labelled rows of the context's train block, not of the data
    set's default train split."""
    from himari.data import PreparedData
    from himari.plugin.api import ModelContext, TrainContext
    from himari.trading import EnvConfig

    data = PreparedData(small_prepared)
    fold = _fold_splits(len(data.close), data.split("train")[0])
    feats = np.nan_to_num(np.asarray(data.features, dtype=np.float32))
    labels = np.asarray(data.labels)
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=["recipe=none"])
    context = ModelContext(n_features=feats.shape[1], class_counts=(1, 1, 1), env=EnvConfig())
    model = P.models().get("baseline-mlp").factory(run.plugin_configs["baseline-mlp"], context)
    ctx = TrainContext(data=data, features=feats, labels=labels, splits=fold, env=EnvConfig(), model=context)
    x, y, r = model.dataset(ctx, "train")[:]
    (a, b), = fold["train"]
    rows = np.arange(a, b)[labels[a:b] >= 0]
    np.testing.assert_array_equal(r.numpy(), rows)
    np.testing.assert_array_equal(x.numpy(), feats[rows])
    np.testing.assert_array_equal(y.numpy(), labels[rows])
