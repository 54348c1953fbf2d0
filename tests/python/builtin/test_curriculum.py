"""curriculum (K1): window difficulty by hand, stage 1 draws only from easy windows (supervised
examples and online-RL env sources), stages change at their epochs, resume mid-curriculum is
exact, an empty stage and bad values are refused before anything is written."""

from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.plugin.api import EnvConfig, EnvSource
from himari.plugin.manager import get_plugins

torch = pytest.importorskip("torch")

P = get_plugins()
SPEC = P.training_methods().get("curriculum")

# Four windows of 11 bars (10 log returns each), by hand:
#   A: +0.02, 0 alternating  -> vol 0.01, |sum| 0.1 -> trend 0.1 / (0.01 sqrt 10) = sqrt 10   (calm, trending)
#   B: +0.05, -0.05          -> vol 0.05, trend 0                                              (volatile, flat)
#   C: +0.01, -0.01          -> vol 0.01, trend 0                                              (calm, flat)
#   D: +0.1, 0               -> vol 0.05, trend 0.5 / (0.05 sqrt 10) = sqrt 10                 (volatile, trending)
# Median volatility 0.03, median trend sqrt(10) / 2: easy = {A}; medium at the 0.5 quantile = {A, C}.
PATTERNS = {"A": (0.02, 0.0), "B": (0.05, -0.05), "C": (0.01, -0.01), "D": (0.1, 0.0)}
W = 11


def _closes() -> np.ndarray:
    logs = [0.0]
    for k, name in enumerate("ABCD"):
        if k:
            logs.append(logs[-1])  # the first bar of a window repeats the last close of the one before
        up, down = PATTERNS[name]
        for i in range(W - 1):
            logs.append(logs[-1] + (up if i % 2 == 0 else down))
    return 100.0 * np.exp(np.array(logs))


def _method(**kw):
    cfg = SPEC.config(window_bars=W, **{"medium_vol_quantile": 0.5, **kw})
    close = _closes()
    n = len(close)
    assert n == 4 * W
    data = SimpleNamespace(close=close, open=np.r_[close[0], close[:-1]])
    ctx = SimpleNamespace(data=data, features=np.arange(n, dtype=np.float32)[:, None], splits={"train": [(0, n)]},
                          seed=3, epoch=0)
    method = SPEC.factory(cfg)
    method.env_config(EnvConfig(), ctx)
    return method, ctx


def test_window_difficulty_by_hand() -> None:
    method, _ = _method()
    got = {(a, b): (vol, trend) for a, b, vol, trend in method.windows}
    expect = {(0, 11): (0.01, math.sqrt(10)), (11, 22): (0.05, 0.0), (22, 33): (0.01, 0.0),
              (33, 44): (0.05, math.sqrt(10))}
    assert got.keys() == expect.keys()
    for k, (vol, trend) in expect.items():
        assert got[k][0] == pytest.approx(vol, rel=1e-9) and got[k][1] == pytest.approx(trend, rel=1e-6, abs=1e-9)
    assert method.stages[1] == [(0, 11)] and method.stages[2] == [(0, 11), (22, 33)]
    # stage 2 keeps stage 1's windows even where its own volatility bound would drop them
    # (easy: any volatility, the trending half; medium: the calmest windows only)
    loose, _ = _method(easy_vol_quantile=1.0, medium_vol_quantile=0.0)
    assert loose.stages[1] == [(0, 11), (33, 44)]
    assert loose.stages[2] == [(0, 11), (22, 33), (33, 44)]


def test_supervised_stage_one_draws_only_easy_rows_and_stages_follow_epochs() -> None:
    from torch.utils.data import TensorDataset

    method, ctx = _method(easy_epochs=2, medium_epochs=1)
    rows = np.arange(3, 44, dtype=np.int64)  # examples of rows 3..43 (rows 0-2 unlabelled, say)
    ds = TensorDataset(torch.from_numpy(rows.astype(np.float32))[:, None], torch.from_numpy(rows))
    ds.example_rows = rows
    assert method.dataset(ds, ctx, "train") is ds
    seen = {}
    for epoch in range(4):
        ctx.epoch = epoch
        part = method.epoch_dataset(ds, ctx)
        seen[epoch] = sorted(part[torch.arange(len(part))][1].tolist())
    assert seen[0] == seen[1] == list(range(3, 11))                       # stage 1: A only, 2 epochs
    assert seen[2] == [*range(3, 11), *range(22, 33)]                     # stage 2: A and C
    assert seen[3] == list(range(3, 44))                                  # stage 3: everything
    assert [r["stage"] for r in method.state_dict()["log"]] == [1, 1, 2, 3]


