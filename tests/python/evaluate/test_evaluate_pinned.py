"""Pins on what decides whether ``himari evaluate`` says a model has an edge, each against a
hand-worked case or a computation made apart from the code under test: how the walk-forward
folds, seeds and configurations are combined (the trials of the deflated Sharpe, the seed
ensemble the PSR and p-values judge, the configuration chosen), how earlier evaluations' trials
are read for ``--prior-trials``, the direction and series of the p-values, the PBO of a
two-configuration grid, the ``no_collapse`` flag over every fold and seed, a non-finite gate value
and ``--strict``'s exit code. Each test's docstring names the wrong implementation it catches."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from himari.evaluate.gates import check_gates, parse_gate
from himari.evaluate.prior_trials import TrialGroup
from himari.evaluate.statistics import summarise
from himari.evaluation import stats

BARS_PER_YEAR = 10_000.0


# --------------------------------------------------------------------------- gates


def _collapse_evaluation(collapsed: set[tuple[int, str]]) -> dict[str, Any]:
    """Two folds of two seeds; ``collapsed`` holds the (fold, seed) pairs that collapsed."""
    return {"folds": [{"fold": i, "name": f"fold-{i}",
                       "runs": {s: {"metrics": {"collapsed": (i, s) in collapsed}} for s in ("0", "1")}}
                      for i in range(2)]}


def test_no_collapse_looks_at_every_fold_and_every_seed() -> None:
    """Catches a ``no_collapse`` flag that only looks at the last fold, or only at each fold's
    first seed: here the one collapsed run is the second seed of the first fold."""
    gate = parse_gate("no_collapse")
    (only,) = check_gates([gate], _collapse_evaluation({(0, "1")}))
    assert not only["passed"] and only["value"] == 1
    assert "fold-0/seed 1" in only["description"]
    (two,) = check_gates([gate], _collapse_evaluation({(0, "1"), (1, "1")}))
    assert not two["passed"] and two["value"] == 2
    (none,) = check_gates([gate], _collapse_evaluation(set()))
    assert none["passed"] and none["value"] == 0


@pytest.mark.parametrize("spec, value", [("oos_sharpe>=1.5", float("inf")), ("p_vs_buy_and_hold<0.05", float("-inf"))])
def test_an_infinite_gate_value_fails(spec: str, value: float) -> None:
    """Catches a gate that only refuses None and NaN: an infinite Sharpe (a series without
    spread) would pass ``oos_sharpe>=1.5``, and evaluation.json would then show the passed gate
    with value null (non-finite numbers are written as null)."""
    ev = {"walk_forward": {"mean": {"sharpe": value}}, "statistics": {"p_value": {"vs_buy_and_hold": value}}}
    (out,) = check_gates([parse_gate(spec)], ev)
    assert out["value"] == value and not out["passed"]


def test_oos_gates_read_the_results_after_costs() -> None:
    """Catches ``oos_sharpe`` or ``oos_return`` reading the zero-cost re-scoring (or one seed)
    instead of the mean over seeds after costs: after costs the model fails both, without costs
    (and on its best seed) it would pass."""
    ev = {"walk_forward": {"mean": {"sharpe": 1.0, "total_return": -0.01},
                           "seeds": {"0": {"sharpe": 2.0, "total_return": 0.3}},
                           "zero_cost": {"mean": {"sharpe": 2.0, "total_return": 0.2}}}}
    sharpe, ret = check_gates([parse_gate("oos_sharpe>=1.5"), parse_gate("oos_return>0")], ev)
    assert (sharpe["value"], sharpe["passed"]) == (1.0, False)
    assert (ret["value"], ret["passed"]) == (-0.01, False)


def test_strict_exits_3_when_any_one_gate_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Catches ``--strict`` exiting 3 only when every gate fails (``not any`` for ``not all``),
    or not at all: one gate of two failing must give exit code 3, none failing 0."""
    from typer.testing import CliRunner

    from himari.cli import app
    from himari.evaluate import session

    gates: list[dict[str, Any]] = []
    monkeypatch.setattr(session, "run_evaluation", lambda *a, **k: {"gates": gates})
    runner = CliRunner()
    gates[:] = [{"name": "oos_sharpe", "passed": True}, {"name": "dsr", "passed": False}]
    assert runner.invoke(app, ["evaluate", "--resume", str(tmp_path), "--strict"]).exit_code == 3
    assert runner.invoke(app, ["evaluate", "--resume", str(tmp_path)]).exit_code == 0
    gates[:] = [{"name": "oos_sharpe", "passed": True}, {"name": "dsr", "passed": True}]
    assert runner.invoke(app, ["evaluate", "--resume", str(tmp_path), "--strict"]).exit_code == 0


