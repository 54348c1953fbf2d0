"""``himari evaluate``: does a model have an edge out of sample, after costs, with its uncertainty?

- ``folds``: walk-forward folds and combinatorial purged cross-validation splits, each with a
  validation block carved from its training rows;
- ``baselines``: a random policy at the model's trade frequency and a moving-average cross fitted
  on each fold's training rows, beside buy-and-hold and never-trade;
- ``runner``: the evaluation (retrain every fold x configuration x seed, resumable; score and
  chain the out-of-sample blocks);
- ``statistics``: probabilistic and deflated Sharpe, bootstrap p-values, PBO;
- ``gates``: the pass/fail thresholds;
- ``session`` and ``tables``: the command's files and console view.

docs/evaluation.md describes the method and its output.
"""
