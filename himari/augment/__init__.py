"""Synthetic training data: fit a generator plugin on the train split, write a synthetic set
with its provenance, measure its quality against the real data, and hand its rows to a run.

- ``himari.augment.source``: what a generator is fitted on (the train rows of a prepared set).
- ``himari.augment.quality``: the TimeGAN paper's discriminative and predictive scores and the
  stylised facts; ``himari.augment.report`` prints and saves them.
- ``himari.augment.run``: ``himari data augment`` end to end.

The set directory itself (arrays, provenance, generator state) is ``himari.data.synthetic_set``;
the windows and scalers generators share are ``himari.data.windows`` (re-exported to plugins by
``himari.plugin.api``); a run loads a set through ``himari.training.augment``. Nothing here
imports torch at module top.
"""