# ---------------------------------------------------------------------- statistics


def test_p_values_judge_the_ensemble_not_the_best_trial() -> None:
    """Catches the p-values (bootstrap or sign-flip) formed on the best trial instead of the
    seed ensemble, or with the two series swapped: the best trial beats the benchmark by far,
    the ensemble (the mean of the trials) loses to it by far, so "the ensemble beats the
    benchmark" must have a p-value near 1 for both tests."""
    rng = np.random.default_rng(5)
    n = 2000
    bench = rng.normal(0, 0.01, n)
    trials = [bench + 0.003 + rng.normal(0, 0.001, n), bench - 0.007 + rng.normal(0, 0.001, n)]
    ensemble = np.mean(trials, axis=0)  # bench - 0.002 per bar
    out = summarise(ensemble=ensemble, trials=trials, bars_per_year=BARS_PER_YEAR, benchmarks={"bench": bench},
                    per_config=None, pbo_partitions=4, resamples=300, block_length=None, seed=0)
    assert out["p_value"]["vs_bench"] > 0.99
    assert out["sign_flip_p_value"]["vs_bench"] > 0.99
    flipped = summarise(ensemble=trials[0], trials=trials, bars_per_year=BARS_PER_YEAR, benchmarks={"bench": bench},
                        per_config=None, pbo_partitions=4, resamples=300, block_length=None, seed=0)
    assert flipped["p_value"]["vs_bench"] < 0.01 and flipped["sign_flip_p_value"]["vs_bench"] < 0.01


def test_prior_trials_add_to_the_count_and_to_the_deflation() -> None:
    """Catches ``n_trials`` leaving out the prior trials, and a deflated Sharpe computed on this
    evaluation's trials alone: 2 trials + 3 prior ones are 5, and the DSR is that of the best
    trial against all five Sharpe ratios (which, with a prior trial far above the rest, is far
    lower than against the two alone)."""
    rng = np.random.default_rng(3)
    n = 1500
    trials = [rng.normal(0.0003, 0.01, n), rng.normal(0.0010, 0.01, n)]
    prior = [0.2, -0.1, 0.05]  # per-bar Sharpe ratios
    out = summarise(ensemble=np.mean(trials, axis=0), trials=trials, bars_per_year=BARS_PER_YEAR, benchmarks={},
                    per_config=None, pbo_partitions=4, resamples=100, block_length=None, seed=0,
                    prior_trials=[TrialGroup.of(prior[:1]), TrialGroup.of(prior[1:])])
    assert out["n_trials"] == 5 and out["prior_trials"] == 3
    own = [float(t.mean() / t.std(ddof=1)) for t in trials]
    want = stats.deflated_sharpe_ratio(trials[1], own + prior)
    assert out["dsr"] == pytest.approx(want, rel=1e-9)
    assert want < stats.deflated_sharpe_ratio(trials[1], own) - 0.1


def test_two_configurations_have_a_pbo() -> None:
    """Catches the PBO only computed from three configurations up: a grid of two has one."""
    rng = np.random.default_rng(8)
    per_config = rng.normal(0, 0.01, size=(800, 2))
    per_config[:400, 0] += 0.003  # configuration 0 is best in the first half, 1 in the second
    per_config[400:, 1] += 0.003
    out = summarise(ensemble=per_config[:, 0], trials=[per_config[:, 0], per_config[:, 1]],
                    bars_per_year=BARS_PER_YEAR, benchmarks={}, per_config=per_config, pbo_partitions=4,
                    resamples=100, block_length=None, seed=0)
    assert out["pbo"] is not None
    assert out["pbo"] == pytest.approx(stats.probability_of_backtest_overfitting(per_config, 4).pbo)


