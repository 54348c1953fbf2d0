"""Trials tried before an evaluation (a recipe search), for its deflated Sharpe.

The deflated Sharpe needs only two numbers of the trials: how many there were and the variance
of their per-bar Sharpe ratios. So an earlier search counts either from its evaluation
directories (every (configuration, seed) Sharpe ratio they scored) or, where those directories
are gone, from a trials file that keeps each configuration's count, mean and standard deviation
of its seeds' Sharpe ratios: the pooled variance of groups is exactly the variance of all their
trials together, so both give the same deflated Sharpe.

A trials file is JSON::

    {"format": "himari-trials", "bars_per_year": 105120,
     "groups": [{"label": "search-cgdt0-btc/default", "trials": 3,
                 "sharpe_mean": 1.22, "sharpe_sd": 0.44}, ...]}

with Sharpe ratios annualised at ``bars_per_year`` (as ``evaluation.json`` writes them) and
``sharpe_sd`` the sample standard deviation (ddof=1) over the group's trials (null for one).
``benchmarks/summarise_search.py`` writes one beside its summary of a search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.errors import ConfigError
from himari.evaluation.evaluation_file import EVALUATION_FORMAT, EVALUATION_RESULT

TRIALS_FORMAT = "himari-trials"
Complaint = Callable[[str], ConfigError]


@dataclass(frozen=True)
class TrialGroup:
    """Trials summarised by their count, the mean of their per-bar Sharpe ratios and the sum of
    squared deviations from that mean (what pooling needs, and all the deflated Sharpe uses)."""

    count: int
    mean: float
    sum_sq: float

    @classmethod
    def of(cls, sharpes: Sequence[float]) -> TrialGroup:
        """The group of these per-bar Sharpe ratios."""
        if not sharpes:
            return cls(0, 0.0, 0.0)
        mean = math.fsum(sharpes) / len(sharpes)
        return cls(len(sharpes), mean, math.fsum((s - mean) ** 2 for s in sharpes))


def pooled(groups: Iterable[TrialGroup]) -> TrialGroup:
    """All groups' trials as one group (Chan et al.'s pairwise update): the same count, mean and
    sum of squared deviations as the concatenation of their Sharpe ratios."""
    total = TrialGroup(0, 0.0, 0.0)
    for g in groups:
        if g.count == 0:
            continue
        n = total.count + g.count
        delta = g.mean - total.mean
        total = TrialGroup(n, total.mean + delta * g.count / n,
                           total.sum_sq + g.sum_sq + delta * delta * total.count * g.count / n)
    return total


def variance(group: TrialGroup) -> float:
    """Sample variance (ddof=1) of the group's Sharpe ratios; 0 for fewer than two."""
    return group.sum_sq / (group.count - 1) if group.count > 1 else 0.0


def read_prior_trials(paths: Sequence[str]) -> list[TrialGroup]:
    """One group per evaluation directory's trials, or per group of a trials file, in per-bar
    Sharpe ratios (annualised ones divided by the square root of their bars per year). A path
    that is neither fails with a ConfigError naming it, before anything trains."""
    out: list[TrialGroup] = []
    seen: dict[Path, str] = {}  # resolved -> as given
    for p in paths:
        path = Path(p)
        key = path.resolve()
        if key in seen:  # the same trials counted twice would deflate the Sharpe ratio for trials never run
            raise ConfigError(f"--prior-trials {p}: given twice; each set of trials counts once")
        seen[key] = str(p)
        out += _from_directory(path) if path.is_dir() else _from_trials_file(path)
    return out


def _from_directory(directory: Path) -> list[TrialGroup]:
    path = directory / EVALUATION_RESULT
    try:
        ev = json.loads(path.read_text(encoding="utf-8"))
        wf = ev["walk_forward"]
        trials, per_year = wf["trials"], float(wf["bars_per_year"])
    except FileNotFoundError:
        raise ConfigError(f"--prior-trials {directory}: no {EVALUATION_RESULT} (not a finished evaluation)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--prior-trials {directory}: cannot read its trials from {EVALUATION_RESULT} ({e!r}); an "
                          f"evaluation written by an older himari: continue it once with --resume to rewrite it") from None
    if ev.get("format") != EVALUATION_FORMAT:
        raise ConfigError(f"--prior-trials {directory}: {EVALUATION_RESULT} is not a himari evaluation")
    return [TrialGroup.of([float(v) / math.sqrt(per_year) for v in trials.values()])]


def _from_trials_file(path: Path) -> list[TrialGroup]:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"--prior-trials {path}: {why}; give an evaluation directory or a trials file "
                           f"({{\"format\": \"{TRIALS_FORMAT}\", \"bars_per_year\": ..., \"groups\": [...]}})")

    if not path.exists():
        raise ConfigError(f"--prior-trials {path}: no such evaluation directory or trials file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise bad(f"cannot read it as JSON ({e!r})") from None
    if not isinstance(doc, dict) or doc.get("format") != TRIALS_FORMAT:
        raise bad(f"not a trials file (its \"format\" is not \"{TRIALS_FORMAT}\")")
    per_year = _positive(doc.get("bars_per_year"), "bars_per_year", bad)
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        raise bad("\"groups\" must be a non-empty list")
    return [_group(g, i, math.sqrt(per_year), bad) for i, g in enumerate(groups)]


def _group(g: Any, i: int, scale: float, bad: Complaint) -> TrialGroup:
    if not isinstance(g, dict):
        raise bad(f"group {i} is not an object")
    count = g.get("trials")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise bad(f"group {i}: \"trials\" must be a whole number of at least 1")
    mean = _finite(g.get("sharpe_mean"), f"group {i}: sharpe_mean", bad)
    sd = g.get("sharpe_sd")
    if count == 1:
        sd = 0.0 if sd is None else sd
    sd = _finite(sd, f"group {i}: sharpe_sd (needed for more than one trial)", bad)
    if sd < 0:
        raise bad(f"group {i}: sharpe_sd is negative")
    return TrialGroup(count, mean / scale, (count - 1) * (sd / scale) ** 2)


def _finite(v: Any, name: str, bad: Complaint) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise bad(f"{name} must be a finite number")
    return float(v)


def _positive(v: Any, name: str, bad: Complaint) -> float:
    x = _finite(v, name, bad)
    if x <= 0:
        raise bad(f"{name} must be positive")
    return x
