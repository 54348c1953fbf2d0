"""``himari evaluate`` end to end on a small synthetic market: the files, the chained
out-of-sample result against an independent recomputation, the moving-average rule fitted before
each test block and the action mix summed over folds, resuming a killed evaluation to the same
result, ``--strict``, and bad input refused before anything is written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from himari.cli import app

pytest.importorskip("torch")

runner = CliRunner()
ARGS = ["--walk-forward", "2", "--seeds", "2", "--epochs", "1", "--batch-size", "128", "--resamples", "200",
        "--set", "train.max_steps_per_epoch=8"]
# Subprocesses train on the CPU on any machine (as conftest's fixture does in this process).
ENV = {**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def evaluated(small_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ev") / "ev"
    with pytest.MonkeyPatch.context() as mp:  # --data relative to where the evaluation starts
        mp.chdir(small_prepared.parent)
        res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", small_prepared.name, "--out", str(out), *ARGS,
                                  "--cpcv", "3,1"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    return out


def test_the_data_path_is_recorded_absolutely(evaluated: Path, small_prepared: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    assert yaml.safe_load((evaluated / "evaluation.yaml").read_text())["data"] == str(small_prepared.resolve())
    monkeypatch.chdir(tmp_path)  # so --resume works from anywhere
    res = runner.invoke(app, ["evaluate", "--resume", str(evaluated), "--json"])
    assert res.exit_code == 0, res.output


def test_settings_with_a_relative_data_path_say_where_to_resume(tmp_path: Path) -> None:
    import yaml

    from himari.evaluate.runner import EvaluationConfig

    (tmp_path / "ev").mkdir()  # an evaluation.yaml written before the path was recorded absolutely
    settings = EvaluationConfig(model="baseline-mlp", data="p60").to_dict()
    (tmp_path / "ev" / "evaluation.yaml").write_text(yaml.safe_dump(settings))
    res = runner.invoke(app, ["evaluate", "--resume", str(tmp_path / "ev")])
    assert res.exit_code == 2, res.output
    assert "data p60 is relative to the directory the evaluation was started in" in res.output
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["evaluation.yaml"]


def test_files_and_the_chained_result(evaluated: Path, small_prepared: Path) -> None:
    import pandas as pd

    from himari.data import PreparedData
    from himari.evaluation.policy import evaluate_actions
    from himari.training.assemble import load_trained

    ev = json.loads((evaluated / "evaluation.json").read_text())
    assert ev["format"] == "himari-evaluation" and ev["model"] == "baseline-mlp"
    assert [(f["fold"], f["name"]) for f in ev["folds"]] == [(0, "fold-0"), (1, "fold-1")]
    assert set(ev["series"]) >= {"model-seed-0", "model-seed-1", "model-ensemble", "buy-and-hold", "never-trade",
                                 "random", "ma-cross"}
    data = PreparedData(small_prepared)
    tests = [tuple(r) for f in ev["folds"] for r in f["test"]]
    # the chained result of seed 1, recomputed from the runs' checkpoints and the folds' test blocks
    acts = np.concatenate([load_trained(f["runs"]["1"]["run_dir"]).actions(data, [tuple(r) for r in f["test"]])
                           for f in ev["folds"]])
    m = evaluate_actions(data.open, data.close, tests, acts)
    assert ev["walk_forward"]["seeds"]["1"]["sharpe"] == pytest.approx(m["sharpe"], rel=1e-12)
    series = pd.read_parquet(evaluated / "series" / "model-seed-1.parquet")
    assert series["equity"].iloc[-1] - 1 == pytest.approx(m["total_return"], rel=1e-9)
    assert ev["walk_forward"]["mean"]["sharpe"] == pytest.approx(
        np.mean([ev["walk_forward"]["seeds"][s]["sharpe"] for s in ("0", "1")]))
    # buy-and-hold on the same blocks: each block from flat, bought at the second bar's open moved
    # up by the slippage, the fee taken from the notional, marked at the block's last close
    bh = ev["walk_forward"]["baselines"]["buy-and-hold"]
    growth = np.prod([data.close[b - 1] / (data.open[a + 1] * (1 + 5e-4)) / (1 + 1e-3) for a, b in tests])
    assert bh["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    # every fold trained on rows before its validation block, validated before its test block
    for f in ev["folds"]:
        assert f["train"][-1][1] <= f["validation"][0][0] and f["validation"][-1][1] <= f["test"][0][0]
    assert ev["cpcv"]["splits"] == 3 and len(ev["cpcv"]["paths"]) == 2  # C(2, 0) = 1 path x 2 seeds
    assert {g["name"] for g in ev["gates"]} == {"oos_sharpe", "dsr", "p_vs_buy_and_hold", "no_collapse"}
    assert ev["statistics"]["n_trials"] == 2


def test_ma_cross_fit_and_action_mix_of_each_fold(evaluated: Path, small_prepared: Path) -> None:
    """Per fold, the moving-average rule is fitted on that fold's train and validation rows only
    (never its test block); over the folds, each seed's decision counts and action mix are the
    sums over its folds (the random baseline's rate: test_recipe_search, whose runs trade)."""
    from himari.data import PreparedData
    from himari.evaluate.baselines import fit_ma_cross
    from himari.trading import EnvConfig

    ev = json.loads((evaluated / "evaluation.json").read_text())
    data = PreparedData(small_prepared)
    bpy = ev["walk_forward"]["bars_per_year"]
    moved = 0
    for f in ev["folds"]:
        fitted = [tuple(r) for r in (*f["train"], *f["validation"])]
        fast, slow = fit_ma_cross(data.open, data.close, fitted, EnvConfig(), bpy)
        assert f["baselines"]["ma-cross"]["params"] == {"fast": fast, "slow": slow}
        moved += (fast, slow) != fit_ma_cross(data.open, data.close, [tuple(r) for r in f["test"]], EnvConfig(), bpy)
    assert moved  # the test block alone would have fitted other windows
    for s in ("0", "1"):
        folds = [f["runs"][s]["metrics"] for f in ev["folds"]]
        total = sum(m["decisions"] for m in folds)
        chained = ev["walk_forward"]["seeds"][s]
        assert chained["decisions"] == total
        for a in ("SELL", "HOLD", "BUY"):
            want = sum(m["model_decisions"][a] * m["decisions"] for m in folds) / total
            assert chained["model_decisions"][a] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_strict_fails_when_a_gate_fails(evaluated: Path) -> None:
    ev = json.loads((evaluated / "evaluation.json").read_text())
    assert not all(g["passed"] for g in ev["gates"])  # a one-epoch MLP on noise has no edge
    res = runner.invoke(app, ["evaluate", "--resume", str(evaluated), "--strict"])
    assert res.exit_code == 3, res.output


def _stable(ev: dict) -> dict:
    ev = json.loads(json.dumps(ev))
    ev.pop("created_at")
    for f in ev["folds"]:
        for r in f["runs"].values():
            r.pop("run_dir")
    return ev


def test_a_killed_evaluation_resumes_to_the_same_result(small_prepared: Path, tmp_path: Path) -> None:
    himari = [sys.executable, "-m", "himari", "evaluate", "baseline-mlp", "--data", str(small_prepared), *ARGS]
    whole = subprocess.run([*himari, "--out", str(tmp_path / "whole")], capture_output=True, text=True, env=ENV,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([*himari, "--out", str(tmp_path / "cut")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 300
    while not (tmp_path / "cut" / "runs" / "fold-0" / "seed-1" / "summary.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "cut" / "evaluation.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "himari", "evaluate", "--resume", str(tmp_path / "cut")],
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "whole" / "evaluation.json").read_text())
    b = json.loads((tmp_path / "cut" / "evaluation.json").read_text())
    assert _stable(a) == _stable(b)


@pytest.mark.parametrize("sig, codes", [(signal.SIGINT, (130, -signal.SIGINT)), (signal.SIGTERM, (143,))])
def test_an_interrupted_evaluation_says_how_to_continue(small_prepared: Path, tmp_path: Path, sig: int,
                                                        codes: tuple[int, ...]) -> None:
    """Ctrl-C, or SIGTERM (a scheduler, timeout): the directory is kept and the line to resume it
    printed. (CPython may end an interrupted ``-m`` run by SIGINT itself, which a shell reports as
    130 too.)"""
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "himari", "evaluate", "baseline-mlp", "--data",
                             str(small_prepared), "--out", str(out), *ARGS, "--epochs", "500"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not (out / "runs" / "fold-0" / "seed-0" / "metrics.jsonl").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in codes, err
    assert f"continue the evaluation (its finished runs are kept) with: himari evaluate --resume {out}" in err
    assert (out / "evaluation.yaml").exists() and not (out / "evaluation.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--gate", "sharpe>=2"], "unknown gate 'sharpe'"),
    (["--cpcv", "3"], "expected N,K"),
    (["--cpcv", "3,3"], "1 <= k < N"),
    (["--walk-forward", "40"], "fewer than"),
    (["--grid", "train.lr=0.001"], "at least two values"),
    (["--set", "baseline-mlp.dropout=7"], "dropout"),
    (["--embargo", "1"], "lookahead"),
    (["--set", "data=/elsewhere"], "an evaluation sets data for every run; use --data"),
    (["--set", "seed=3"], "an evaluation sets train.seed for every run; use --seeds"),
    (["--grid", "train.seed=1,2"], "--grid train.seed: an evaluation sets train.seed"),
    (["--set", "splits.train=[0,5]"], "an evaluation sets splits for every run"),
    (["--set", "model=cql"], "an evaluation sets model for every run"),
    (["--gate", "pbo<0.3"], "give --grid with at least two"),
    (["--gate", "cpcv_sharpe>0"], "needs --cpcv"),
    (["--grid", "train.lr=1e-3,0.001"], "0.001 is given twice"),
    (["--gate", "oos_sharpe>=1e"], "'1e' is not a number"),
    (["--gate", "no_collapse>1"], "no_collapse takes no threshold"),
    (["--embargo", "100000"], "no walk-forward fold fits (--walk-forward)"),
])
def test_bad_input_is_refused_and_writes_nothing(small_prepared: Path, tmp_path: Path, args: list[str],
                                                 message: str) -> None:
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out), *ARGS,
                              *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_an_existing_directory_is_refused(small_prepared: Path, tmp_path: Path) -> None:
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "x").write_text("")
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(tmp_path / "ev"),
                              *ARGS])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "not empty (it holds no run to resume; choose a new directory)" in said
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["x"]


