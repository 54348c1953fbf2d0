"""A sweep's leaderboard: every trial scored out of sample, the configurations over seeds (and
walk-forward folds), and the statistics ``himari evaluate`` reports, with the deflated Sharpe
counting every strategy the sweep tried.

- **Trials**: each finished (or early-stopped) trial's best checkpoint on its test split, after
  costs, as ``himari backtest`` scores it, next to buy-and-hold on the same bars; ranked by the
  test Sharpe. Failed trials follow with their errors.
- **Strategies**: a configuration (the dimensions' values) with one seed. Without folds it is one
  trial; with walk-forward folds it is that configuration and seed's fold trials, their test
  blocks chained in time (each traded from flat), as ``himari evaluate`` chains them. Every
  strategy is scored on the same bars, which is what the statistics need.
- **Statistics** (``himari.evaluate.statistics``): the ensemble (the best configuration's seeds,
  averaged bar by bar), its PSR and p-values against buy-and-hold and never-trade, PBO over the
  configurations, and the deflated Sharpe of the best strategy. The DSR's number of trials is
  every strategy the sweep tried, failed ones included: a trial that failed or was stopped early
  was still a try, and leaving it out would make the best one look less selected than it was.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

import numpy as np

from himari.evaluation.policy import METRICS

FORMAT, VERSION = "himari-sweep", 1
METRIC_KEYS = (*METRICS, "actions", "collapsed")
PBO_PARTITIONS = 8


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _subset(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in METRIC_KEYS if k in metrics}


def _returns(table: Any) -> np.ndarray:
    """Per-bar returns without each range's first bar (no step is taken there), as ``himari
    evaluate`` feeds its statistics."""
    stepped = (table.groupby("range").cumcount() > 0).to_numpy()
    return table["return"].to_numpy()[stepped]


def trial_rows(trials: list[Any], scores: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial: scored ones by test Sharpe (best first), then the others by name. A
    trial whose scoring failed is reported failed with that error."""
    rows = []
    for t in trials:
        s = scores.get(t.name)
        row: dict[str, Any] = {"trial": t.name, "params": t.params, "seed": t.seed, "fold": t.fold,
                               "status": t.status, "run_dir": t.run_dir, "error": t.error}
        if isinstance(s, str):
            row["status"], row["error"] = "failed", f"scoring failed: {s}"
        elif s is not None:
            row.update({"epochs_run": s["epochs_run"], "best_epoch": s["best_epoch"],
                        "validation_sharpe": s["best_validation_sharpe"], "seconds": s["seconds"],
                        "test": _subset(s["test"]), "buy_and_hold": _subset(s["buy_and_hold"])})
        rows.append(row)
    scored = sorted((r for r in rows if "test" in r), key=lambda r: -r["test"]["sharpe"])
    others = sorted((r for r in rows if "test" not in r), key=lambda r: r["trial"])
    for i, r in enumerate(scored):
        r["rank"] = i + 1
    return [*scored, *others]


