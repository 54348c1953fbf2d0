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