def test_an_existing_evaluation_is_refused_naming_how_to_resume_it(evaluated: Path, small_prepared: Path) -> None:
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(evaluated),
                              *ARGS])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and f"himari evaluate --resume {evaluated} continues it" in said, said


def test_a_fold_run_is_backtested_on_its_own_test_block(evaluated: Path, tmp_path: Path) -> None:
    """`himari backtest` of one of the evaluation's runs scores the fold's test block (what the
    evaluation scored), not the data set's own test split."""
    ev = json.loads((evaluated / "evaluation.json").read_text())
    fold = ev["folds"][0]
    res = runner.invoke(app, ["backtest", fold["runs"]["0"]["run_dir"], "--out", str(tmp_path / "bt.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "bt.json").read_text())
    assert out["results"][0]["sharpe"] == pytest.approx(fold["runs"]["0"]["metrics"]["sharpe"], rel=1e-12)
    both = runner.invoke(app, ["backtest", fold["runs"]["0"]["run_dir"], ev["folds"][1]["runs"]["0"]["run_dir"],
                               "--out", str(tmp_path / "bt2.json")])
    assert both.exit_code == 2 and "different rows" in both.output


def test_a_fold_run_is_reported_on_its_own_test_block(evaluated: Path) -> None:
    """`himari report` of a fold's run scores the fold's test block, as the evaluation did; the
    data set's own test split is other bars, so its Sharpe would differ."""
    from himari.data import PreparedData
    from himari.training.report_runs import score_run

    ev = json.loads((evaluated / "evaluation.json").read_text())
    run = ev["folds"][0]["runs"]["0"]
    target = score_run(run["run_dir"])
    assert target.summary["sharpe"] == pytest.approx(run["metrics"]["sharpe"], rel=1e-12)
    # the recipe's rules impose HOLDs; collapse is judged on the model's own decisions, as the
    # evaluation judged it (the report flagged runs whose executed mix was mostly HOLD)
    decisions = run["metrics"]["model_decisions"]
    assert decisions != pytest.approx(run["metrics"]["actions"])  # the rules are active here
    assert target.summary["model_decisions"] == pytest.approx(decisions, abs=1e-12)
    assert target.summary["collapsed"] == (max(decisions.values()) > 0.9)
    assert target.folds[0].metrics["collapsed"] == target.summary["collapsed"]
    (a, b), = ev["folds"][0]["test"]
    assert target.scope == f"test split, {b - a:,} bars"
    assert PreparedData(ev["data"]).split("test") != [(a, b)]


def test_drawdown_durations_of_the_chained_curve(evaluated: Path) -> None:
    """Bars under water, counted by hand on the saved series."""
    import pandas as pd

    ev = json.loads((evaluated / "evaluation.json").read_text())
    eq = np.r_[1.0, pd.read_parquet(evaluated / "series" / "model-seed-0.parquet")["equity"].to_numpy()]
    longest = run = 0
    peak = eq[0]
    for e in eq[1:]:
        run = run + 1 if e < peak else 0
        peak = max(peak, e)
        longest = max(longest, run)
    assert ev["walk_forward"]["seeds"]["0"]["longest_underwater_bars"] == longest


@pytest.mark.parametrize("existing", [False, True])
def test_a_first_run_that_fails_leaves_nothing_behind(small_prepared: Path, tmp_path: Path, existing: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the first run (a device the build lacks, say) kept the directory, its
    settings and the half-written run: the first run had started, which counted as finished."""
    from himari.evaluate.runner import Evaluation

    def failing(self: Evaluation, run) -> None:
        run.directory.mkdir(parents=True)
        (run.directory / "metrics.jsonl").write_text("{}\n")
        raise RuntimeError("the first run failed")

    monkeypatch.setattr(Evaluation, "_train", failing)
    out = tmp_path / "ev"
    if existing:
        out.mkdir()
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out), *ARGS])
    assert res.exit_code == 1 and "the first run failed" in res.output
    assert (list(out.iterdir()) == []) if existing else not out.exists()


def test_an_evaluation_with_a_gate_that_has_no_value_still_reads(evaluated: Path, tmp_path: Path) -> None:
    """A gate the evaluation has no value for fails with value null (written by evaluations
    before pbo without --grid was refused); the report's reader refused the whole directory."""
    import shutil

    from himari.evaluation.html_report.evaluation_dir import read_evaluation_json

    copy = tmp_path / "ev"
    shutil.copytree(evaluated, copy)
    doc = json.loads((copy / "evaluation.json").read_text())
    doc["gates"].append({"name": "pbo", "op": "<", "threshold": 0.3, "value": None, "passed": False,
                         "description": "probability of backtest overfitting across the configurations"})
    (copy / "evaluation.json").write_text(json.dumps(doc))
    assert read_evaluation_json(copy)["gates"][-1]["value"] is None
