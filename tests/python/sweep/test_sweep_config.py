"""A sweep's settings, checked before Ray starts: the grid and random dimensions, which config
field each key names, bad keys and values, the trial count, the sweep file. No Ray here."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.errors import ConfigError
from himari.plugin.manager import get_plugins
from himari.sweep.config import build_sweep, covering_params
from himari.sweep.space import (
    check_distribution,
    parse_grid_option,
    parse_random_option,
    resolve_key,
)
from himari.training.config import merge_run_config

runner = CliRunner()


def _base(model: str = "baseline-mlp", sets: list[str] | None = None):
    return merge_run_config(plugins=get_plugins(), overrides={"model": model, "data": None}, sets=sets or [])


def _sweep(data: Path, **kw):
    return build_sweep(plugins=get_plugins(), model=kw.pop("model", "baseline-mlp"), data=str(data), **kw)


def test_grid_values_are_read_as_yaml_and_exponents_are_numbers() -> None:
    # YAML 1.1 reads 1e-4 (no dot) as a string; a learning rate of "1e-4" would be refused later
    assert parse_grid_option("lr=1e-4,3E-4,0.01") == ("lr", [1e-4, 3e-4, 0.01])
    assert parse_grid_option("loss=focal,cross-entropy") == ("loss", ["focal", "cross-entropy"])
    assert parse_random_option("weight-decay=loguniform:1e-5,1e-2") == ("weight-decay", "loguniform", [1e-5, 1e-2])
    with pytest.raises(ConfigError, match="at least two values"):
        parse_grid_option("lr=1e-4")
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid_option("lr")


@pytest.mark.parametrize(("key", "target"), [
    ("lr", "train.lr"), ("batch-size", "train.batch_size"), ("dropout", "baseline-mlp.dropout"),
    ("focal-gamma", "baseline-mlp.focal_gamma"), ("fee", "env.fee"), ("min-hold", "execution.min_hold"),
    ("baseline-mlp.label_smoothing", "baseline-mlp.label_smoothing"), ("env.slippage", "env.slippage"),
])
def test_a_bare_key_names_its_section(key: str, target: str) -> None:
    assert resolve_key(key, _base(), get_plugins()) == target


def test_keys_of_the_model_and_the_run_methods_resolve() -> None:
    pytest.importorskip("torch")
    assert resolve_key("n-envs", _base("ppo-lstm"), get_plugins()) == "ppo-lstm.n_envs"
    run = _base(sets=['methods=["input-noise"]'])
    assert resolve_key("std", run, get_plugins()) == "input-noise.std"
    with pytest.raises(ConfigError, match="not a setting"):  # not a method of this run
        resolve_key("std", _base(), get_plugins())


def test_an_unknown_key_names_the_closest_config_field() -> None:
    with pytest.raises(ConfigError, match=r"dropuot: .*did you mean dropout\b"):
        resolve_key("dropuot", _base(), get_plugins())
    with pytest.raises(ConfigError, match="did you mean batch-size"):
        resolve_key("batch-sise", _base(), get_plugins())
    with pytest.raises(ConfigError, match="unknown.*trian.lr|trian.lr.*unknown|trian"):
        resolve_key("trian.lr", _base(), get_plugins())
    with pytest.raises(ConfigError, match="--seeds"):
        resolve_key("seed", _base(), get_plugins())


@pytest.mark.parametrize(("kind", "values", "match"), [
    ("loguniform", [0, 1], "lower bound > 0"), ("int", [1.5, 3], "integers"), ("uniform", [2, 1], "below"),
    ("uniform", [1], "two bounds"), ("gauss", [0, 1], "unknown distribution"), ("choice", [1], "at least two"),
])
def test_bad_distributions_are_refused(kind: str, values: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_distribution(kind, values, "--random x")


def test_trial_count_is_grid_times_samples_times_seeds_times_folds(small_prepared: Path) -> None:
    s = _sweep(small_prepared, grid=["lr=1e-4,3e-4", "dropout=0,0.1,0.2"], options={"seeds": 2})
    assert s.n_trials == 2 * 3 * 2
    assert [d.target for d in s.dimensions] == ["train.lr", "baseline-mlp.dropout"]
    s = _sweep(small_prepared, grid=["lr=1e-4,3e-4"], random=["dropout=uniform:0,0.5"],
               options={"seeds": 3, "samples": 4, "walk_forward": 2})
    assert s.n_trials == 2 * 4 * 3 * 2 and len(s.folds) == 2


def test_walk_forward_trials_train_on_their_folds(small_prepared: Path) -> None:
    from himari.data import PreparedData
    from himari.evaluate.folds import walk_forward

    data = PreparedData(small_prepared)
    s = _sweep(small_prepared, grid=["lr=1e-4,3e-4"], options={"walk_forward": 3})
    folds = walk_forward(data, 3, mode="expanding", embargo=int(data.metadata["embargo"]), validation_fraction=0.2)
    assert s.folds == {f.name: f.splits() for f in folds}
    last = folds[-1]
    run = s.run_config(get_plugins(), {"lr": 3e-4}, 1, last.name)
    assert run.train.lr == 3e-4 and run.train.seed == 1
    assert [list(r) for r in run.splits["test"]] == last.splits()["test"]


def test_every_value_is_checked_before_anything_starts(small_prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dropout.*(1\.5|\[0, 1\)).*dropout=1\.5"):
        _sweep(small_prepared, grid=["lr=1e-4,3e-4", "dropout=0.1,1.5"])
    with pytest.raises(ConfigError, match="lr"):
        _sweep(small_prepared, grid=["lr=1e-4,-1"])
    with pytest.raises(ConfigError, match="loss"):
        _sweep(small_prepared, random=["loss=choice:focal,hinge"])
    out = tmp_path / "sw"
    res = runner.invoke(app, ["sweep", "baseline-mlp", "--data", str(small_prepared), "--grid", "dropuot=0,0.1",
                              "--out", str(out)])
    assert res.exit_code == 2 and "did you mean dropout" in res.output
    assert not out.exists()


def test_covering_params_reach_every_grid_value_and_both_ends_of_a_range(small_prepared: Path) -> None:
    s = _sweep(small_prepared, grid=["lr=1e-4,3e-4", "dropout=0,0.2"], random=["weight-decay=loguniform:1e-5,1e-2"])
    seen = covering_params(s)
    assert {(p["lr"], p["dropout"]) for p in seen} == {(1e-4, 0), (1e-4, 0.2), (3e-4, 0), (3e-4, 0.2)}
    assert {p["weight-decay"] for p in seen} == {1e-5, 1e-2}


def test_a_sweep_file_and_options_that_win_over_it(small_prepared: Path, tmp_path: Path) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text("model: baseline-mlp\nrun:\n  train: {epochs: 3, batch_size: 64}\ngrid:\n  lr: [1.0e-4, 3.0e-4]\n"
                 "random:\n  weight-decay: {loguniform: [1.0e-5, 1.0e-2]}\nsamples: 2\nseeds: 3\n"
                 "asha: {grace_period: 1, reduction_factor: 3}\ngpus_per_trial: 0\ncpus_per_trial: 2\n")
    s = build_sweep(plugins=get_plugins(), model=None, data=str(small_prepared), config_file=f,
                    options={"seeds": 2})
    assert s.model == "baseline-mlp" and s.seeds == (0, 1) and s.samples == 2
    assert s.asha and s.grace_period == 1 and s.reduction_factor == 3 and s.cpus_per_trial == 2.0
    assert [(d.key, d.kind) for d in s.dimensions] == [("lr", "grid"), ("weight-decay", "loguniform")]
    run = s.run_config(get_plugins(), {"lr": 1e-4, "weight-decay": 1e-3}, 0, None)
    assert (run.train.epochs, run.train.batch_size, run.train.weight_decay) == (3, 64, 1e-3)
    f.write_text("model: baseline-mlp\ngrdi:\n  lr: [1, 2]\n")
    with pytest.raises(ConfigError, match="grid"):
        build_sweep(plugins=get_plugins(), model=None, data=str(small_prepared), config_file=f)


@pytest.mark.parametrize(("options", "match"), [
    ({"gpus_per_trial": 1.5}, "at most 1"), ({"cpus_per_trial": 0}, "some resources"),
    ({"asha": True}, "more --epochs"), ({"samples": 3}, "without --random"), ({"seeds": 0}, "--seeds"),
])
def test_bad_sweep_options_are_refused(small_prepared: Path, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _sweep(small_prepared, grid=["lr=1e-4,3e-4"], sets=["train.epochs=1"], options=options)


def test_an_existing_sweep_directory_is_refused(tmp_path: Path) -> None:
    from himari.sweep.runner import check_new_directory

    (tmp_path / "sw").mkdir()
    check_new_directory(tmp_path / "sw")  # empty: fine
    (tmp_path / "sw" / "sweep.yaml").write_text("x")
    with pytest.raises(ConfigError, match="--resume"):
        check_new_directory(tmp_path / "sw")


def test_resume_takes_no_new_settings(tmp_path: Path) -> None:
    res = runner.invoke(app, ["sweep", "--resume", str(tmp_path), "--grid", "lr=1,2", "--seeds", "2"])
    assert res.exit_code == 2 and "--grid" in res.output and "--seeds" in res.output


def test_without_ray_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, small_prepared: Path,
                                                        tmp_path: Path) -> None:
    from himari.plugin import extras

    real = extras.is_installed
    monkeypatch.setattr(extras, "is_installed", lambda m: m != "ray" and real(m))
    out = tmp_path / "sw"
    res = runner.invoke(app, ["sweep", "baseline-mlp", "--data", str(small_prepared), "--grid", "lr=1e-4,3e-4",
                              "--out", str(out)])
    assert res.exit_code == 2 and "pip install 'himari[sweep]'" in res.output
    assert not out.exists()


def test_an_unreachable_cluster_address_is_refused_at_once(tmp_path: Path) -> None:
    import socket

    from himari.sweep.runner import check_address

    with pytest.raises(ConfigError, match="--address 127.0.0.1:1: nothing answers at 127.0.0.1:1"):
        check_address("127.0.0.1:1")
    with pytest.raises(ConfigError, match="nothing answers"):
        check_address("ray://127.0.0.1:1")
    with socket.socket() as server:  # something listening: left to Ray
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
    check_address("auto")
    check_address(None)


def test_a_sweep_at_an_unreachable_address_leaves_nothing(small_prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="himari sweep needs ray: pip install 'himari[sweep]'")
    out = tmp_path / "sw"
    res = runner.invoke(app, ["sweep", "baseline-mlp", "--data", str(small_prepared), "--grid", "lr=1e-4,3e-4",
                              "--address", "127.0.0.1:1", "--out", str(out)])
    assert res.exit_code == 2 and "nothing answers" in res.output
    assert not out.exists()


@pytest.mark.parametrize("item", ["lr=1e-3,0.001", "lr=0.01,0.02,1e-2", "loss=focal,focal"])
def test_a_grid_value_given_twice_is_refused(item: str, small_prepared: Path, tmp_path: Path) -> None:
    """A repeat ran the same configuration twice, counted as two trials by the deflated Sharpe."""
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid_option(item)
    f = tmp_path / "s.yaml"
    key, _, values = item.partition("=")
    f.write_text(f"grid:\n  {key}: [{values}]\n")
    with pytest.raises(ConfigError, match=f"grid.{key}: .* given twice"):
        _sweep(small_prepared, config_file=f)
    with pytest.raises(ConfigError, match="given twice"):
        check_distribution(*parse_random_option(f"x=choice:{values}")[1:], "--random x")


@pytest.mark.parametrize("assignment, fixed", [("data=/elsewhere", "data"), ("model=cql", "model"),
                                                ("seed=3", "train.seed"), ("train.seed=3", "train.seed"),
                                                ("splits.train=[0,5]", "splits")])
def test_a_setting_the_sweep_gives_every_trial_is_refused_in_set(assignment: str, fixed: str,
                                                                  small_prepared: Path) -> None:
    """``--set data=B`` trained every trial on another data set than the sweep names and scores."""
    with pytest.raises(ConfigError, match=f"a sweep sets {fixed} for every run"):
        _sweep(small_prepared, grid=["lr=1e-3,1e-2"], sets=[assignment])