# ------------------------------------------------------------------ prior trials


def _write_evaluation(directory: Path, trials: dict[str, float], seeds: dict[str, float], bars_per_year: float) -> str:
    directory.mkdir(parents=True)
    ev = {"format": "himari-evaluation", "walk_forward": {
        "trials": trials, "bars_per_year": bars_per_year, "seeds": {s: {"sharpe": v} for s, v in seeds.items()}}}
    (directory / "evaluation.json").write_text(json.dumps(ev))
    return str(directory)


def test_prior_trials_are_every_configuration_and_seed_of_every_directory(tmp_path: Path) -> None:
    """Catches ``--prior-trials`` reading only the chosen configuration's seeds of an earlier
    grid, keeping only the last directory given, or leaving the annualised Sharpe ratios
    un-scaled: a grid of 2 configurations x 2 seeds at 100 bars a year plus one single
    configuration of 1 seed at 400 give 5 per-bar Sharpe ratios (annual / sqrt(bars a year))."""
    from himari.evaluate.prior_trials import pooled, read_prior_trials, variance

    grid = _write_evaluation(tmp_path / "grid", {"c0/0": 1.0, "c0/1": 2.0, "c1/0": -3.0, "c1/1": 4.0},
                             {"0": 1.0, "1": 2.0}, 100.0)
    single = _write_evaluation(tmp_path / "single", {"default/0": 6.0}, {"0": 6.0}, 400.0)
    every = pooled(read_prior_trials((grid, single)))
    want = np.array([0.1, 0.2, -0.3, 0.4, 0.3])
    assert every.count == 5
    assert every.mean == pytest.approx(want.mean(), rel=1e-12)
    assert variance(every) == pytest.approx(np.var(want, ddof=1), rel=1e-12)


# ------------------------------------------------------------ the whole analysis


class _Data:
    """A random walk of 600 bars (1-minute timestamps): the fields ``analyse`` reads."""

    def __init__(self) -> None:
        rng = np.random.default_rng(21)
        self.close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 600)))
        self.open = np.r_[self.close[0], self.close[:-1]]
        self.timestamps = np.arange(600, dtype=np.int64) * 60 * 10**9


# (configuration, seed) -> how often its action is right about the next bar; c0's seeds differ
# widely (its seed 0 is the best trial of all), c1's are both fair: c1 is the better on average
SKILL = {("c0", 0): 0.95, ("c0", 1): 0.05, ("c1", 0): 0.7, ("c1", 1): 0.7}
FOLD_TESTS = [[(300, 450)], [(450, 600)]]


