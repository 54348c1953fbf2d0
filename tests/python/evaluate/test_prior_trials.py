"""Trials counted from before an evaluation: a trials file of per-configuration counts, means and
standard deviations must give the deflated Sharpe exactly what the trials themselves give."""

from __future__ import annotations

import json
import statistics as st
from pathlib import Path

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.evaluate.prior_trials import TrialGroup, pooled, read_prior_trials, variance
from himari.evaluation import stats


def test_pooled_groups_are_the_concatenated_trials() -> None:
    """Catches pooling that averages the groups' variances (or their means unweighted), which
    forgets the spread between groups: three groups of different sizes and centres pool to the
    count, mean and sample variance numpy gives for all their values at once."""
    rng = np.random.default_rng(5)
    parts = [rng.normal(0.02, 0.01, 3), rng.normal(-0.01, 0.03, 5), np.array([0.05])]
    every = pooled(TrialGroup.of(list(p)) for p in parts)
    values = np.concatenate(parts)
    assert every.count == 9
    assert every.mean == pytest.approx(values.mean(), rel=1e-12)
    assert variance(every) == pytest.approx(np.var(values, ddof=1), rel=1e-12)
    assert variance(pooled([TrialGroup.of([0.3])])) == 0.0


def _trials_file(path: Path, groups: list[dict], bars_per_year: float = 100.0) -> str:
    path.write_text(json.dumps({"format": "himari-trials", "bars_per_year": bars_per_year, "groups": groups}))
    return str(path)


def test_a_trials_file_counts_as_the_evaluation_it_summarises(tmp_path: Path) -> None:
    """Catches a trials file read as one trial per group, its standard deviation taken as a
    variance, or its Sharpe ratios left annualised: an evaluation of 2 configurations x 3 seeds
    and a file holding each configuration's count, mean and sd (computed here with the standard
    library) give the same per-bar trials, and so the same deflated Sharpe."""
    annual = {"c0": [1.0, 2.5, -0.5], "c1": [3.0, 0.0, 1.5]}
    directory = tmp_path / "search"
    directory.mkdir()
    (directory / "evaluation.json").write_text(json.dumps({"format": "himari-evaluation", "walk_forward": {
        "bars_per_year": 100.0, "trials": {f"{c}/{s}": v for c, vs in annual.items() for s, v in enumerate(vs)}}}))
    summary = _trials_file(tmp_path / "trials.json", [
        {"label": c, "trials": 3, "sharpe_mean": st.mean(vs), "sharpe_sd": st.stdev(vs)} for c, vs in annual.items()])
    from_file, from_directory = pooled(read_prior_trials([summary])), pooled(read_prior_trials([str(directory)]))
    per_bar = np.array([v for vs in annual.values() for v in vs]) / 10.0
    for got in (from_file, from_directory):
        assert got.count == 6
        assert got.mean == pytest.approx(per_bar.mean(), rel=1e-12)
        assert variance(got) == pytest.approx(np.var(per_bar, ddof=1), rel=1e-12)

    best = np.random.default_rng(2).normal(0.01, 0.05, 400)
    want = stats.deflated_sharpe_ratio(best, list(per_bar))
    assert stats.deflated_sharpe_ratio(best, n_trials=from_file.count,
                                       trial_variance=variance(from_file)) == pytest.approx(want, rel=1e-9)


def test_one_trial_needs_no_spread(tmp_path: Path) -> None:
    """A configuration of one seed has no standard deviation (null): it adds one trial and only
    its distance from the others to the variance."""
    path = _trials_file(tmp_path / "t.json", [{"trials": 1, "sharpe_mean": 2.0, "sharpe_sd": None},
                                              {"trials": 2, "sharpe_mean": 0.0, "sharpe_sd": 1.0}], 4.0)
    every = pooled(read_prior_trials([path]))
    per_bar = np.array([2.0, -np.sqrt(0.5), np.sqrt(0.5)]) / 2.0  # the second group's two values: mean 0, sd 1
    assert every.count == 3
    assert variance(every) == pytest.approx(np.var(per_bar, ddof=1), rel=1e-12)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read it as JSON"),
    (json.dumps({"format": "himari-evaluation", "groups": []}), "not a trials file"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 0, "groups": [{"trials": 1, "sharpe_mean": 1}]}),
     "bars_per_year must be positive"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 10, "groups": []}), "non-empty list"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 10, "groups": [{"trials": 0, "sharpe_mean": 1}]}),
     "at least 1"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 10, "groups": [{"trials": 3, "sharpe_mean": 1}]}),
     "sharpe_sd (needed for more than one trial)"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 10,
                 "groups": [{"trials": 3, "sharpe_mean": 1, "sharpe_sd": -1}]}), "negative"),
    (json.dumps({"format": "himari-trials", "bars_per_year": 10,
                 "groups": [{"trials": 2, "sharpe_mean": "1", "sharpe_sd": 1}]}), "sharpe_mean must be a finite"),
])
def test_a_bad_trials_file_is_refused_with_the_reason(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="--prior-trials") as caught:
        read_prior_trials([str(path)])
    assert message in str(caught.value)


def test_the_cgdt_search_summary_counts_every_trial_it_lists() -> None:
    """The summary the cgdt model card's final evaluation counted its search through: it reads
    as a trials file, with as many trials as its rows' seeds and their seed-weighted mean."""
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "recipes" / "search-cgdt.json"
    if not path.exists():
        pytest.skip("the benchmarks' results are not in this checkout")
    doc = json.loads(path.read_text())
    every = pooled(read_prior_trials([str(path)]))
    rows = doc["rows"]
    assert every.count == doc["trials"] == sum(r["seeds"] for r in rows) == 24
    weighted = sum(r["seeds"] * r["sharpe_mean"] for r in rows) / 24 / np.sqrt(doc["bars_per_year"])
    assert every.mean == pytest.approx(weighted, rel=1e-12)


def test_the_same_trials_given_twice_are_refused_not_counted_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """A path repeated, however spelt, counted its trials again: the deflated Sharpe deflated
    by trials that never ran."""
    first = _trials_file(tmp_path / "trials.json", [{"label": "c", "trials": 3, "sharpe_mean": 1.0, "sharpe_sd": 0.5}])
    second = _trials_file(tmp_path / "other.json", [{"label": "d", "trials": 2, "sharpe_mean": 0.0, "sharpe_sd": 0.5}])
    assert pooled(read_prior_trials([first, second])).count == 5
    monkeypatch.chdir(tmp_path)
    for again in (first, "trials.json", "./trials.json", str(tmp_path / "x" / ".." / "trials.json")):
        with pytest.raises(ConfigError, match="given twice"):
            read_prior_trials([first, second, again])
