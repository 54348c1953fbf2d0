"""causal-augment (K3): the epoch's train rows are the prepare pipeline run on a regime-preserving
block bootstrap of the train path (checked against an independent prepare of the same bars);
validation and test rows are bit-identical; blocks keep their returns and their regime."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from rich.console import Console

torch = pytest.importorskip("torch")

from himari.data import PreparedData  # noqa: E402
from himari.errors import ConfigError  # noqa: E402
from himari.plugin.api import bar_offsets  # noqa: E402
from himari.plugin.manager import get_plugins  # noqa: E402
from himari.training.config import merge_run_config  # noqa: E402
from himari.training.loop import epoch_dataset  # noqa: E402
from himari.training.trainer import Trainer  # noqa: E402
from himari_builtin.training.causal_augment import (  # noqa: E402
    CausalAugment,
    CausalAugmentConfig,
    block_regimes,
    bootstrap_blocks,
    resample,
)

P = get_plugins()
SETS = ["train.epochs=1", "train.batch_size=64", "train.progress=false", "train.max_steps_per_epoch=2", "recipe=none"]


def _trainer(data, tmp_path, sets=()):
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(data), "methods": "causal-augment"},
                           sets=[*SETS, *sets])
    t = Trainer(run, plugins=P, run_dir=tmp_path / "run", console=Console(file=io.StringIO()))
    t._setup()
    return t


def test_epoch_rows_are_the_pipeline_on_the_bootstrapped_bars(small_prepared, tmp_path) -> None:
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    t = _trainer(small_prepared, tmp_path, ["causal-augment.rate=1.0"])
    method = t.methods[0][1]
    real_x, real_y, _ = t.train_ds.tensors
    x, y, _ = epoch_dataset(t).tensors
    cf = method.epoch_context(t.ctx)
    (a, b), = t.splits["train"]
    assert cf.data.edited == [(a, b)]
    # independent: the whole prepare on the synthetic frame with the train bars replaced, then the
    # run's zscore state (fitted on the real train rows) applied to it
    loaded = load_synthetic(SynthConfig(bars=6000, seed=5))
    frame = loaded.frame.copy()
    for k in ("open", "high", "low", "close", "volume"):
        col = frame[k].to_numpy(copy=True)
        col[a:b] = cf.data.__getattribute__(k)[a:b]
        frame[k] = col
    prepare(dataclasses.replace(loaded, frame=frame), tmp_path / "ref", PrepareConfig())
    ref = PreparedData(tmp_path / "ref")
    mean = np.asarray(t.preprocessing_states[0]["state"]["mean"], dtype=np.float32)
    std = np.asarray(t.preprocessing_states[0]["state"]["std"], dtype=np.float32)
    rows = np.arange(a, b)
    rows = rows[cf.labels[rows] >= 0]
    expected = t._preprocess(ref, np.asarray(ref.features))[rows]
    np.testing.assert_array_equal(x.numpy(), expected)
    np.testing.assert_allclose(expected, np.clip((np.asarray(ref.features)[rows] - mean) / std, -10, 10), atol=1e-5)
    np.testing.assert_array_equal(y.numpy(), ref.labels[rows].astype(np.int64))
    assert not torch.equal(x[:len(real_x)], real_x[:len(x)])  # the model trains on other rows than the real ones
    # validation and test: bit-identical features, labels and bars
    for split in ("validation", "test"):
        for s, e in t.splits[split]:
            np.testing.assert_array_equal(cf.features[s:e], t.features[s:e])
            np.testing.assert_array_equal(cf.labels[s:e], t.labels[s:e])
            np.testing.assert_array_equal(cf.data.close[s:e], t.data.close[s:e])
    np.testing.assert_array_equal(cf.features[:a], t.features[:a])


def test_blocks_keep_their_returns_and_their_regime(small_prepared) -> None:
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    prev = float(data.close[a - 1])
    off = bar_offsets(data.open[a:b], data.high[a:b], data.low[a:b], data.close[a:b], prev)
    L = 48
    regime = block_regimes(off, L, 3)
    vol = off[: len(regime) * L, 3].reshape(-1, L).std(axis=1)
    assert set(regime.tolist()) == {0, 1, 2}
    assert vol[regime == 0].max() <= vol[regime == 2].min()  # bins are ordered by volatility
    source = bootstrap_blocks(regime, 1.0, np.random.default_rng(0))
    assert (regime[source] == regime).all()  # every block drawn from its own regime
    assert (source != np.arange(len(source))).mean() > 0.5  # and mostly moved
    new, vol_new = resample(off, data.volume[a:b], source, L, 1.0)
    for k, s in enumerate(source):  # the multiset (here: the exact sequence) of each block's returns
        np.testing.assert_array_equal(new[k * L:(k + 1) * L], off[s * L:(s + 1) * L])
        np.testing.assert_array_equal(vol_new[k * L:(k + 1) * L], np.asarray(data.volume[a:b])[s * L:(s + 1) * L])
    n = len(regime) * L
    np.testing.assert_array_equal(new[n:], off[n:])  # the remainder stays real
    assert (bootstrap_blocks(regime, 0.0, np.random.default_rng(0)) == np.arange(len(regime))).all()


def test_paths_from_the_method_are_block_copies_of_the_real_returns(small_prepared, tmp_path) -> None:
    t = _trainer(small_prepared, tmp_path, ["causal-augment.rate=1.0", "causal-augment.vol_scale=0"])
    method = t.methods[0][1]
    (a, b), = t.splits["train"]
    path = method.paths(t.ctx, np.random.default_rng(3))[(a, b)]
    d = t.data
    r_new = np.diff(np.log(np.r_[d.close[a - 1], path["close"]]))
    r_old = np.diff(np.log(np.asarray(d.close[a - 1:b])))
    L = 48
    for k in range(len(r_new) // L):  # each new block's returns are some real block's, as a multiset
        blk = np.sort(r_new[k * L:(k + 1) * L])
        assert any(np.allclose(blk, np.sort(r_old[j * L:(j + 1) * L]), atol=1e-12, rtol=0)
                   for j in range(len(r_old) // L))
    n = (len(r_new) // L) * L
    np.testing.assert_allclose(r_new[n:], r_old[n:], atol=1e-12)  # the remainder after whole blocks is real


def test_vol_rescaling_scales_every_return_by_one_factor_in_range(small_prepared, tmp_path) -> None:
    t = _trainer(small_prepared, tmp_path, ["causal-augment.rate=0", "causal-augment.vol_scale=0.5"])
    method = t.methods[0][1]
    (a, b), = t.splits["train"]
    d = t.data
    factors = []
    for seed in range(5):
        path = method.paths(t.ctx, np.random.default_rng(seed))[(a, b)]
        r_new = np.diff(np.log(np.r_[d.close[a - 1], path["close"]]))
        r_old = np.diff(np.log(np.asarray(d.close[a - 1:b])))
        s = np.std(r_new) / np.std(r_old)
        np.testing.assert_allclose(r_new, s * r_old, atol=1e-12)
        hl_new, hl_old = np.log(path["high"] / path["low"]), np.log(np.asarray(d.high[a:b]) / np.asarray(d.low[a:b]))
        np.testing.assert_allclose(hl_new, s * hl_old, rtol=1e-9, atol=1e-12)  # the bars' ranges too
        factors.append(s)
    assert all(1 / 1.5 - 1e-9 <= s <= 1.5 + 1e-9 for s in factors) and len(set(np.round(factors, 6))) == 5


def test_epochs_draw_different_paths_and_a_resume_draws_the_same(small_prepared, tmp_path) -> None:
    t = _trainer(small_prepared, tmp_path)
    m = t.methods[0][1]
    (a, b), = t.splits["train"]
    t.ctx.epoch = 0
    c0 = m.epoch_context(t.ctx).data.close[a:b].copy()
    t.ctx.epoch = 1
    c1 = m.epoch_context(t.ctx).data.close[a:b].copy()
    assert not np.array_equal(c0, c1)
    fresh = CausalAugment(CausalAugmentConfig())
    fresh.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(fresh.epoch_context(t.ctx).data.close[a:b], c1)


@pytest.mark.parametrize("field, value", [("rate", "1.5"), ("rate", "-0.1"), ("block_length", "1"),
                                          ("regimes", "0"), ("vol_scale", "-1")])
def test_bad_config_is_refused_naming_method_field_and_value(small_prepared, field, value) -> None:
    with pytest.raises(ConfigError, match=rf"causal-augment.*{field}.*{value}"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                               "methods": "causal-augment"}, sets=[f"causal-augment.{field}={value}"])


def test_counterfactual_methods_that_would_do_nothing_are_refused_before_the_run(small_prepared, tmp_path) -> None:
    """causal-augment,rare-events trained exactly as rare-events alone, and curriculum or
    online-augment before causal-augment had their epoch data replaced; the run listed all."""
    from typer.testing import CliRunner

    from himari.cli import app

    for methods, message in (("causal-augment,rare-events", "the later replaces the earlier's"),
                             ("rare-events,causal-augment", "the later replaces the earlier's"),
                             ("curriculum,causal-augment", "list causal-augment first"),
                             ("online-augment,rare-events", "list rare-events first"),
                             # multi-task's targets come from the real closes: beside a counterfactual
                             # market its heads learnt the real future from counterfactual inputs
                             ("causal-augment,multi-task", "computes its targets from the real market's prices"),
                             ("multi-task,rare-events", "computes its targets from the real market's prices")):
        res = CliRunner().invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--set", "recipe=none",
                                       "--epochs", "1", "--method", methods, "--run-dir", str(tmp_path / "run")])
        assert res.exit_code == 2, res.output
        assert message in " ".join(res.output.split()) and not (tmp_path / "run").exists(), methods


def test_methods_after_a_counterfactual_one_compose() -> None:
    from himari.training.counterfactual import CounterfactualMethod, check_counterfactual_order

    class Wraps:
        def epoch_dataset(self, dataset, ctx):
            return dataset

    class Other:
        def loss_terms(self, *args):
            return {}

    check_counterfactual_order([("other", Other()), ("cf", CounterfactualMethod()), ("wraps", Wraps())])
    check_counterfactual_order([("wraps", Wraps()), ("other", Other())])