def test_online_stage_one_env_source_lies_in_easy_windows() -> None:
    method, ctx = _method(easy_epochs=1, medium_epochs=3)
    default = EnvSource(open=ctx.data.open, close=ctx.data.close, features=ctx.features, config=EnvConfig(),
                        rows=np.arange(44))
    src = method.env_source(default, ctx)
    assert src.rows.tolist() == list(range(0, 11))
    np.testing.assert_array_equal(src.close, ctx.data.close[:11])
    np.testing.assert_array_equal(src.features[:, 0], np.arange(11))
    runs = set()
    for epoch in range(1, 4):
        ctx.epoch = epoch
        s = method.env_source(default, ctx)
        runs.add((int(s.rows[0]), int(s.rows[-1]) + 1))
    assert runs <= {(0, 11), (22, 33)}
    ctx.epoch = 4
    assert method.env_source(default, ctx) is default  # stage 3: the whole train split


def test_online_stages_draw_only_runs_long_enough_for_the_models_window() -> None:
    """A model whose observations span 10 bars needs a market of 12: of stage 2's runs, (0, 11)
    is too short and (22, 44) is not, so every epoch draws the latter; a stage with no such run
    is refused at set-up (it failed in the epoch that drew one, after checkpoints)."""
    method, ctx = _method(easy_vol_quantile=1.0, medium_vol_quantile=0.0, easy_epochs=0, medium_epochs=6)
    assert method.stages[2] == [(0, 11), (22, 33), (33, 44)]
    model = SimpleNamespace(rollout=lambda ctx, reset: None, observation_window=10)
    method.model_built(model, ctx)
    default = EnvSource(open=ctx.data.open, close=ctx.data.close, features=ctx.features, config=EnvConfig(),
                        rows=np.arange(44))
    for epoch in range(6):
        ctx.epoch = epoch
        assert method.env_source(default, ctx).rows.tolist() == list(range(22, 44))
    easy, ctx = _method(easy_vol_quantile=1.0, medium_vol_quantile=0.0, easy_epochs=1)
    with pytest.raises(ConfigError, match=r"curriculum: stage 1 \(easy\) has no run of consecutive stage windows of "
                                          r"at least 12 bars, which the model's observation window of 10 bars needs "
                                          r"\(its longest run is 11 bars"):
        easy.model_built(model, ctx)
    easy.model_built(SimpleNamespace(rollout=lambda ctx, reset: None), ctx)  # a one-bar window: 11 bars suffice
    easy.model_built(SimpleNamespace(observation_window=10), ctx)  # no rollout: examples, not markets


def test_flag_trader_with_a_window_longer_than_every_stage_run_is_refused_before_the_run(small_prepared,
                                                                                         tmp_path) -> None:
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    sets = ["flag-trader.n_layer=1", "flag-trader.n_head=2", "flag-trader.n_embd=16", "flag-trader.context_length=64",
            "flag-trader.lora_rank=2", "flag-trader.head_hidden=0", "curriculum.window_bars=3",
            "train.progress=false", "recipe=none"]
    run = merge_run_config(plugins=P, overrides={"model": "flag-trader", "data": str(small_prepared),
                                                 "methods": "curriculum"}, sets=sets)
    with pytest.raises(ConfigError, match=r"observation window of 64 bars needs"):
        Trainer(run, plugins=P, run_dir=tmp_path / "run", console=Console(file=io.StringIO())).fit()
    assert not (tmp_path / "run").exists()


def test_a_stage_keeps_the_bars_a_method_before_it_changed() -> None:
    """curriculum after causal-augment or rare-events rebuilt its block from the real data, so
    their counterfactual market never reached the envs."""
    method, ctx = _method(easy_epochs=1, medium_epochs=3)
    changed = EnvSource(open=ctx.data.open * 2, close=ctx.data.close * 3, features=ctx.features + 100,
                        config=EnvConfig(), rows=np.arange(44))
    src = method.env_source(changed, ctx)
    assert src.rows.tolist() == list(range(0, 11))
    np.testing.assert_array_equal(src.close, 3 * ctx.data.close[:11])
    np.testing.assert_array_equal(src.open, 2 * ctx.data.open[:11])
    np.testing.assert_array_equal(src.features[:, 0], np.arange(11) + 100)
    part = EnvSource(open=ctx.data.open[5:8] * 2, close=ctx.data.close[5:8] * 3, features=ctx.features[5:8] + 100,
                     config=EnvConfig(), rows=np.arange(5, 8))
    src = method.env_source(part, ctx)  # rows it was not handed stay real
    np.testing.assert_array_equal(src.close, np.r_[ctx.data.close[:5], 3 * ctx.data.close[5:8], ctx.data.close[8:11]])


