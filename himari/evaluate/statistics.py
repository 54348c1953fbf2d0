"""The statistics an evaluation reports, from its out-of-sample per-bar returns
(``himari.evaluation.stats`` has the formulas and their references).

- **The seed ensemble**: the average of the chosen configuration's seeds' per-bar returns (the
  same capital split equally over the seeds' strategies), the strategy the p-values and the PSR
  judge, so one lucky seed does not carry the verdict.
- **PSR**: probability that the ensemble's true Sharpe ratio exceeds 0 given its length,
  skewness and kurtosis.
- **Deflated Sharpe**: the best single trial (configuration x seed) judged against the Sharpe
  ratio its trials would reach by chance (their number and the spread of their Sharpe ratios).
- **p-values**: of the ensemble's mean excess return over buy-and-hold and over never-trade, one
  sided, by stationary block bootstrap on the same bars.
- **PBO** (with several configurations): probability of backtest overfitting by CSCV over the
  configurations' ensemble returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from himari.evaluate.prior_trials import TrialGroup, pooled, variance
from himari.evaluation import stats


def summarise(*, ensemble: np.ndarray, trials: list[np.ndarray], bars_per_year: float,
              benchmarks: dict[str, np.ndarray], per_config: np.ndarray | None, pbo_partitions: int,
              resamples: int, block_length: int | None, seed: int,
              prior_trials: Sequence[TrialGroup] = ()) -> dict[str, Any]:
    """The statistics of an evaluation. Every series holds the per-bar returns of the same
    out-of-sample bars, each range's first bar (where no step is taken) already dropped.
    ``prior_trials`` are groups of trials scored before (a recipe search), in per-bar Sharpe
    ratios: they add to the number of trials and to their variance in the deflated Sharpe."""
    trial_sharpes = [stats.moments(r).sharpe for r in trials]
    best = trials[int(np.argmax(trial_sharpes))]
    prior = pooled(prior_trials)
    every = pooled([TrialGroup.of(trial_sharpes), prior])
    out: dict[str, Any] = {
        "n_trials": every.count,
        "prior_trials": prior.count,
        "sharpe": stats.sharpe(ensemble, bars_per_year),
        "psr": stats.probabilistic_sharpe_ratio(ensemble),
        "dsr": stats.deflated_sharpe_ratio(best, n_trials=every.count, trial_variance=variance(every)),
        "best_trial_sharpe": stats.sharpe(best, bars_per_year),
        "p_value": {},
    }
    for name, bench in benchmarks.items():
        test = stats.bootstrap_pvalue(ensemble, bench, n_resamples=resamples, mean_block_length=block_length,
                                      seed=seed)
        out["p_value"][f"vs_{name}"] = test.p_value
        out["block_length"], out["resamples"], out["method"] = test.block_length, test.n_resamples, test.method
    out["sign_flip_p_value"] = {f"vs_{name}": stats.sign_flip_pvalue(ensemble, bench, n_resamples=resamples,
                                                                      seed=seed).p_value
                                for name, bench in benchmarks.items()}
    out["pbo"] = None
    if per_config is not None and per_config.shape[1] >= 2:
        out["pbo"] = stats.probability_of_backtest_overfitting(per_config, pbo_partitions).pbo
    return out
