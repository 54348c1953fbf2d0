"""The sweep's leaderboard from trial outcomes and scores, against a hand computation: ranks,
configurations over seeds, the seed ensemble's Sharpe, and the deflated Sharpe counting every
trial the sweep tried (a failed one too). No Ray here."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from himari.data import PreparedData
from himari.evaluation.policy import baseline_actions, evaluate_actions
from himari.evaluation.series import per_bar
from himari.plugin.config import config_to_dict
from himari.sweep.config import SweepConfig
from himari.sweep.leaderboard import build
from himari.trading import EnvConfig

scipy_stats = pytest.importorskip("scipy.stats")
EULER = 0.5772156649015329


def _trial(name: str, lr: float, seed: int, status: str = "finished", error: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, params={"lr": lr}, seed=seed, fold=None, status=status,
                           run_dir=f"/runs/{name}", error=error)


def _returns(data: PreparedData, ranges: list, actions: np.ndarray, env: EnvConfig) -> np.ndarray:
    table = per_bar(data.open, data.close, data.timestamps, ranges, actions, env)
    first = np.r_[True, table["range"].to_numpy()[1:] != table["range"].to_numpy()[:-1]]
    return table["return"].to_numpy()[~first]


def _psr(r: np.ndarray, benchmark: float) -> float:
    """Bailey & Lopez de Prado (2012), written out here with scipy's moments."""
    sr = r.mean() / r.std(ddof=1)
    g3 = scipy_stats.skew(r, bias=True)
    g4 = scipy_stats.kurtosis(r, fisher=False, bias=True)
    z = (sr - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    return float(scipy_stats.norm.cdf(z))


def _dsr(best: np.ndarray, sharpes: list[float], n_trials: int) -> float:
    ppf = scipy_stats.norm.ppf
    sr0 = math.sqrt(np.var(sharpes, ddof=1)) * ((1 - EULER) * ppf(1 - 1 / n_trials)
                                                 + EULER * ppf(1 - 1 / (n_trials * math.e)))
    return _psr(best, sr0)


@pytest.fixture(scope="module")
def sweep_result(small_prepared: Path) -> dict:
    data = PreparedData(small_prepared)
    ranges = data.select("test")
    env = EnvConfig(fee=0.0, slippage=0.0)  # random actions without costs: Sharpe ratios near 0, a DSR inside (0, 1)
    bpy = float(data.metadata["bars_per_year"])
    n = sum(b - a for a, b in ranges)
    rng = np.random.default_rng(7)
    # trials: lr=0.1 with seeds 0 and 1, lr=0.2 with seed 0 (seed 1 of lr=0.2 failed)
    trials = [_trial("trial-00000", 0.1, 0), _trial("trial-00001", 0.2, 0), _trial("trial-00002", 0.1, 1),
              _trial("trial-00003", 0.2, 1, "failed", "RuntimeError: boom")]
    draws = [rng.choice([0, 1, 2], size=n, p=[0.3, 0.3, 0.4]).astype(np.int8) for _ in range(3)]
    draws.sort(key=lambda a: -evaluate_actions(data.open, data.close, ranges, a, env, bpy)["sharpe"])
    # the best draw goes to lr=0.2's one scored seed: the incomplete configuration has the best mean
    actions = {"trial-00000": draws[1], "trial-00001": draws[0], "trial-00002": draws[2]}
    hold = evaluate_actions(data.open, data.close, ranges, baseline_actions("buy-and-hold", ranges), env, bpy)
    scores = {name: {"epochs_run": 1, "best_epoch": 0, "best_validation_sharpe": 0.5 + i, "stopped_early": False,
                     "seconds": 1.0, "test": evaluate_actions(data.open, data.close, ranges, a, env, bpy),
                     "buy_and_hold": hold, "ranges": [list(r) for r in ranges], "actions": a.tolist(),
                     "env": config_to_dict(env)}
              for i, (name, a) in enumerate(actions.items())}
    sweep = SweepConfig(model="baseline-mlp", data=str(small_prepared), resamples=200)
    result = build(sweep, trials, scores, data)
    returns = {name: _returns(data, ranges, a, env) for name, a in actions.items()}
    return {"result": result, "returns": returns, "bpy": bpy, "scores": scores}


def test_trials_are_ranked_by_test_sharpe_and_the_failed_one_follows(sweep_result: dict) -> None:
    result, scores = sweep_result["result"], sweep_result["scores"]
    rows = result["trials"]
    by_sharpe = sorted(scores, key=lambda n: -scores[n]["test"]["sharpe"])
    assert [r["trial"] for r in rows] == [*by_sharpe, "trial-00003"]
    assert [r.get("rank") for r in rows] == [1, 2, 3, None]
    assert rows[-1]["status"] == "failed" and rows[-1]["error"] == "RuntimeError: boom"
    assert result["counts"] == {"finished": 3, "stopped": 0, "failed": 1} and result["n_trials"] == 4


def test_configurations_average_their_seeds(sweep_result: dict) -> None:
    result, returns, bpy = sweep_result["result"], sweep_result["returns"], sweep_result["bpy"]

    def annual(r: np.ndarray) -> float:
        return float(r.mean() / r.std(ddof=1) * math.sqrt(bpy))

    configs = {c["params"]["lr"]: c for c in result["configurations"]}
    a = [annual(returns["trial-00000"]), annual(returns["trial-00002"])]
    assert configs[0.1]["test_sharpe"] == pytest.approx(np.mean(a), rel=1e-6)
    assert configs[0.1]["test_sharpe_std"] == pytest.approx(abs(a[0] - a[1]) / math.sqrt(2), rel=1e-6)
    assert configs[0.1]["complete"] and configs[0.1]["scored"] == 2 and configs[0.1]["seeds"] == 2
    assert not configs[0.2]["complete"] and configs[0.2]["scored"] == 1 and configs[0.2]["seeds"] == 2
    assert configs[0.1]["validation_sharpe"] == pytest.approx((0.5 + 2.5) / 2)


def test_statistics_judge_the_complete_configurations_seed_ensemble(sweep_result: dict) -> None:
    s, returns, bpy = sweep_result["result"]["statistics"], sweep_result["returns"], sweep_result["bpy"]
    configurations = sweep_result["result"]["configurations"]
    assert [c["params"]["lr"] for c in configurations] == [0.2, 0.1]  # best mean test Sharpe first
    assert configurations[0]["test_sharpe"] > configurations[1]["test_sharpe"]
    assert s["chosen"] == {"lr": 0.1}  # lr=0.2 lost a seed, so it cannot be the chosen configuration
    ensemble = (returns["trial-00000"] + returns["trial-00002"]) / 2
    assert s["sharpe"] == pytest.approx(ensemble.mean() / ensemble.std(ddof=1) * math.sqrt(bpy), rel=1e-9)
    assert s["psr"] == pytest.approx(_psr(ensemble, 0.0), rel=1e-9)


def test_the_deflated_sharpe_counts_every_trial_tried_the_failed_one_too(sweep_result: dict) -> None:
    s, returns = sweep_result["result"]["statistics"], sweep_result["returns"]
    sharpes = {n: r.mean() / r.std(ddof=1) for n, r in returns.items()}
    best = returns[max(sharpes, key=sharpes.get)]
    assert s["n_trials"] == 4 and s["n_scored"] == 3
    assert s["dsr"] == pytest.approx(_dsr(best, list(sharpes.values()), 4), rel=1e-9)
    # counting only the 3 scored trials would deflate less: a different number
    assert 0.01 < s["dsr"] < 0.99
    assert _dsr(best, list(sharpes.values()), 3) - s["dsr"] > 0.01
