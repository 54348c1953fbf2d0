"""The pieces of an evaluation, against hand-worked cases: fold and CPCV plans (purging, embargo,
paths), the validation carve, the baselines (moving-average cross, random at a trade rate), the
gates and the statistics summary (which series the PSR, DSR and p-values are computed on)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from himari.data.splits import Segment
from himari.errors import ConfigError
from himari.evaluate.baselines import fit_ma_cross, ma_cross, random_like
from himari.evaluate.folds import carve_validation, cpcv, walk_forward
from himari.evaluate.gates import DEFAULT_GATES, check_gates, parse_gate
from himari.trading import EnvConfig


@dataclass
class Data:
    """The fields the fold planners read: 5-minute bars of one symbol, warm-up of 100 rows."""

    timestamps: np.ndarray
    segments: list[Segment]


def data(n: int = 2100, warmup: int = 100) -> Data:
    return Data(np.arange(n, dtype=np.int64) * 300 * 10**9, [Segment("X", 0, n, warmup)])


def rows(ranges) -> int:
    return sum(b - a for a, b in ranges)


def test_carve_validation_by_hand() -> None:
    ts = np.arange(100, dtype=np.int64)
    fit, val = carve_validation([(0, 100)], ts, 0.2, embargo=5)
    assert fit == [(0, 75)] and val == [(80, 100)]  # the last 20 rows validate, 5 dropped before them


def test_walk_forward_blocks_by_hand() -> None:
    """2,000 usable rows in 4 blocks of 500: fold i tests block i + 1; train before it less the
    embargo (490 rows for fold 0); the last 20% of them (98) validate, after another embargo."""
    folds = walk_forward(data(), 3, embargo=10, validation_fraction=0.2, min_rows=50)
    assert [f.test for f in folds] == [[(600, 1100)], [(1100, 1600)], [(1600, 2100)]]
    f0 = folds[0]
    assert f0.train == [(100, 492 - 10)] and f0.validation == [(492, 590)]
    assert folds[2].train[0][0] == 100  # expanding
    rolling = walk_forward(data(), 3, mode="rolling", embargo=10, validation_fraction=0.2, min_rows=50)
    assert rolling[2].train[0][0] == 1100 and rolling[2].validation[-1][1] == 1590
    for f in folds:  # every gap is at least the embargo
        assert f.validation[0][0] - f.train[-1][1] >= 10 and f.test[0][0] - f.validation[-1][1] >= 10


def test_a_fold_with_too_few_rows_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"fold-0: its train block has \d+ rows, fewer than the 200"):
        walk_forward(data(600), 3, embargo=10, validation_fraction=0.2)


def test_cpcv_purges_embargoes_and_assembles_paths() -> None:
    """4 groups of 500 rows, 2 tested per split: 6 splits, C(3, 1) = 3 paths, each covering every
    group once; a training group right before a test group loses its last `embargo` rows (purge),
    one right after loses its first (embargo)."""
    folds, paths = cpcv(data(), 4, 2, embargo=10, validation_fraction=0.1, min_rows=50)
    assert len(folds) == math.comb(4, 2) and len(paths) == 3
    groups = [(100, 600), (600, 1100), (1100, 1600), (1600, 2100)]
    split = next(f for f in folds if f.test_groups == (1, 2))
    assert split.group_tests == ([groups[1]], [groups[2]])
    train_and_val = sorted(split.train + split.validation)
    assert train_and_val[0] == (100, 590)  # group 0, purged before test group 1 (and whole: validation is later)
    assert train_and_val[-1][1] == 2100 and min(a for a, _ in train_and_val if a >= 1600) == 1610  # embargoed
    for path in paths:
        assert [g for g, _ in path] == [0, 1, 2, 3]
        for g, i in path:
            assert g in folds[i].test_groups
    assert len({(g, i) for p in paths for g, i in p}) == 4 * 3  # every (group, split) tested once


def test_cpcv_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="1 <= k < N"):
        cpcv(data(), 4, 4, embargo=10)
    with pytest.raises(ConfigError, match="splits to train"):
        cpcv(data(), 16, 8, embargo=10)


def test_ma_cross_by_hand_and_causal() -> None:
    close = np.array([1.0, 2, 3, 4, 3, 2, 1, 2, 3, 4])
    acts = ma_cross(close, [(0, 10)], fast=2, slow=3)
    # SMA2 vs SMA3 from bar 2: bar 2: 2.5 > 2 BUY; bar 4: 3.5 vs 3.33 BUY; bar 5: 2.5 < 3 SELL; ...
    assert acts.tolist() == [1, 1, 2, 2, 2, 0, 0, 0, 2, 2]
    changed = close.copy()
    changed[7:] = 100.0
    assert ma_cross(changed, [(0, 10)], 2, 3)[:7].tolist() == acts[:7].tolist()  # no look-ahead


def test_ma_cross_fit_picks_the_best_training_sharpe() -> None:
    from himari.evaluation.policy import evaluate_actions

    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000) + 0.0004 * np.sin(np.arange(3000) / 60)))
    open_ = np.r_[close[0], close[:-1]]
    grid = ((5, 20), (10, 40), (20, 80))
    env = EnvConfig()
    best = fit_ma_cross(open_, close, [(0, 2000)], env, 105_120.0, grid)
    sharpe = {g: evaluate_actions(open_, close, [(0, 2000)], ma_cross(close, [(0, 2000)], *g), env)["sharpe"]
              for g in grid}
    assert best == max(sharpe, key=sharpe.get)


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_random_like_trades_at_the_rate_given(mode: str) -> None:
    from himari.evaluation.policy import evaluate_actions

    close = np.full(20_001, 100.0)
    acts = random_like(0.05, [(0, 20_001)], mode, seed=3)
    m = evaluate_actions(close, close, [(0, 20_001)], acts, EnvConfig(mode=mode))
    assert m["n_trades"] / m["decisions"] == pytest.approx(0.05 if mode == "long_flat" else 0.05, rel=0.1)
    assert random_like(0.05, [(0, 100)], mode, seed=3).tolist() == random_like(0.05, [(0, 100)], mode, seed=3).tolist()


def test_gates_parse_check_and_refuse_unknown() -> None:
    assert [parse_gate(g).text() for g in DEFAULT_GATES] == ["oos_sharpe >= 1.5", "dsr >= 0.95",
                                                             "p_vs_buy_and_hold < 0.05", "no_collapse"]
    for bad, message in (("sharpe>=1", "unknown gate 'sharpe'"), ("oos_sharpe=>1", "expected NAME"),
                         ("oos_sharpe>=1e999", "finite")):
        with pytest.raises(ConfigError, match=message):
            parse_gate(bad)
    ev = {"walk_forward": {"mean": {"sharpe": 1.6, "total_return": 0.1}},
          "statistics": {"dsr": 0.9, "p_value": {"vs_buy_and_hold": 0.04, "vs_never_trade": 0.5}, "pbo": None},
          "folds": [{"fold": 0, "name": "fold-0", "runs": {"0": {"metrics": {"collapsed": False}},
                                                "1": {"metrics": {"collapsed": True}}}}]}
    out = {g["name"]: g for g in check_gates([parse_gate(g) for g in (*DEFAULT_GATES, "pbo<0.5")], ev)}
    assert out["oos_sharpe"]["passed"] and not out["dsr"]["passed"] and out["p_vs_buy_and_hold"]["passed"]
    assert not out["no_collapse"]["passed"] and "fold-0/seed 1" in out["no_collapse"]["description"]
    assert not out["pbo"]["passed"] and out["pbo"]["value"] is None  # one configuration: no PBO to pass



def test_each_gate_reads_its_own_value_and_a_non_finite_value_fails() -> None:
    """Every gate against an evaluation whose values all differ, so a gate reading another's
    value shows; a NaN value fails whatever the comparison."""
    from himari.evaluate.gates import FLAGS, GATES

    ev = {"walk_forward": {"mean": {"sharpe": 1.1, "total_return": 0.22}},
          "statistics": {"psr": 0.73, "dsr": 0.31, "p_value": {"vs_buy_and_hold": 0.044, "vs_never_trade": 0.55},
                         "pbo": 0.27},
          "cpcv": {"sharpe": {"mean": 0.9}}, "folds": []}
    want = {"oos_sharpe": 1.1, "oos_return": 0.22, "psr": 0.73, "dsr": 0.31, "p_vs_buy_and_hold": 0.044,
            "p_vs_never_trade": 0.55, "cpcv_sharpe": 0.9, "pbo": 0.27}
    assert set(want) == set(GATES) and set(FLAGS) == {"no_collapse"}
    for name, value in want.items():
        above, below = check_gates([parse_gate(f"{name}>={value}"), parse_gate(f"{name}<{value}")], ev)
        assert above["value"] == value and above["passed"] and not below["passed"], name
    ev["statistics"]["dsr"] = float("nan")
    for spec in ("dsr>=0.5", "dsr<0.5"):
        assert not check_gates([parse_gate(spec)], ev)[0]["passed"]

def test_statistics_summary_picks_the_best_trial_and_tests_the_ensemble_against_each_benchmark() -> None:
    """``summarise``: the PSR is the ensemble's (here its closed form, computed apart), the DSR
    deflates the best trial (not the first) by every trial's Sharpe, and the p-value is that of
    "the ensemble beats the benchmark", not the reverse: one benchmark it clearly beats, one that
    clearly beats it."""
    from himari.evaluate.statistics import summarise
    from himari.evaluation import stats

    rng = np.random.default_rng(11)
    n = 3000
    noise = rng.normal(0, 0.01, size=(3, n))
    trials = [noise[0] - 0.0004, noise[1] + 0.0008, noise[2] + 0.0001]  # the best is the second
    ensemble = np.mean(trials, axis=0)
    worse, better = ensemble - 0.001 + rng.normal(0, 0.002, n), ensemble + 0.001 + rng.normal(0, 0.002, n)
    out = summarise(ensemble=ensemble, trials=trials, bars_per_year=105120.0,
                    benchmarks={"worse": worse, "better": better}, per_config=None, pbo_partitions=4,
                    resamples=400, block_length=None, seed=0)
    sr = ensemble.mean() / ensemble.std(ddof=1)
    d = ensemble - ensemble.mean()
    g3, g4 = np.mean(d**3) / np.mean(d**2) ** 1.5, np.mean(d**4) / np.mean(d**2) ** 2  # population moments
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    psr = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert out["psr"] == pytest.approx(psr, rel=1e-3)
    sharpes = [t.mean() / t.std(ddof=1) for t in trials]
    assert out["dsr"] == pytest.approx(stats.deflated_sharpe_ratio(trials[1], sharpes), rel=1e-9)
    assert out["dsr"] != pytest.approx(stats.deflated_sharpe_ratio(trials[0], sharpes), rel=1e-3)
    assert out["n_trials"] == 3 and out["prior_trials"] == 0
    assert out["p_value"]["vs_worse"] < 0.01 and out["p_value"]["vs_better"] > 0.99
