"""What a recipe search needs from ``himari evaluate``: ``--hold-out-last`` keeps the last fold's
test block out of every run, the same decisions scored without costs, earlier evaluations'
trials counted in the deflated Sharpe, and collapse judged on the model's own decisions rather
than on the HOLDs the execution rules impose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from himari.cli import app

pytest.importorskip("torch")

runner = CliRunner()
ARGS = ["--seeds", "2", "--epochs", "1", "--batch-size", "128", "--resamples", "200",
        "--set", "train.max_steps_per_epoch=8", "--set", "recipe=none"]


@pytest.fixture(scope="module")
def held_out(small_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ho") / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out),
                              "--walk-forward", "3", "--hold-out-last", *ARGS,
                              "--set", "execution.decision_interval=4"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "held out: fold-2" in res.output
    return out


def test_the_held_out_block_is_never_trained_validated_or_scored(held_out: Path, small_prepared: Path) -> None:
    from himari.data import PreparedData
    from himari.evaluate.folds import walk_forward

    ev = json.loads((held_out / "evaluation.json").read_text())
    data = PreparedData(small_prepared)
    full = walk_forward(data, 3, embargo=int(data.metadata["embargo"]))
    # the two folds run are the first two of the three-fold partition, unchanged
    assert [f["name"] for f in ev["folds"]] == ["fold-0", "fold-1"]
    for run_fold, fold in zip(ev["folds"], full[:2]):
        assert [tuple(r) for r in run_fold["test"]] == [tuple(r) for r in fold.test]
    held = [tuple(r) for r in ev["held_out"]["test"]]
    assert held == [tuple(r) for r in full[2].test]
    start = min(a for a, _ in held)
    # no run's config names a row of it, and no scored series reaches it
    for cfg in held_out.glob("runs/*/seed-*/config.yaml"):
        import yaml

        splits = yaml.safe_load(cfg.read_text())["splits"]
        assert max(b for part in splits.values() for _, b in part) <= start
    for name in ev["series"]:
        rows = pd.read_parquet(held_out / "series" / f"{name}.parquet")["row"].to_numpy()
        assert rows.max() < start


def test_zero_cost_scores_the_same_decisions_without_fee_and_slippage(held_out: Path, small_prepared: Path) -> None:
    """Buy-and-hold without costs, by hand: each block bought at its second bar's open, marked at
    its last close; the model's seeds re-scored from their saved actions with both costs at 0."""
    from himari.data import PreparedData
    from himari.engine import backtest_signals

    ev = json.loads((held_out / "evaluation.json").read_text())
    data = PreparedData(small_prepared)
    tests = [tuple(r) for f in ev["folds"] for r in f["test"]]
    free = ev["walk_forward"]["zero_cost"]
    growth = np.prod([data.close[b - 1] / data.open[a + 1] for a, b in tests])
    assert free["baselines"]["buy-and-hold"]["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    with_costs = ev["walk_forward"]["baselines"]["buy-and-hold"]["total_return"]
    assert with_costs < free["baselines"]["buy-and-hold"]["total_return"]
    # seed 0 at zero cost: the product of each block's gross growth, from the saved actions
    series = pd.read_parquet(held_out / "series" / "model-seed-0.parquet")
    total = 1.0
    for k, (a, b) in enumerate(tests):
        acts = series.loc[series["range"] == k, "action"].to_numpy().astype(np.int8)
        res = backtest_signals(data.open[a:b], data.close[a:b], acts[:, None], fee=0.0, slippage=0.0)
        total *= 1 + float(res.total_return[0])
    assert free["seeds"]["0"]["total_return"] == pytest.approx(total - 1, rel=1e-9)
    assert free["seeds"]["0"]["n_trades"] == ev["walk_forward"]["seeds"]["0"]["n_trades"]


def test_collapse_is_judged_on_the_models_own_decisions(held_out: Path) -> None:
    """With a decision interval of 4, at least three bars in four are HOLD whatever the model
    says: the executed mix is mostly HOLD, the model's own mix is what it decided."""
    from himari.data import PreparedData
    from himari.training.assemble import load_trained

    ev = json.loads((held_out / "evaluation.json").read_text())
    fold = ev["folds"][0]
    m = fold["runs"]["0"]["metrics"]
    assert m["actions"]["HOLD"] >= 0.74
    policy = load_trained(fold["runs"]["0"]["run_dir"])
    data = PreparedData(ev["data"])
    test = [tuple(r) for r in fold["test"]]
    policy.model.network.eval()  # no dropout: the model as the evaluation acted
    raw = np.concatenate([np.asarray(policy.model.act(policy.features(data), np.arange(a, b - 1))) for a, b in test])
    own = np.bincount(raw, minlength=3) / len(raw)
    assert [m["model_decisions"][k] for k in ("SELL", "HOLD", "BUY")] == pytest.approx(own.tolist(), abs=1e-12)
    assert m["collapsed"] == bool(own.max() > 0.9)
    assert m["dominant_share"] == pytest.approx(own.max())


def test_earlier_trials_count_in_the_deflated_sharpe(held_out: Path, small_prepared: Path, tmp_path: Path) -> None:
    from himari.evaluation import stats

    out = tmp_path / "final"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out),
                              "--walk-forward", "3", *ARGS, "--prior-trials", str(held_out)])
    assert res.exit_code == 0, res.output
    ev = json.loads((out / "evaluation.json").read_text())
    prior = json.loads((held_out / "evaluation.json").read_text())["walk_forward"]
    per_bar = [v / np.sqrt(prior["bars_per_year"]) for v in prior["trials"].values()]
    assert ev["statistics"]["n_trials"] == 2 + 2 and ev["statistics"]["prior_trials"] == 2
    # recomputed from the saved series: each seed's returns on the bars where a step is taken
    own = []
    for s in ("0", "1"):
        t = pd.read_parquet(out / "series" / f"model-seed-{s}.parquet")
        own.append(t[t.groupby("range").cumcount() > 0]["return"].to_numpy())
    sharpes = [stats.moments(r).sharpe for r in own]
    best = own[int(np.argmax(sharpes))]
    assert ev["statistics"]["dsr"] == pytest.approx(stats.deflated_sharpe_ratio(best, sharpes + per_bar), rel=1e-9)
    alone = stats.deflated_sharpe_ratio(best, sharpes)
    assert alone != pytest.approx(ev["statistics"]["dsr"], rel=1e-6, abs=0)  # the prior trials changed it


