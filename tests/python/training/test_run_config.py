"""Run configs: YAML, options and --set merged and validated against the plugins' configs."""

from __future__ import annotations

import pytest

from himari.errors import ConfigError
from himari.plugin import UnknownPluginError
from himari.plugin.manager import get_plugins
from himari.training.config import merge_run_config

P = get_plugins()


def write(tmp_path, text: str):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_and_model_default_preprocessing() -> None:
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp"})
    assert run.preprocess == ["zscore"] and run.trackers == ["jsonl"]
    d = run.to_dict()
    assert d["plugins"]["baseline-mlp"]["hidden_sizes"] == [128, 64]
    assert d["train"]["epochs"] == 10


def test_yaml_then_options_then_set(tmp_path) -> None:
    cfg = write(tmp_path, "model: baseline-mlp\ntrain: {epochs: 4, lr: 0.01}\n"
                          "plugins: {baseline-mlp: {loss: focal}}\n")
    run = merge_run_config(plugins=P, config_file=cfg, overrides={"train.epochs": 2},
                           sets=["lr=0.5", "baseline-mlp.dropout=0.3", "env.fee=0.0002"])
    assert run.train.epochs == 2 and run.train.lr == 0.5
    assert run.plugin_configs["baseline-mlp"].loss == "focal"
    assert run.plugin_configs["baseline-mlp"].dropout == 0.3
    assert run.env.fee == 0.0002


@pytest.mark.parametrize("text, match", [
    ("model: baseline-mlp\ntrian: {}\n", r"trian: unknown key .*did you mean train"),
    ("model: baseline-mlp\ntrain: {epoch: 3}\n", r"train\.epoch: unknown key .*did you mean epochs"),
    ("model: baseline-mlp\ntrain: {epochs: three}\n", r"train\.epochs: expected an integer"),
    ("model: baseline-mlp\nplugins: {baseline-mlp: {loss: mse}}\n", r"plugins\.baseline-mlp\.loss: expected one of"),
    ("model: baseline-mlp\nplugins: {baseline-mlp: {widths: [1]}}\n", r"plugins\.baseline-mlp\.widths: unknown key"),
    ("model: baseline-mlp\nplugins: {zscroe: {}}\n", r"plugins\.zscroe: unknown key .*did you mean zscore"),
    ("model: baseline-mlp\ntrain: {epochs: 0}\n", r"train: epochs must be >= 1"),
    ("model: baseline-mlp\nplugins: {baseline-mlp: {dropout: 1.5}}\n", r"plugins\.baseline-mlp: dropout"),
    ("- just\n- a list\n", r"expected a mapping"),
    ("model: [\n", r"not valid YAML"),
])
def test_bad_configs_name_the_key(tmp_path, text, match) -> None:
    with pytest.raises(ConfigError, match=match):
        merge_run_config(plugins=P, config_file=write(tmp_path, text))


def test_unknown_plugins_are_usage_errors() -> None:
    with pytest.raises(UnknownPluginError, match="did you mean baseline-mlp"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mpl"})
    with pytest.raises(UnknownPluginError, match="unknown preprocessor 'zcore'"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "preprocess": "zcore"})
    with pytest.raises(ConfigError, match="--set 'nonsense': expected key=value"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=["nonsense"])
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=["bogus=1"])


def test_explicit_splits_are_checked_and_used(small_prepared, tmp_path) -> None:
    """A run may train on row ranges of its own (a walk-forward fold): they are validated,
    recorded in config.yaml, used for training and evaluation, and by a backtest of the run."""
    import io
    import json

    import yaml
    from rich.console import Console

    from himari.data import PreparedData
    from himari.errors import ConfigError
    from himari.plugin.manager import get_plugins
    from himari.training.assemble import load_trained
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    data = PreparedData(small_prepared)
    (a, b), = data.split("train")
    splits = {"train": [[a, a + 1500]], "validation": [[a + 1510, a + 2000]], "test": [[a + 2010, a + 2600]]}
    bad = [({"train": [[5, 3]], "validation": [[10, 20]], "test": [[30, 40]]}, "start < stop"),
           ({"train": [[0, 100]], "validation": [[50, 150]], "test": [[200, 300]]}, "overlaps"),
           ({"train": [[0, 100]], "test": [[200, 300]]}, "train, validation and test")]
    for value, message in bad:
        try:
            merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                         "splits": value})
        except ConfigError as e:
            assert message in str(e)
        else:
            raise AssertionError(f"{value} was accepted")
    far = {"train": [[0, 100]], "validation": [[200, 300]], "test": [[400, 10**7]]}
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                       "splits": far})
    try:
        Trainer(run, plugins=plugins, run_dir=tmp_path / "far", console=Console(file=io.StringIO())).fit()
    except ConfigError as e:
        assert "goes past" in str(e)
    else:
        raise AssertionError("a range past the data was accepted")
    assert not (tmp_path / "far").exists()

    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                       "splits": splits},
                           sets=["train.epochs=1", "train.max_steps_per_epoch=3", "train.batch_size=64"])
    trainer = Trainer(run, plugins=plugins, run_dir=tmp_path / "r", console=Console(file=io.StringIO()))
    summary = trainer.fit()
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["splits"] == splits
    assert summary["test"]["buy-and-hold"]["decisions"] == 590 - 1  # the test range's bars, less the last
    policy = load_trained(tmp_path / "r", plugins=plugins)
    assert policy.splits_of(data)["test"] == [(a + 2010, a + 2600)]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["test"]["model"]["decisions"] == 589


def test_a_section_set_to_null_cannot_drop_the_settings_given_before_it() -> None:
    """``--epochs 1 --set train=null`` trained for the default 10 epochs: the section was wiped."""
    with pytest.raises(ConfigError, match="would drop the train settings"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "train.epochs": 1}, sets=["train=null"])
    with pytest.raises(ConfigError, match="would drop the baseline-mlp settings"):
        merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=["baseline-mlp.dropout=0.3",
                                                                               "baseline-mlp=null"])
    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp"}, sets=["env=null", "labels=null"])
    assert run.train.epochs == 10 and run.labels is None  # nothing given before: nothing dropped
