"""The evaluation's combinations over seeds, folds and paths, pinned with THREE unequal seeds.

The harness of test_evaluate_pinned.py uses two seeds, where the median of the seeds equals
their mean and a standard deviation with ddof = 0 is a constant factor of the sample one; here
three seeds of unequal skill tell them apart. Every expected value is formed from the
definitions (``statistics`` from the standard library, NumPy on series formed independently),
never read back from the code under test.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BARS_PER_YEAR = 10_000.0
SEEDS = (0, 1, 2)
# how often a seed's action is right about the next bar: three different strategies
SKILL = {0: 0.9, 1: 0.55, 2: 0.3}
FOLD_TESTS = [[(300, 450)], [(450, 600)]]


class _Data:
    """A random walk of 600 bars (1-minute timestamps): the fields ``analyse`` reads."""

    def __init__(self) -> None:
        rng = np.random.default_rng(21)
        self.close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 600)))
        self.open = np.r_[self.close[0], self.close[:-1]]
        self.timestamps = np.arange(600, dtype=np.int64) * 60 * 10**9


def _actions(data: _Data, seed: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """BUY before a rise / SELL before a fall with probability SKILL[seed]; some HOLDs so the
    seeds trade at different rates."""
    rng = np.random.default_rng([seed, ranges[0][0]])
    out = []
    for a, b in ranges:
        up = np.r_[data.close[a + 1:b] > data.close[a:b - 1], True]
        right = rng.random(b - a) < SKILL[seed]
        acts = np.where(up == right, 2, 0).astype(np.int8)
        acts[rng.random(b - a) < 0.2 * (seed + 1)] = 1
        out.append(acts)
    return np.concatenate(out)


def _evaluation(data: _Data) -> Any:
    from himari.evaluate.folds import Fold
    from himari.evaluate.gates import parse_gate
    from himari.evaluate.runner import Evaluation, EvaluationConfig, _Run
    from himari.trading import EnvConfig

    ev = object.__new__(Evaluation)
    ev.config = EvaluationConfig(model="m", data=None, seeds=SEEDS, walk_forward=2, resamples=200)
    ev.configs = ev.config.configurations()
    ev.folds = [Fold(f"fold-{i}", [(0, 150 * i + 200)], [(150 * i + 210, 150 * i + 290)], FOLD_TESTS[i])
                for i in range(2)]
    ev.cpcv_folds, ev.paths, ev.held_out = [], [], None
    ev.runs = [_Run("default", f, s, Path(f"/nowhere/{f.name}/seed-{s}")) for f in ev.folds for s in SEEDS]
    ev.data, ev.data_path, ev.bars_per_year = data, Path("/nowhere/data"), BARS_PER_YEAR
    ev.prior_trials = []
    ev.embargo = 10
    ev.gates = [parse_gate(g) for g in ev.config.gates]
    ev._env = lambda: EnvConfig()

    def actions(run: Any, ranges: list[tuple[int, int]], counts: np.ndarray | None = None) -> np.ndarray:
        acts = _actions(data, run.seed, ranges)
        if counts is not None:
            counts[:] += np.bincount(acts[np.r_[np.ones(len(acts) - 1, bool), False]], minlength=3)
        return acts

    ev._actions = actions
    return ev


@pytest.fixture(scope="module")
def three_seeds() -> dict[str, Any]:
    data = _Data()
    return {"data": data, "ev": _evaluation(data).analyse()}


def _seed_returns(data: _Data) -> dict[int, np.ndarray]:
    """Each seed's chained per-bar returns (folds in order, each block's first bar dropped),
    formed here from the engine's own replay of the actions."""
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    tests = [r for t in FOLD_TESTS for r in t]
    out = {}
    for s in SEEDS:
        acts = np.concatenate([_actions(data, s, t) for t in FOLD_TESTS])
        table = per_bar(data.open, data.close, data.timestamps, tests, acts, EnvConfig())
        rows = table["row"].to_numpy()
        out[s] = table["return"].to_numpy()[(rows != 300) & (rows != 450)]
    return out


