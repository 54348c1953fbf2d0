"""``himari train --augment SET``: synthetic rows reach the train split only (preprocessed with
the states fitted on real train rows), and a set from another data set, one whose generator read
a validation or test row, a damaged one, or a model that cannot use it are refused before any
run file is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from himari.cli import app

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_baseline_mlp_adds_synthetic_rows_to_train_only() -> None:
    from himari.plugin.api import SyntheticRows
    from himari_builtin.models.baseline_mlp.model import BaselineMLP

    features = np.arange(40, dtype=np.float32).reshape(20, 2)
    labels = np.array([1] * 20)
    labels[3] = -1
    synth = SyntheticRows(features=np.full((5, 2), -7, np.float32), labels=np.array([0, 2, 2, 1, 0]),
                          source="s", generator="g")
    ctx = SimpleNamespace(features=features, labels=labels, synthetic=synth,
                          splits={"train": [(0, 10)], "validation": [(12, 15)], "test": [(17, 20)]})
    model = BaselineMLP.__new__(BaselineMLP)
    train = model.dataset(ctx, "train")
    x, y, r = train.tensors
    assert len(train) == 9 + 5  # 10 train rows, one without a label, then the synthetic ones
    np.testing.assert_array_equal(x[-5:].numpy(), synth.features)
    np.testing.assert_array_equal(y[-5:].numpy(), synth.labels)
    np.testing.assert_array_equal(r.numpy(), [0, 1, 2, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1])  # no prepared row
    for split, rows in (("validation", [12, 13, 14]), ("test", [17, 18, 19])):
        vx, vy, vr = model.dataset(ctx, split).tensors
        np.testing.assert_array_equal(vr.numpy(), rows)
        np.testing.assert_array_equal(vx.numpy(), features[rows])  # real rows only
        assert not (vx.numpy() == -7).any()


def test_training_with_a_set_records_it_and_feeds_zscored_synthetic_rows(small_prepared: Path, timegan_set: Path,
                                                                          tmp_path: Path) -> None:
    from himari.training.augment import synthetic_rows
    from himari.training.preprocess import load_states

    run = tmp_path / "run"
    r = invoke("train", "baseline-mlp", "--data", small_prepared, "--augment", timegan_set, "--epochs", 1,
               "--batch-size", 256, "--run-dir", run)
    assert r.exit_code == 0, r.output
    record = json.loads((run / "augment.json").read_text())
    labels = np.load(timegan_set / "labels.npy")
    assert record["rows"] == int((labels >= 0).sum())
    assert record["generator"] == "timegan"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["augment"]["set_id"] == record["set_id"]
    # the synthetic rows go through zscore with the mean and std of the REAL train rows
    from himari.data import PreparedData
    from himari.plugin.manager import get_plugins
    from himari.training.config import load_run_config

    data = PreparedData(small_prepared)
    cfg = load_run_config(run, get_plugins())
    states = load_states(run)
    rows, _ = synthetic_rows(timegan_set, data, {n: data.split(n) for n in ("train", "validation", "test")},
                             states, cfg.plugin_configs, get_plugins(), 0)
    train = np.concatenate([np.arange(a, b) for a, b in data.split("train")])
    real = np.asarray(data.features, np.float64)[train]
    mean, std = real.mean(axis=0), real.std(axis=0)
    raw = np.load(timegan_set / "windows.npy").reshape(-1, real.shape[1])[labels.reshape(-1) >= 0]
    expected = np.clip((raw - mean) / np.where(std > 0, std, 1), -10, 10)
    np.testing.assert_allclose(rows.features, expected, rtol=1e-3, atol=1e-3)


def test_a_model_without_synthetic_rows_refuses_augment(small_prepared: Path, timegan_set: Path,
                                                        tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = invoke("train", "ppo-lstm", "--data", small_prepared, "--augment", timegan_set, "--run-dir", run)
    assert r.exit_code == 2, r.output
    assert "does not train on synthetic rows" in r.output and "baseline-mlp" in r.output
    assert not run.exists()


@pytest.mark.parametrize("preprocess", ["fan,zscore", "zscore,conversational-ae"])
def test_a_preprocessor_that_reads_earlier_rows_refuses_synthetic_windows(small_prepared: Path, timegan_set: Path,
                                                                         tab_ddpm_set: Path, tmp_path: Path,
                                                                         preprocess: str) -> None:
    """fan and conversational-ae read the rows before each row; a synthetic window has none, so
    a one-row Tab-DDPM set came out as one repeated input under fan. Refused for both kinds of set."""
    extra = ["--set", "conversational-ae.window=4", "--set", "conversational-ae.epochs=1",
             "--set", "conversational-ae.hidden=4", "--set", "conversational-ae.target=ret_1",  # features only:
             "--set", "conversational-ae.contexts=[ret_3,ret_12]"] if "conversational" in preprocess else []  # no bars
    for synthetic in (timegan_set, tab_ddpm_set):
        run = tmp_path / f"run-{synthetic.name}"
        r = invoke("train", "baseline-mlp", "--data", small_prepared, "--augment", synthetic, "--epochs", 1,
                   "--preprocess", preprocess, *extra, "--run-dir", run)
        assert r.exit_code == 2, r.output
        name = preprocess.split(",")[0 if preprocess.startswith("fan") else 1]
        assert f"preprocessor {name!r} reads the rows before each row" in " ".join(r.output.split()), r.output
        assert not run.exists()


def test_a_set_of_one_window_is_checked_too(small_prepared: Path, timegan_set: Path, tmp_path: Path) -> None:
    """One window is one run however it is joined: its rows are compared with each row alone."""
    from himari.errors import ConfigError
    from himari.plugin.manager import get_plugins
    from himari.training.augment import transform_rows
    from himari.training.config import load_run_config
    from himari.training.preprocess import load_states

    run = tmp_path / "run"
    r = invoke("train", "baseline-mlp", "--data", small_prepared, "--epochs", 1, "--preprocess", "fan,zscore",
               "--set", "train.max_steps_per_epoch=2", "--run-dir", run)
    assert r.exit_code == 0, r.output
    plugins = get_plugins()
    cfg = load_run_config(run, plugins)
    meta = json.loads((timegan_set / "metadata.json").read_text())
    one = np.load(timegan_set / "windows.npy")[:1].reshape(-1, len(meta["channels"]))
    with pytest.raises(ConfigError, match="preprocessor 'fan' reads the rows before each row"):
        transform_rows(one, int(meta["window"]), load_states(run), cfg.plugin_configs, plugins,
                       tuple(meta["channels"]), 0, 300, timegan_set)


def test_a_set_from_another_data_set_is_refused(tmp_path: Path, timegan_set: Path) -> None:
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    other = tmp_path / "other"
    prepare(load_synthetic(SynthConfig(bars=6000, seed=6)), other, PrepareConfig())
    run = tmp_path / "run"
    r = invoke("train", "baseline-mlp", "--data", other, "--augment", timegan_set, "--epochs", 1, "--run-dir", run)
    assert r.exit_code == 2, r.output
    assert "made from another data set" in r.output
    assert not run.exists()


def test_a_damaged_set_is_refused(small_prepared: Path, timegan_set: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "set"
    shutil.copytree(timegan_set, damaged)
    w = np.load(damaged / "windows.npy")
    w[0, 0, 0] += 1
    np.save(damaged / "windows.npy", w)
    run = tmp_path / "run"
    r = invoke("train", "baseline-mlp", "--data", small_prepared, "--augment", damaged, "--epochs", 1,
               "--run-dir", run)
    assert r.exit_code == 2, r.output
    assert "does not match the hash" in r.output
    assert not run.exists()
    r = invoke("train", "baseline-mlp", "--data", small_prepared, "--augment", small_prepared, "--epochs", 1,
               "--run-dir", run)
    assert r.exit_code == 2 and "not a himari synthetic set" in r.output, r.output


def test_overlap_with_validation_or_test_counts_the_labels_lookahead(timegan_set: Path) -> None:
    """Fitted on rows [s, e) whose labels read up to row e - 1 + look-ahead: a validation range
    starting at e - 1 + look-ahead overlaps, one starting at e + look-ahead does not."""
    from himari.data.synthetic_set import SyntheticSet
    from himari.errors import DataError

    s = SyntheticSet(timegan_set)
    (start, stop), = s.train_ranges
    la = s.lookahead
    assert la == 6
    ok = {"train": [(start, stop)], "validation": [(stop + la, stop + la + 10)], "test": [(stop + la + 20, stop + la + 30)]}
    s.check_ranges(ok)
    bad = {**ok, "validation": [(stop + la - 1, stop + la + 10)]}
    with pytest.raises(DataError, match=r"overlap the validation rows"):
        s.check_ranges(bad)
    before = {**ok, "test": [(start - 10, start + 1)]}
    with pytest.raises(DataError, match=r"overlap the test rows"):
        s.check_ranges(before)
    # the data's embargo, where longer than the look-ahead, keeps its rows out of the set's too
    s.check_ranges({**ok, "validation": [(stop + 50, stop + 60)], "test": []}, embargo=50)
    with pytest.raises(DataError, match=r"the data's embargo of 50 rows keeps rows up to \d+ out\), which overlap "
                                        r"the validation rows"):
        s.check_ranges(ok, embargo=50)


def test_a_run_whose_validation_covers_the_sets_train_period_is_refused(small_prepared: Path, timegan_set: Path,
                                                                        tmp_path: Path) -> None:
    """A walk-forward style run whose validation period is the set's train period."""
    from himari.data.synthetic_set import SyntheticSet

    (start, stop), = SyntheticSet(timegan_set).train_ranges
    mid = (start + stop) // 2
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"splits": {"train": [[stop + 10, stop + 800]],
                                                 "validation": [[mid, stop]],
                                                 "test": [[stop + 810, stop + 1200]]}}))
    run = tmp_path / "run"
    r = invoke("train", "baseline-mlp", "--data", small_prepared, "--augment", timegan_set, "--config", config,
               "--epochs", 1, "--run-dir", run)
    assert r.exit_code == 2, r.output
    assert "overlap the validation rows" in r.output
    assert not run.exists()


def test_resume_refuses_a_set_whose_content_changed(tmp_path: Path) -> None:
    from himari.errors import ConfigError
    from himari.training.augment import AUGMENT_JSON, check_resumed_set

    (tmp_path / AUGMENT_JSON).write_text(json.dumps({"set_id": "a" * 64}))
    check_resumed_set(tmp_path, {"set_id": "a" * 64, "path": "/sets/s"})  # the same set: fine
    with pytest.raises(ConfigError, match="the synthetic set changed since this run started"):
        check_resumed_set(tmp_path, {"set_id": "b" * 64, "path": "/sets/s"})
