"""Pins on what decides whether ``himari evaluate`` says a model has an edge, each against a
hand-worked case or a computation made apart from the code under test: how the walk-forward
folds, seeds and configurations are combined (the trials of the deflated Sharpe, the seed
ensemble the PSR and p-values judge, the configuration chosen), how earlier evaluations' trials
are read for ``--prior-trials``, the direction and series of the p-values, the PBO of a
two-configuration grid, the ``no_collapse`` flag over every fold and seed, a non-finite gate value
and ``--strict``'s exit code. Each test's docstring names the wrong implementation it catches."""

from __future__ import annotations

import json
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