def test_ensemble_is_the_bar_by_bar_mean_of_three_seeds(three_seeds: dict[str, Any]) -> None:
    """Catches the seed ensemble formed with the median over seeds (or any statistic that equals
    the mean for two seeds): with three unequal seeds the annualised Sharpe of the ensemble is
    mean(e)/stdev(e)*sqrt(bpy) of e = (r0 + r1 + r2) / 3, by the standard library."""
    r = _seed_returns(three_seeds["data"])
    e = (r[0] + r[1] + r[2]) / 3
    assert not np.allclose(e, np.median(np.stack([r[0], r[1], r[2]]), axis=0))  # the case discriminates
    want = statistics.fmean(e.tolist()) / statistics.stdev(e.tolist()) * BARS_PER_YEAR ** 0.5
    assert three_seeds["ev"]["statistics"]["sharpe"] == pytest.approx(want, rel=1e-9)


def test_random_baseline_trades_at_the_mean_rate_of_three_seeds(three_seeds: dict[str, Any]) -> None:
    """Catches the random baseline's trade rate taken as the median (or any one seed's rate):
    with three seeds trading at three different rates, the rate is their arithmetic mean."""
    for f in three_seeds["ev"]["folds"]:
        rates = [m["metrics"]["n_trades"] / m["metrics"]["decisions"] for m in f["runs"].values()]
        assert len(rates) == 3 and statistics.median(rates) != pytest.approx(statistics.fmean(rates), rel=1e-6)
        assert f["baselines"]["random"]["params"]["trade_rate"] == pytest.approx(statistics.fmean(rates), rel=1e-12)


def test_walk_forward_std_over_seeds_is_the_sample_std(three_seeds: dict[str, Any]) -> None:
    """Catches ``walk_forward.std`` (the '+-' the report prints beside the mean Sharpe) computed
    with ddof = 0: it is the sample standard deviation over seeds, statistics.stdev."""
    wf = three_seeds["ev"]["walk_forward"]
    for key in ("sharpe", "total_return", "max_drawdown"):
        per_seed = [wf["seeds"][str(s)][key] for s in SEEDS]
        assert wf["std"][key] == pytest.approx(statistics.stdev(per_seed), rel=1e-12), key
        assert wf["zero_cost"]["std"][key] == pytest.approx(
            statistics.stdev([wf["zero_cost"]["seeds"][str(s)][key] for s in SEEDS]), rel=1e-12), key


def test_cpcv_sharpe_spread_is_the_sample_std_of_the_paths() -> None:
    """Catches the CPCV paths' Sharpe spread computed with ddof = 0. Three groups of 100 rows,
    one test group per split: 3 splits, 1 path per seed, 2 seeds -> 2 path Sharpe ratios; each
    is the chained Sharpe of its groups' actions (evaluate_actions on the concatenated ranges),
    and the std is statistics.stdev of the two (|a - b| / sqrt(2))."""
    from himari.evaluate.folds import Fold
    from himari.evaluate.runner import Evaluation, EvaluationConfig, _Run
    from himari.evaluation.policy import evaluate_actions
    from himari.trading import EnvConfig

    data = _Data()
    groups = [[(300, 400)], [(400, 500)], [(500, 600)]]
    ev = object.__new__(Evaluation)
    ev.config = EvaluationConfig(model="m", data=None, seeds=(0, 2), cpcv=(3, 1))
    ev.cpcv_folds = [Fold(f"cpcv-{g}", [], [], groups[g], (g,), (groups[g],)) for g in range(3)]
    ev.paths = [[(0, 0), (1, 1), (2, 2)]]
    ev.runs = [_Run("default", f, s, Path("/nowhere")) for f in ev.cpcv_folds for s in (0, 2)]
    ev.data, ev.bars_per_year = data, BARS_PER_YEAR
    ev._actions = lambda run, ranges, counts=None: _actions(data, run.seed, ranges)
    out = ev._cpcv(EnvConfig(), "default")
    ranges = [r for g in groups for r in g]
    want = []
    for s in (0, 2):
        acts = np.concatenate([_actions(data, s, g) for g in groups])
        want.append(evaluate_actions(data.open, data.close, ranges, acts, EnvConfig(), BARS_PER_YEAR)["sharpe"])
    assert [p["sharpe"] for p in out["paths"]] == pytest.approx(want, rel=1e-12)
    assert out["sharpe"]["mean"] == pytest.approx(statistics.fmean(want), rel=1e-12)
    assert out["sharpe"]["std"] == pytest.approx(statistics.stdev(want), rel=1e-12)


