"""``himari sweep``: many trainings of one model, over settings, seeds and walk-forward folds,
scheduled by Ray Tune on a local Ray instance or a cluster.

- ``himari.sweep.space``: the dimensions (grid values, random distributions) and which run
  setting each key names.
- ``himari.sweep.config``: the sweep's settings, built from the command line and a sweep file and
  checked before Ray starts.
- ``himari.sweep.trial``: what runs in a Ray worker (one trial = one run directory).
- ``himari.sweep.tune_run``: Ray and the Tuner (imports ray; only once ray is installed).
- ``himari.sweep.leaderboard``: the trials scored out of sample, and the statistics.
- ``himari.sweep.runner``: one session of the command; ``himari.sweep.tables``: what it prints.

Nothing here imports ray or torch at module top except ``tune_run``.
"""