@pytest.mark.parametrize("args, message", [
    (["--walk-forward", "1", "--hold-out-last"], "at least 2 walk-forward folds"),
    (["--walk-forward", "2", "--hold-out-last", "--cpcv", "3,1"], "drop --cpcv"),
    (["--walk-forward", "2", "--prior-trials", "/nonexistent/ev"], "no such evaluation directory or trials file"),
    (["--walk-forward", "2", "--grid", "labels={name: forward-return,1"], "not a comma-separated YAML list"),
    (["--walk-forward", "2", "--grid", "labels=null,{name: no-such}"], "labeler 'no-such' is unknown"),
])
def test_bad_search_options_are_refused_before_anything_is_written(small_prepared: Path, tmp_path: Path,
                                                                   args: list[str], message: str) -> None:
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out),
                              *ARGS, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_a_grids_report_shows_the_chosen_configurations_seeds(small_prepared: Path, tmp_path: Path) -> None:
    """With a grid the series are named by configuration (``c1-seed-0``); the report's model lines
    are the chosen configuration's seeds (not the seed ensemble, which has no positions)."""
    from himari.evaluation.html_report.evaluation_dir import load_evaluation

    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out),
                              "--walk-forward", "2", *ARGS, "--grid", "execution.min_hold=0,12"])
    assert res.exit_code == 0, res.output
    ev = json.loads((out / "evaluation.json").read_text())
    chosen = ev["config"]["chosen"]
    target = load_evaluation(out)
    assert set(target.models) == {"model-seed-0", "model-seed-1", "model-ensemble"}
    for s in ("0", "1"):
        saved = pd.read_parquet(out / "series" / f"{chosen}-seed-{s}.parquet")
        pd.testing.assert_frame_equal(target.models[f"model-seed-{s}"].reset_index(drop=True), saved)
    other = next(c for c in ev["config"]["configurations"] if c != chosen)
    assert not any(name.startswith(other) for name in target.baselines)
    assert len(ev["walk_forward"]["trials"]) == 4  # 2 configurations x 2 seeds
    # the configuration judged is the best by mean out-of-sample Sharpe over its seeds
    means = {c: np.mean([ev["walk_forward"]["trials"][f"{c}/{s}"] for s in ("0", "1")])
             for c in ev["config"]["configurations"]}
    assert means[chosen] > means[other]
    assert ev["walk_forward"]["configurations"][chosen]["sharpe"] == pytest.approx(means[chosen], rel=1e-12)
    # the random baseline of each fold trades at the mean rate of the fold's runs
    differ = 0
    for f in ev["folds"]:
        rates = [r["metrics"]["n_trades"] / r["metrics"]["decisions"] for r in f["runs"].values()]
        differ += len(set(rates)) > 1
        assert f["baselines"]["random"]["params"]["trade_rate"] == pytest.approx(np.mean(rates), rel=1e-12)
    assert differ  # the runs traded at different rates, so a rate from one run would show


def test_each_configuration_runs_once_before_the_rest(small_prepared: Path, tmp_path: Path) -> None:
    """A configuration that can only fail once it trains (two methods that cannot work together)
    fails after at most one run of each configuration, not after all of the first one's."""
    from himari.evaluate.runner import Evaluation, EvaluationConfig

    config = EvaluationConfig(model="baseline-mlp", data=str(small_prepared), seeds=(0, 1), walk_forward=2,
                              grid={"train.lr": [0.001, 0.002, 0.003]}, sets=("recipe=none",))
    runs = Evaluation(config, tmp_path / "ev").runs
    assert [(r.config, r.fold.name, r.seed) for r in runs[:3]] == [("c0", "fold-0", 0), ("c1", "fold-0", 0),
                                                                   ("c2", "fold-0", 0)]
    assert len(runs) == 12 and len({(r.config, r.fold.name, r.seed) for r in runs}) == 12
    assert not (tmp_path / "ev").exists()