def test_random_baseline_draws_afresh_in_every_fold() -> None:
    """Catches the random baseline seeded the same in every fold: two folds whose test blocks
    have the same length and whose model trades at the same rate (a fixed BUY/SELL cycle of 10
    bars) would then get the very same random actions, so the 'luck' baseline repeats one draw
    instead of sampling luck fold by fold. Independent draws of 150 bars at rate ~0.1 coincide
    with probability ~0."""
    data = _Data()
    ev = _evaluation(data)

    def cyclic(run: Any, ranges: list[tuple[int, int]], counts: np.ndarray | None = None) -> np.ndarray:
        acts = np.concatenate([np.where((np.arange(b - a) // 10) % 2 == 0, 2, 0).astype(np.int8)
                               for a, b in ranges])
        if counts is not None:
            counts[:] += np.bincount(acts[:-1], minlength=3)
        return acts

    ev._actions = cyclic
    out = ev.analyse()
    rates = [f["baselines"]["random"]["params"]["trade_rate"] for f in out["folds"]]
    assert rates[0] == rates[1] > 0  # the same rate on blocks of the same length: the case discriminates
    random = ev._series["random"]
    fold0 = random.loc[random["range"] == 0, "action"].to_numpy()
    fold1 = random.loc[random["range"] == 1, "action"].to_numpy()
    assert len(fold0) == len(fold1) == 150
    assert not np.array_equal(fold0, fold1)


def test_drawdown_recovery_is_timed_from_the_first_of_equal_troughs() -> None:
    """Catches the deepest trough taken as the LAST of equally deep troughs. Equity (exact
    binary fractions) 1, 0.75, 1, 0.75, 0.875: drawdowns 0, 1/4, 0, 1/4, 1/8. The deepest fall
    1/4 is first reached at bar 1 and recovered one bar later (bar 2 is back at the peak 1);
    the under-water spells are bars {1} and {3, 4}: longest 2. Taking bar 3 would report a
    drawdown that never recovered."""
    from himari.evaluation.stats import drawdown_durations

    dd = drawdown_durations(np.array([1.0, 0.75, 1.0, 0.75, 0.875]))
    assert (dd.longest_underwater_bars, dd.max_drawdown, dd.trough_bar, dd.time_to_recovery_bars) == (2, 0.25, 1, 1)
    assert dd.recovered


def test_carve_validation_embargoes_only_where_train_meets_validation() -> None:
    """Catches the embargo cut from a symbol's training range that ends before the validation
    cut (so never touches a validation block). Symbol A: rows 0-99 at times 0-99; symbol B:
    rows 200-259 at times 0-59. 160 training rows; the last 20% start at sorted index
    int(160 * 0.8) = 128: times 0-59 occur twice (120 rows), so index 128 is time 68.
    A: cut at row 68, train (0, 68 - 5), validate (68, 100). B ends at time 59 < 68: all of it
    trains, (200, 260), nothing dropped."""
    from himari.evaluate.folds import carve_validation

    ts = np.zeros(260, dtype=np.int64)
    ts[0:100] = np.arange(100)
    ts[200:260] = np.arange(60)
    fit, val = carve_validation([(0, 100), (200, 260)], ts, 0.2, embargo=5)
    assert fit == [(0, 63), (200, 260)] and val == [(68, 100)]


def test_random_baseline_realises_the_trade_rate_it_reports(three_seeds: dict[str, Any]) -> None:
    """Catches the random baseline drawn at another rate than the one recorded in
    params.trade_rate (e.g. rate / 2 passed to random_like while the mean is reported). In
    long_flat every drawn change is one position change, so the realised changes per decision
    are Binomial(decisions, rate) / decisions; pooled over the folds (298 decisions) they lie
    within 3 standard errors (~0.08) of the decision-weighted rate (here 0.286 vs 0.290; at half
    the rate they would be ~0.145 away)."""
    trades = decisions = expected = 0.0
    for f in three_seeds["ev"]["folds"]:
        rate = statistics.fmean(m["metrics"]["n_trades"] / m["metrics"]["decisions"] for m in f["runs"].values())
        base = f["baselines"]["random"]
        assert base["params"]["trade_rate"] == pytest.approx(rate, rel=1e-12)
        trades += base["n_trades"]
        decisions += base["decisions"]
        expected += rate * base["decisions"]
    rate = expected / decisions
    assert abs(trades / decisions - rate) <= 3 * (rate * (1 - rate) / decisions) ** 0.5, (trades / decisions, rate)