def _actions(data: _Data, config: str, seed: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """BUY (2) before a rise and SELL (0) before a fall with probability SKILL, else the opposite."""
    rng = np.random.default_rng([int(config[1:]), seed, ranges[0][0]])
    out = []
    for a, b in ranges:
        up = np.r_[data.close[a + 1:b] > data.close[a:b - 1], True]
        right = rng.random(b - a) < SKILL[(config, seed)]
        out.append(np.where(up == right, 2, 0).astype(np.int8))
    return np.concatenate(out)


def _analysed(prior: list[float]) -> dict[str, Any]:
    """``Evaluation.analyse`` on two configurations x two seeds x two walk-forward folds, the
    trained models replaced by ``_actions`` (no training, no files)."""
    from himari.evaluate.folds import Fold
    from himari.evaluate.runner import Evaluation, EvaluationConfig, _Run
    from himari.trading import EnvConfig

    data = _Data()
    ev = object.__new__(Evaluation)
    ev.config = EvaluationConfig(model="m", data=None, seeds=(0, 1), walk_forward=2, resamples=200,
                                 grid={"x": [0, 1]}, pbo_partitions=4)
    ev.configs = ev.config.configurations()
    ev.folds = [Fold(f"fold-{i}", [(0, 150 * i + 200)], [(150 * i + 210, 150 * i + 290)], FOLD_TESTS[i])
                for i in range(2)]
    ev.cpcv_folds, ev.paths, ev.held_out = [], [], None
    ev.runs = [_Run(c, f, s, Path(f"/nowhere/{c}/{f.name}/seed-{s}")) for c, _ in ev.configs for f in ev.folds
               for s in ev.config.seeds]
    ev.data, ev.data_path, ev.bars_per_year = data, Path("/nowhere/data"), BARS_PER_YEAR
    ev.prior_trials = [TrialGroup.of(prior)]
    ev.embargo = 10
    ev.gates = [parse_gate(g) for g in ev.config.gates]
    ev._env = lambda: EnvConfig()

    def actions(run: Any, ranges: list[tuple[int, int]], counts: np.ndarray | None = None) -> np.ndarray:
        acts = _actions(data, run.config, run.seed, ranges)
        if counts is not None:
            counts[:] += np.bincount(acts, minlength=3)
        return acts

    ev._actions = actions
    return ev.analyse()


@pytest.fixture(scope="module")
def analysed() -> dict[str, Any]:
    return _analysed([0.3, -0.2])


@pytest.fixture(scope="module")
def independent() -> dict[str, Any]:
    """The chained per-bar returns of every (configuration, seed), formed here: each seed's
    actions of fold 0 then fold 1, traded over both test blocks, each block's first bar dropped."""
    from himari.evaluation.policy import evaluate_actions
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    data = _Data()
    tests = [r for t in FOLD_TESTS for r in t]
    returns, sharpe = {}, {}
    for key in SKILL:
        acts = np.concatenate([_actions(data, *key, t) for t in FOLD_TESTS])
        table = per_bar(data.open, data.close, data.timestamps, tests, acts, EnvConfig())
        rows = table["row"].to_numpy()
        assert rows.tolist() == list(range(300, 600))
        returns[key] = table["return"].to_numpy()[(rows != 300) & (rows != 450)]
        sharpe[key] = evaluate_actions(data.open, data.close, tests, acts, EnvConfig(), BARS_PER_YEAR)["sharpe"]
    bh = np.concatenate([np.full(b - a, 2, dtype=np.int8) for a, b in tests])
    bh_returns = per_bar(data.open, data.close, data.timestamps, tests, bh, EnvConfig())["return"].to_numpy()
    stepped = np.ones(300, dtype=bool)
    stepped[[0, 150]] = False  # rows 300 and 450, where each block starts flat
    return {"returns": returns, "sharpe": sharpe, "buy_and_hold": bh_returns[stepped]}


def test_the_chosen_configuration_is_the_best_by_mean_sharpe_over_its_seeds(
        analysed: dict[str, Any], independent: dict[str, Any]) -> None:
    """Catches the worst configuration being chosen, or one chosen by its best seed: c0 holds
    the best single trial but c1 the best mean; the walk-forward mean Sharpe the oos_sharpe gate
    reads is the mean of c1's seeds' chained Sharpe ratios."""
    sharpe = independent["sharpe"]
    assert max(sharpe, key=sharpe.get) == ("c0", 0)
    assert np.mean([sharpe[("c1", s)] for s in (0, 1)]) > np.mean([sharpe[("c0", s)] for s in (0, 1)])
    assert analysed["config"]["chosen"] == "c1"
    assert analysed["walk_forward"]["mean"]["sharpe"] == pytest.approx(
        np.mean([sharpe[("c1", 0)], sharpe[("c1", 1)]]), rel=1e-12)
    (gate,) = [g for g in analysed["gates"] if g["name"] == "oos_sharpe"]
    assert gate["value"] == analysed["walk_forward"]["mean"]["sharpe"]


def test_every_configuration_and_seed_is_a_trial_of_the_deflated_sharpe(
        analysed: dict[str, Any], independent: dict[str, Any]) -> None:
    """Catches the deflated Sharpe counting only the chosen configuration's seeds (or leaving
    out the prior trials), the folds chained out of order, or each block's first bar kept: 2
    configurations x 2 seeds + 2 prior trials are 6, and the DSR is that of c0 seed 0 (the best
    trial, not in the chosen configuration) against all six Sharpe ratios."""
    returns = independent["returns"]
    st = analysed["statistics"]
    assert st["n_trials"] == 6 and st["prior_trials"] == 2
    sharpes = [float(r.mean() / r.std(ddof=1)) for r in returns.values()]
    want = stats.deflated_sharpe_ratio(returns[("c0", 0)], sharpes + [0.3, -0.2])
    assert st["dsr"] == pytest.approx(want, rel=1e-9)
    assert st["best_trial_sharpe"] == pytest.approx(stats.sharpe(returns[("c0", 0)], BARS_PER_YEAR), rel=1e-9)


def test_the_ensemble_is_the_chosen_configurations_seeds_averaged_bar_by_bar(
        analysed: dict[str, Any], independent: dict[str, Any]) -> None:
    """Catches a seed ensemble that is one seed (or the other configuration's), and p-values
    against the wrong baseline: the PSR, the annualised Sharpe and the p-values against
    buy-and-hold and never-trade are those of the mean of c1's two seeds' per-bar returns."""
    returns = independent["returns"]
    ensemble = (returns[("c1", 0)] + returns[("c1", 1)]) / 2
    st = analysed["statistics"]
    assert st["psr"] == pytest.approx(stats.probabilistic_sharpe_ratio(ensemble), rel=1e-9)
    assert st["sharpe"] == pytest.approx(stats.sharpe(ensemble, BARS_PER_YEAR), rel=1e-9)
    bh = independent["buy_and_hold"]
    for name, bench in (("buy_and_hold", bh), ("never_trade", np.zeros_like(ensemble))):
        want = stats.bootstrap_pvalue(ensemble, bench, n_resamples=200, seed=0).p_value
        assert st["p_value"][f"vs_{name}"] == pytest.approx(want, abs=1e-12), name
    per_config = np.stack([(returns[(c, 0)] + returns[(c, 1)]) / 2 for c in ("c0", "c1")], axis=1)
    assert st["pbo"] == pytest.approx(stats.probability_of_backtest_overfitting(per_config, 4).pbo)


def test_the_pbo_judges_each_configurations_seed_mean(monkeypatch: pytest.MonkeyPatch,
                                                       independent: dict[str, Any]) -> None:
    """Catches a PBO matrix built from one seed per configuration instead of the mean of its
    seeds (in this small grid both give the same PBO value, so the matrix itself is checked):
    column c is the bar-by-bar mean of c's two seeds' returns, each block's first bar dropped."""
    from himari.evaluate import runner

    seen: dict[str, Any] = {}
    original = runner.statistics.summarise

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(runner.statistics, "summarise", spy)
    _analysed([0.3, -0.2])
    returns = independent["returns"]
    want = np.stack([(returns[(c, 0)] + returns[(c, 1)]) / 2 for c in ("c0", "c1")], axis=1)
    np.testing.assert_allclose(seen["per_config"], want, rtol=0, atol=1e-15)

# ------------------------------------------------------------ three unequal seeds
# With two seeds the median of the seeds equals their mean and a standard deviation with
# ddof = 0 is a constant factor of the sample one; three seeds of unequal skill tell them apart.
# Expected values come from the definitions (``statistics`` from the standard library, NumPy
# on series formed independently), never from the code under test.

THREE_SEEDS = (0, 1, 2)
# how often a seed's action is right about the next bar: three different strategies
THREE_SKILL = {0: 0.9, 1: 0.55, 2: 0.3}


def _three_seed_actions(data: _Data, seed: int, ranges: list[tuple[int, int]]) -> np.ndarray:
    """BUY before a rise / SELL before a fall with probability THREE_SKILL[seed]; some HOLDs so the
    seeds trade at different rates."""
    rng = np.random.default_rng([seed, ranges[0][0]])
    out = []
    for a, b in ranges:
        up = np.r_[data.close[a + 1:b] > data.close[a:b - 1], True]
        right = rng.random(b - a) < THREE_SKILL[seed]
        acts = np.where(up == right, 2, 0).astype(np.int8)
        acts[rng.random(b - a) < 0.2 * (seed + 1)] = 1
        out.append(acts)
    return np.concatenate(out)


def _three_seed_evaluation(data: _Data) -> Any:
    from himari.evaluate.folds import Fold
    from himari.evaluate.gates import parse_gate
    from himari.evaluate.runner import Evaluation, EvaluationConfig, _Run
    from himari.trading import EnvConfig

    ev = object.__new__(Evaluation)
    ev.config = EvaluationConfig(model="m", data=None, seeds=THREE_SEEDS, walk_forward=2, resamples=200)
    ev.configs = ev.config.configurations()
    ev.folds = [Fold(f"fold-{i}", [(0, 150 * i + 200)], [(150 * i + 210, 150 * i + 290)], FOLD_TESTS[i])
                for i in range(2)]
    ev.cpcv_folds, ev.paths, ev.held_out = [], [], None
    ev.runs = [_Run("default", f, s, Path(f"/nowhere/{f.name}/seed-{s}")) for f in ev.folds for s in THREE_SEEDS]
    ev.data, ev.data_path, ev.bars_per_year = data, Path("/nowhere/data"), BARS_PER_YEAR
    ev.prior_trials = []
    ev.embargo = 10
    ev.gates = [parse_gate(g) for g in ev.config.gates]
    ev._env = lambda: EnvConfig()

    def actions(run: Any, ranges: list[tuple[int, int]], counts: np.ndarray | None = None) -> np.ndarray:
        acts = _three_seed_actions(data, run.seed, ranges)
        if counts is not None:
            counts[:] += np.bincount(acts[np.r_[np.ones(len(acts) - 1, bool), False]], minlength=3)
        return acts

    ev._actions = actions
    return ev


@pytest.fixture(scope="module")
def three_seeds() -> dict[str, Any]:
    data = _Data()
    return {"data": data, "ev": _three_seed_evaluation(data).analyse()}


def _three_seed_returns(data: _Data) -> dict[int, np.ndarray]:
    """Each seed's chained per-bar returns (folds in order, each block's first bar dropped),
    formed here from the engine's own replay of the actions."""
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    tests = [r for t in FOLD_TESTS for r in t]
    out = {}
    for s in THREE_SEEDS:
        acts = np.concatenate([_three_seed_actions(data, s, t) for t in FOLD_TESTS])
        table = per_bar(data.open, data.close, data.timestamps, tests, acts, EnvConfig())
        rows = table["row"].to_numpy()
        out[s] = table["return"].to_numpy()[(rows != 300) & (rows != 450)]
    return out


def test_ensemble_is_the_bar_by_bar_mean_of_three_seeds(three_seeds: dict[str, Any]) -> None:
    """Catches the seed ensemble formed with the median over seeds (or any statistic that equals
    the mean for two seeds): with three unequal seeds the annualised Sharpe of the ensemble is
    mean(e)/stdev(e)*sqrt(bpy) of e = (r0 + r1 + r2) / 3, by the standard library."""
    r = _three_seed_returns(three_seeds["data"])
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
        per_seed = [wf["seeds"][str(s)][key] for s in THREE_SEEDS]
        assert wf["std"][key] == pytest.approx(statistics.stdev(per_seed), rel=1e-12), key
        assert wf["zero_cost"]["std"][key] == pytest.approx(
            statistics.stdev([wf["zero_cost"]["seeds"][str(s)][key] for s in THREE_SEEDS]), rel=1e-12), key


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
    ev._actions = lambda run, ranges, counts=None: _three_seed_actions(data, run.seed, ranges)
    out = ev._cpcv(EnvConfig(), "default")
    ranges = [r for g in groups for r in g]
    want = []
    for s in (0, 2):
        acts = np.concatenate([_three_seed_actions(data, s, g) for g in groups])
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
    ev = _three_seed_evaluation(data)

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
