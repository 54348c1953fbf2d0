"""The CLI surface: plugins, train, backtest, bench, info, errors and completion."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from himari.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_plugins_list_table_and_json() -> None:
    out = invoke("plugins", "list")
    assert out.exit_code == 0, out.output
    for text in ("baseline-mlp", "16,643 (16,643)", "zscore", "jsonl", "himari 0.1.0"):
        assert text in out.output
    data = json.loads(invoke("plugins", "list", "--json", "--kind", "model").output)
    assert {r["kind"] for r in data["plugins"]} == {"model"}
    mlp = next(r for r in data["plugins"] if r["name"] == "baseline-mlp")
    assert mlp["parameters"] == {"total": 16_643, "trainable": 16_643}
    assert mlp["plugin"] == "himari_builtin.models.baseline_mlp"


def test_plugins_show_config_fields() -> None:
    out = invoke("plugins", "show", "baseline-mlp")
    assert out.exit_code == 0, out.output
    assert "hidden_sizes" in out.output and "class-weighted" in out.output and "Dropout probability" in out.output
    data = json.loads(invoke("plugins", "show", "zscore", "--json").output)
    assert data[0]["config"][0] == {"name": "clip", "type": "float", "required": False, "default": 10.0,
                                    "doc": "Clip standardised values to [-clip, clip]; 0 disables."}


def test_usage_errors_are_one_line_exit_2() -> None:
    for args, text in ((("plugins", "show", "baseline-mpl"), "did you mean baseline-mlp"),
                       (("plugins", "list", "--kind", "models"), "--kind 'models'"),
                       (("train", "baseline-mpl"), "unknown model 'baseline-mpl'; did you mean baseline-mlp"),
                       (("train", "baseline-mlp", "--set", "train.lr=fast"), "train.lr: expected a number"),
                       (("backtest", "nowhere"), "neither a run directory nor a baseline")):
        out = invoke(*args)
        assert out.exit_code == 2, (args, out.output)
        assert text in out.output and "Traceback" not in out.output


def test_verbose_shows_the_traceback() -> None:
    out = invoke("--verbose", "train", "baseline-mpl")
    assert out.exit_code == 2 and "Traceback" in out.output


def test_bad_config_file(tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: baseline-mlp\ntrain: {batchsize: 3}\n")
    out = invoke("train", "--config", str(cfg))
    assert out.exit_code == 2 and "train.batchsize: unknown key" in out.output and "batch_size" in out.output


def test_train_from_config_file_and_backtest_leaderboard(small_prepared, trained_run, tmp_path) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["epochs_run"] == 2
    out_json = tmp_path / "bt.json"
    out = invoke("backtest", str(trained_run), "buy-and-hold", "never-trade", "random", "--out", str(out_json))
    assert out.exit_code == 0, out.output
    for text in ("buy-and-hold", "never-trade", "random", "Sharpe", "test split"):
        assert text in out.output
    data = json.loads(out_json.read_text())
    names = [r["name"] for r in data["results"]]
    assert set(names) == {str(trained_run), "buy-and-hold", "never-trade", "random"}
    sharpes = [r["sharpe"] for r in data["results"]]
    assert sharpes == sorted(sharpes, reverse=True)
    run_row = next(r for r in data["results"] if r["kind"] == "run")
    # the backtest of the run's best checkpoint equals the Trainer's own test evaluation
    assert run_row["sharpe"] == summary["test"]["model"]["sharpe"]
    assert run_row["actions"] == summary["test"]["model"]["actions"]
    val = json.loads(invoke("backtest", str(trained_run), "--split", "validation", "--json",
                            "--out", str(tmp_path / "v.json")).output)
    assert val["results"][0]["sharpe"] == summary["validation"]["model"]["sharpe"]


def test_train_with_config_file_methods_and_set(small_prepared, tmp_path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: baseline-mlp\ndata: {small_prepared}\ntrain: {{epochs: 1, batch_size: 64}}\n"
                   "plugins: {baseline-mlp: {loss: focal}}\n")
    run = tmp_path / "run"
    out = invoke("train", "--config", str(cfg), "--method", "input-noise,confidence-penalty",
                 "--set", "input-noise.std=0.2", "--run-dir", str(run))
    assert out.exit_code == 0, out.output
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["plugins"]["baseline-mlp"]["loss"] == "focal"
    assert saved["plugins"]["input-noise"]["std"] == 0.2
    assert saved["methods"] == ["input-noise", "confidence-penalty"]
    assert "val sharpe" in out.output


def test_train_without_data_uses_the_synthetic_market(tmp_path, monkeypatch) -> None:
    import himari.data.pipeline as pipeline

    calls = []
    real = pipeline.default_prepared_dataset

    def small_default(**kw):
        calls.append(kw)
        return real(bars=8000, seed=1, cache=tmp_path / "cache")

    monkeypatch.setattr(pipeline, "default_prepared_dataset", small_default)
    out = invoke("train", "baseline-mlp", "--epochs", "1", "--run-dir", str(tmp_path / "run"),
                 "--set", "max_steps_per_epoch=3", "--batch-size", "64")
    assert out.exit_code == 0, out.output
    assert calls and "synth-8000-1" in json.loads((tmp_path / "run" / "summary.json").read_text())["data"]


def test_missing_tracker_extra_is_a_clear_error(small_prepared, tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        out = invoke("train", "baseline-mlp", "--data", str(small_prepared), "--tracker", "wandb",
                     "--run-dir", str(tmp_path / "r"))
        assert out.exit_code == 2 and "pip install 'himari[wandb]'" in out.output


def test_bench_quick_json(tmp_path) -> None:
    path = tmp_path / "bench.json"
    out = invoke("bench", "core", "--quick", "--repeats", "1", "--json", str(path))
    assert out.exit_code == 0, out.output
    data = json.loads(path.read_text())
    assert {r["suite"] for r in data["results"]} == {"env", "backtest", "ekf"}
    whats = [r["what"] for r in data["results"]]
    assert any("method='held_runs'" in w for w in whats) and any("method='per_bar'" in w for w in whats), whats
    assert all(r["rate"] > 0 for r in data["results"]) and data["machine"]["cpu"]
    assert invoke("bench", "gpu").exit_code == 2


def test_info_counts_plugins() -> None:
    data = json.loads(invoke("info", "--json").output)
    assert data["plugins"]["model"] >= 1 and data["plugins"]["tracker"] >= 3


def test_completion_of_plugin_names() -> None:
    from himari.cli.completion import complete_list, complete_model, complete_plugin

    assert complete_model("base") == ["baseline-mlp"]
    assert "zscore" in complete_plugin("z")
    assert complete_list("training-method")("input-noise,conf") == ["input-noise,confidence-penalty"]


def test_completion_through_click() -> None:
    """The completion hooks are wired to the `train` argument (what the shell script calls)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "_HIMARI_COMPLETE": "complete_bash", "COMP_WORDS": "himari train base", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-c", "from himari.cli import main; main()"], env=env,
                         capture_output=True, text=True)
    assert "baseline-mlp" in out.stdout