def build(sweep: Any, trials: list[Any], scores: dict[str, Any], data: Any) -> dict[str, Any]:
    """The content of ``sweep.json`` from the trials' outcomes and scores on the prepared ``data``."""
    from himari.evaluate import statistics
    from himari.evaluate.runner import _plain
    from himari.evaluation import stats
    from himari.evaluation.policy import baseline_actions, evaluate_actions
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    bpy = float(data.metadata.get("bars_per_year", 105_120))
    rows = trial_rows(trials, scores)
    folds = list(sweep.folds) or [None]
    parts: dict[tuple[str, int], dict[str | None, dict[str, Any]]] = defaultdict(dict)
    params_of: dict[str, dict[str, Any]] = {}
    for t in trials:
        key = config_key(t.params)
        params_of[key] = t.params
        parts[(key, t.seed)]  # every strategy tried, scored or not
        s = scores.get(t.name)
        if isinstance(s, dict):
            parts[(key, t.seed)][t.fold] = s
    strategies: dict[tuple[str, int], dict[str, Any]] = {}
    for (key, seed), by_fold in parts.items():
        if any(f not in by_fold for f in folds):
            continue  # a fold failed: no chained series for this configuration and seed
        ranges = [tuple(r) for f in folds for r in by_fold[f]["ranges"]]
        actions = np.concatenate([np.asarray(by_fold[f]["actions"]) for f in folds])
        env = EnvConfig(**by_fold[folds[0]]["env"])
        metrics = evaluate_actions(data.open, data.close, ranges, actions, env, bpy)
        returns = _returns(per_bar(data.open, data.close, data.timestamps, ranges, actions, env))
        strategies[(key, seed)] = {"ranges": ranges, "env": env, "metrics": metrics, "returns": returns}

    configurations = []
    for key, params in params_of.items():
        seeds = [s for (k, s) in parts if k == key]
        done = [strategies[(key, s)] for s in seeds if (key, s) in strategies]
        val = [r["validation_sharpe"] for r in rows if config_key(r["params"]) == key
               and isinstance(r.get("validation_sharpe"), (int, float))]
        sharpes = [d["metrics"]["sharpe"] for d in done]
        configurations.append({
            "params": params, "seeds": len(seeds), "scored": len(done),
            "test_sharpe": float(np.mean(sharpes)) if sharpes else None,
            "test_sharpe_std": float(np.std(sharpes, ddof=1)) if len(sharpes) > 1 else (0.0 if sharpes else None),
            "test_total_return": float(np.mean([d["metrics"]["total_return"] for d in done])) if done else None,
            "validation_sharpe": float(np.mean(val)) if val else None,
            "complete": len(done) == len(seeds)})
    configurations.sort(key=lambda c: (c["test_sharpe"] is None, -(c["test_sharpe"] or 0.0)))

    statistics_out = None
    chosen = next((c for c in configurations if c["complete"]), None)
    if chosen is not None:
        key = config_key(chosen["params"])
        mine = [strategies[(key, s)] for (k, s) in parts if k == key]
        ensemble = np.mean([m["returns"] for m in mine], axis=0)
        ranges, env = mine[0]["ranges"], mine[0]["env"]
        bench = {name.replace("-", "_"): _returns(per_bar(data.open, data.close, data.timestamps, ranges,
                                                          baseline_actions(name, ranges), env))
                 for name in ("buy-and-hold", "never-trade")}
        complete = [c for c in configurations if c["complete"]]
        per_config = None
        if len(complete) >= 2 and len(ensemble) >= 16 * PBO_PARTITIONS:
            per_config = np.stack([np.mean([strategies[(config_key(c["params"]), s)]["returns"]
                                            for (k, s) in parts if k == config_key(c["params"])], axis=0)
                                   for c in complete], axis=1)
        trial_returns = [s["returns"] for s in strategies.values()]
        statistics_out = statistics.summarise(
            ensemble=ensemble, trials=trial_returns, bars_per_year=bpy, benchmarks=bench, per_config=per_config,
            pbo_partitions=PBO_PARTITIONS, resamples=sweep.resamples, block_length=None, seed=sweep.search_seed)
        tried = len(parts)
        sharpes = [stats.moments(r).sharpe for r in trial_returns]
        statistics_out["n_scored"] = len(trial_returns)
        if tried > len(trial_returns):  # count the strategies that failed too (module docstring)
            best = trial_returns[int(np.argmax(sharpes))]
            variance = float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0
            statistics_out["dsr"] = stats.deflated_sharpe_ratio(best, n_trials=tried, trial_variance=variance)
            statistics_out["n_trials"] = tried
        statistics_out["chosen"] = chosen["params"]

    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("finished", "stopped", "failed")}
    return _plain({
        "format": FORMAT, "version": VERSION, "model": sweep.model, "data": sweep.data,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in sweep.to_dict().items() if k != "folds"},
        "folds": list(sweep.folds), "n_trials": len(rows), "counts": counts, "trials": rows,
        "configurations": configurations, "statistics": statistics_out})