def test_online_episodes_start_inside_the_stage_windows() -> None:
    """Through the real env: every step of stage 1's rollouts decides at a bar of window A."""
    from himari.training.rl import OnlineRLConfig
    from himari.training.rollout import EnvRollout

    method, ctx = _method()
    default = EnvSource(open=ctx.data.open, close=ctx.data.close, features=ctx.features, config=EnvConfig())
    ctx.env_source = method.env_source(default, ctx)
    ctx.rank = 0
    cfg = OnlineRLConfig(n_envs=4, rollout_steps=30, episode_length=4, n_minibatches=1)
    buf = EnvRollout(cfg, obs_dim=5).collect(ctx, True, lambda o, s, st: (torch.zeros(len(o), 3), torch.zeros(len(o)), st),
                                             lambda n, d: (), "cpu")
    decided_rows = ctx.env_source.rows[buf.bars.numpy()]
    assert decided_rows.min() >= 0 and decided_rows.max() < 10  # decisions at bars 0..9, filled by bar 10


def test_empty_stage_and_bad_values_are_refused(small_prepared, tmp_path) -> None:
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    with pytest.raises(ConfigError, match=r"plugins\.curriculum.*easy_vol_quantile.*1\.5"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "methods": "curriculum",
                                               "plugins.curriculum.easy_vol_quantile": 1.5})
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                 "methods": "curriculum"},
                           sets=["curriculum.window_bars=100000", "train.progress=false", "recipe=none"])
    with pytest.raises(ConfigError, match=r"curriculum: stage 1 \(easy\) would be empty.*window_bars=100000"):
        Trainer(run, plugins=P, run_dir=tmp_path / "run", console=Console(file=io.StringIO())).fit()
    assert not (tmp_path / "run").exists()
    method = SPEC.factory(SPEC.config())
    with pytest.raises(ConfigError, match="example_rows"):
        method._keep(object(), 1)


def _labelled_rows_in_easy_windows(prepared, window: int) -> int:
    """An independent count: labelled train rows inside windows that are calm (volatility at most
    the median) and trending (trend strength at least the median)."""
    from himari.data import PreparedData

    data = PreparedData(prepared)
    close, labels = np.asarray(data.close), np.asarray(data.labels)
    stats = []
    for a0, b0 in data.split("train"):
        a = a0
        while a + window <= b0:
            r = np.log(close[a + 1:a + window] / close[a:a + window - 1])
            s = np.sqrt(np.mean((r - r.mean()) ** 2))
            stats.append((a, s, abs(r.sum()) / (s * np.sqrt(window - 1))))
            a += window
    vols = np.array([s[1] for s in stats])
    trends = np.array([s[2] for s in stats])
    easy = [a for a, v, t in stats if v <= np.quantile(vols, 0.5) and t >= np.quantile(trends, 0.5)]
    return int(sum((labels[a:a + window] >= 0).sum() for a in easy))


def test_run_trains_on_the_stages_and_resumes_mid_curriculum(small_prepared, tmp_path) -> None:
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    sets = ["train.epochs=3", "train.batch_size=128", "train.patience=0", "train.progress=false",
            "train.checkpoint_every=5", "curriculum.window_bars=288", "recipe=none"]

    def trainer(run_dir):
        run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                     "methods": "curriculum"}, sets=sets)
        return Trainer(run, plugins=P, run_dir=run_dir, console=Console(file=io.StringIO(), width=200))

    whole = trainer(tmp_path / "whole").fit()
    epochs = whole["methods"]["curriculum"]["epochs"]
    assert [e["stage"] for e in epochs] == [1, 2, 3]
    easy = _labelled_rows_in_easy_windows(small_prepared, 288)
    assert epochs[0]["size"] == easy and easy < epochs[1]["size"] < epochs[2]["size"]
    assert whole["steps"] == sum(e["size"] // 128 for e in epochs)  # the sampler's length follows the stage

    cut = trainer(tmp_path / "cut")
    end_epoch = cut.end_epoch

    def stop_after(epoch: int) -> None:
        end_epoch(epoch)
        if epoch == 1:  # after stage 2, before stage 3
            raise KeyboardInterrupt

    cut.end_epoch = stop_after
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    resumed = Trainer.resume(tmp_path / "cut", plugins=P, console=Console(file=io.StringIO())).fit()
    assert resumed["history"] == whole["history"]
    assert resumed["methods"] == whole["methods"]
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "cut" / "metrics.jsonl").read_text()
    assert json.loads(json.dumps(resumed["methods"])) == resumed["methods"]
