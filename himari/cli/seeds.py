"""The range of every ``--seed`` option: [0, 2**63), that of a run's ``train.seed``, so a seed one
command takes is one every other takes, and a seed beyond it is refused by the option parser
(exit 2) instead of failing deep inside numpy or torch after work has started."""

from __future__ import annotations

SEED_MAX = 2**63 - 1
