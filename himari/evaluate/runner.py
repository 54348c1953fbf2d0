"""``himari evaluate``: retrain a model on every fold and seed, score it out of sample next to
baselines on the same bars, and say with statistics whether it has an edge.

An evaluation directory (``evaluations/<model>/<timestamp>/`` or ``--out``):

| path | content |
| --- | --- |
| ``evaluation.yaml`` | the evaluation's settings (``--resume DIR`` continues with them) |
| ``runs/[<config>/]<fold>/seed-<s>/`` | one ordinary run directory per retraining (``himari backtest`` works on it) |
| ``series/<strategy>.parquet`` | per-bar out-of-sample series chained over the walk-forward folds (``himari.evaluation.series``) |
| ``evaluation.json`` | folds, chained metrics, CPCV paths, statistics, gates (written last, atomically) |
| ``report.html`` | the report (``himari report``) |

Runs that finished are read back, an interrupted one is resumed from its last checkpoint, so a
killed evaluation continues where it stopped. An evaluation that fails before any run finished
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError
from himari.evaluate import statistics
from himari.evaluate.baselines import fit_ma_cross, ma_cross, random_like, trade_rate
from himari.evaluate.folds import Fold, cpcv, walk_forward
from himari.evaluate.gates import DEFAULT_GATES, check_gates, parse_gate
from himari.evaluate.prior_trials import read_prior_trials
from himari.evaluation.evaluation_file import EVALUATION_FORMAT, EVALUATION_RESULT
from himari.evaluation.policy import baseline_actions, evaluate_actions, judged_on_decisions
from himari.trading import EnvConfig

FORMAT, VERSION = EVALUATION_FORMAT, 1
SETTINGS, RESULT = "evaluation.yaml", EVALUATION_RESULT


@dataclass(frozen=True)
class EvaluationConfig:
    """What an evaluation retrains and how it judges it (``evaluation.yaml``)."""

    model: str
    data: str | None
    """A prepared directory or bars file; None: the synthetic market."""
    seeds: tuple[int, ...] = (0, 1, 2)
    walk_forward: int = 6
    fold_mode: str = "expanding"
    cpcv: tuple[int, int] | None = None
    """(groups, test groups) of the combinatorial purged cross-validation, or None."""
    validation_fraction: float = 0.2
    embargo: int | None = None
    """Rows between train, validation and test blocks; None: the prepared data's embargo."""
    gates: tuple[str, ...] = DEFAULT_GATES
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Configurations to compare: dotted run-config key -> values (their product)."""
    sets: tuple[str, ...] = ()
    """Run-config assignments every retraining gets (``--set``, ``--epochs`` ...)."""
    resamples: int = 10_000
    block_length: int | None = None
    pbo_partitions: int = 8
    prior_trials: tuple[str, ...] = ()
    """Evaluation directories of configurations tried before this one (a recipe search), or
    trials files summarising them (``himari.evaluate.prior_trials``): every (configuration, seed)
    they scored counts as a trial in this evaluation's deflated Sharpe."""
    hold_out_last: bool = False
    """Train and score every walk-forward fold but the last, whose test block stays unseen (to
    choose a recipe now and test it once, later, on that block)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"], d["gates"], d["sets"] = list(self.seeds), list(self.gates), list(self.sets)
        d["prior_trials"] = list(self.prior_trials)
        d["cpcv"] = None if self.cpcv is None else list(self.cpcv)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationConfig:
        d = dict(d)
        d["seeds"], d["gates"], d["sets"] = tuple(d["seeds"]), tuple(d["gates"]), tuple(d["sets"])
        d["cpcv"] = None if d.get("cpcv") is None else tuple(d["cpcv"])
        d.setdefault("hold_out_last", False)  # settings written before these options existed
        d["prior_trials"] = tuple(d.get("prior_trials") or ())
        return cls(**d)

    def configurations(self) -> list[tuple[str, list[str]]]:
        """(name, --set assignments) of each configuration: ``default`` alone without a grid."""
        if not self.grid:
            return [("default", [])]
        keys = sorted(self.grid)
        out = []
        for i, values in enumerate(itertools.product(*(self.grid[k] for k in keys))):
            out.append((f"c{i}", [f"{k}={json.dumps(v)}" for k, v in zip(keys, values)]))
        return out


@dataclass
class _Run:
    config: str
    fold: Fold
    seed: int
    directory: Path


EVALUATION_SETS = {"model": "the evaluated MODEL", "data": "--data", "splits": "--walk-forward (and --cpcv)",
                   "train.seed": "--seeds"}
"""Run settings an evaluation gives every run itself, and the options that set them."""


class Evaluation:
    """One evaluation: its plan (folds x configurations x seeds), the runs, the analysis."""

    def __init__(self, config: EvaluationConfig, directory: Path, *, plugins: Any = None, console: Any = None) -> None:
        from rich.console import Console

        from himari.data import PreparedData, resolve_prepared
        from himari.plugin.manager import get_plugins
        from himari.training.config import refuse_fixed_sets

        self.config = config
        self.directory = Path(directory)
        self.plugins = plugins or get_plugins()
        self.console = console or Console()
        self.gates = [parse_gate(g) for g in config.gates]
        refuse_fixed_sets(config.sets, EVALUATION_SETS, "an evaluation")
        refuse_fixed_sets(list(config.grid), EVALUATION_SETS, "an evaluation", option="--grid")
        self.data_path = resolve_prepared(config.data).resolve()
        self.data = PreparedData(self.data_path)
        embargo = int(self.data.metadata["embargo"]) if config.embargo is None else int(config.embargo)
        if embargo < int(self.data.lookahead):
            raise ConfigError(f"--embargo {embargo}: less than the labels' lookahead of {self.data.lookahead} bars")
        self.embargo = embargo
        if not config.seeds:
            raise ConfigError("--seeds: at least one seed")
        self.folds = walk_forward(self.data, config.walk_forward, mode=config.fold_mode, embargo=embargo,
                                  validation_fraction=config.validation_fraction)
        self.held_out: Fold | None = None
        if config.hold_out_last:
            if config.walk_forward < 2:
                raise ConfigError("--hold-out-last: needs at least 2 walk-forward folds (one is held out)")
            if config.cpcv is not None:
                raise ConfigError("--hold-out-last: CPCV tests on every part of the data; drop --cpcv")
            self.held_out, self.folds = self.folds[-1], self.folds[:-1]
        self.cpcv_folds, self.paths = ([], []) if config.cpcv is None else cpcv(
            self.data, *config.cpcv, embargo=embargo, validation_fraction=config.validation_fraction)
        self.bars_per_year = float(self.data.metadata.get("bars_per_year", 105_120))
        self.prior_trials = read_prior_trials(config.prior_trials)  # read now: a bad path fails before training
        self.configs = config.configurations()
        names = {g.name for g in self.gates}
        if "pbo" in names and len(self.configs) < 2:
            raise ConfigError("--gate pbo: the probability of backtest overfitting compares configurations; give "
                              "--grid with at least two")
        if "cpcv_sharpe" in names and config.cpcv is None:
            raise ConfigError("--gate cpcv_sharpe: the CPCV paths' Sharpe needs --cpcv N,K")
        for name, sets in self.configs:  # a misspelt setting fails now, not after hours of training
            self._run_config(name, sets, self.folds[0], config.seeds[0])
        runs = [_Run(name, fold, seed, self._run_dir(name, fold, seed))
                for name, _ in self.configs for fold in [*self.folds, *self.cpcv_folds] for seed in config.seeds]
        # each configuration's first run before the rest: a setting that only fails once training
        # starts (two methods that cannot work together, say) fails in minutes, not hours
        per_config = len(runs) // len(self.configs)
        firsts = runs[::per_config]
        self.runs = firsts + [r for r in runs if all(r is not f for f in firsts)]

    # ------------------------------------------------------------------------------ runs

    def _run_dir(self, config: str, fold: Fold, seed: int) -> Path:
        base = self.directory / "runs"
        if len(self.configs) > 1:
            base = base / config
        return base / fold.name / f"seed-{seed}"

    def _run_config(self, name: str, sets: list[str], fold: Fold, seed: int) -> Any:
        from himari.training.config import merge_run_config

        return merge_run_config(plugins=self.plugins, overrides={"model": self.config.model,
                                                                 "data": str(self.data_path),
                                                                 "splits": fold.splits()},
                                sets=[*self.config.sets, *sets, f"train.seed={seed}", "train.progress=false"])

    def _train(self, run: _Run) -> dict[str, Any]:
        """Train (or resume, or read back) one run; returns its summary."""
        from rich.console import Console

        from himari.training import rundir
        from himari.training.trainer import Trainer

        summary = run.directory / rundir.SUMMARY
        if summary.exists():
            return rundir.read_json(summary, "run summary")
        quiet = Console(file=io.StringIO(), width=200)
        if rundir.is_run_dir(run.directory):
            return Trainer.resume(run.directory, plugins=self.plugins, console=quiet).fit()
        sets = dict(self.configs)[run.config]
        trainer = Trainer(self._run_config(run.config, sets, run.fold, run.seed), plugins=self.plugins,
                          run_dir=run.directory, console=quiet)
        return trainer.fit()

    def train_all(self, progress: Callable[[str], None] | None = None,
                  finished: Callable[[], None] | None = None) -> None:
        """Train (or, resuming, find) every run: ``progress`` before each with its label,
        ``finished`` after each."""
        for run in self.runs:
            if progress:
                progress(f"{run.config + ' ' if len(self.configs) > 1 else ''}{run.fold.name} seed {run.seed}")
            self._train(run)
            if finished:
                finished()

    # -------------------------------------------------------------------------- scoring

    def _env(self) -> EnvConfig:
        return self._run_config(*self.configs[0], self.folds[0], self.config.seeds[0]).env

    def _actions(self, run: _Run, ranges: list[tuple[int, int]], decision_counts: np.ndarray | None = None
                 ) -> np.ndarray:
        from himari.training.assemble import load_trained
        from himari.training.data_identity import check_same_data
        from himari.training.device import scoring_device

        check_same_data(run.directory, self.data, "an evaluation scores its runs on the data they trained on: "
                                                  "restore that data set, or start a new evaluation")
        policy = load_trained(run.directory, plugins=self.plugins, device=scoring_device(run.directory))
        return policy.actions(self.data, ranges, decision_counts=decision_counts)

    def _score(self, ranges: list[tuple[int, int]], actions: np.ndarray, env: EnvConfig) -> dict[str, Any]:
        return evaluate_actions(self.data.open, self.data.close, ranges, actions, env, self.bars_per_year)

    def analyse(self) -> dict[str, Any]:
        """Score every run and baseline, chain the out-of-sample blocks, compute the statistics
        and check the gates: the content of ``evaluation.json``."""
        from himari.evaluation.series import per_bar

        env = self._env()
        data = self.data
        wf_runs = {(r.config, r.fold.name, r.seed): r for r in self.runs if not r.fold.name.startswith("cpcv")}
        test_ranges = [r for f in self.folds for r in f.test]
        decided: dict[tuple[str, int], np.ndarray] = {}  # the model's own decisions, before execution rules
        fold_rows, chained, baseline_parts = [], {}, {k: [] for k in ("buy-and-hold", "never-trade", "random",
                                                                      "ma-cross")}
        for fold in self.folds:
            runs, acts_by_seed = {}, {}
            for cname, _ in self.configs:
                for seed in self.config.seeds:
                    run = wf_runs[(cname, fold.name, seed)]
                    counts = np.zeros(3, dtype=np.int64)
                    acts = self._actions(run, fold.test, counts)
                    chained.setdefault((cname, seed), []).append(acts)
                    decided.setdefault((cname, seed), np.zeros(3, dtype=np.int64))[:] += counts
                    key = str(seed) if len(self.configs) == 1 else f"{cname}/{seed}"
                    runs[key] = {"run_dir": str(run.directory),
                                 "metrics": judged_on_decisions(self._score(fold.test, acts, env), counts)}
                    acts_by_seed[key] = acts
            rate = float(np.mean([trade_rate(r["metrics"]) for r in runs.values()]))
            fast, slow = fit_ma_cross(data.open, data.close, [*fold.train, *fold.validation], env, self.bars_per_year)
            base_acts = {"buy-and-hold": baseline_actions("buy-and-hold", fold.test),
                         "never-trade": baseline_actions("never-trade", fold.test),
                         "random": random_like(rate, fold.test, env.mode, seed=len(fold_rows)),
                         "ma-cross": ma_cross(data.close, fold.test, fast, slow)}
            baselines = {}
            for name, acts in base_acts.items():
                baseline_parts[name].append(acts)
                baselines[name] = self._score(fold.test, acts, env)
            baselines["ma-cross"]["params"] = {"fast": fast, "slow": slow}
            baselines["random"]["params"] = {"trade_rate": rate}
            fold_rows.append({"fold": len(fold_rows), "name": fold.name, "train": fold.train, "validation": fold.validation,
                              "test": fold.test, "test_span": self.span(fold.test), "runs": runs,
                              "baselines": baselines})

        series: dict[str, Any] = {}
        seed_metrics, returns = {}, {}
        # each chained series is also scored without fee and slippage: direction skill apart from cost control
        free = dataclasses.replace(env, fee=0.0, slippage=0.0)
        free_seeds, free_base = {}, {}
        for (cname, seed), parts in chained.items():
            acts = np.concatenate(parts)
            key = f"model-seed-{seed}" if len(self.configs) == 1 else f"{cname}-seed-{seed}"
            seed_metrics[(cname, seed)] = judged_on_decisions(self._score(test_ranges, acts, env),
                                                               decided[(cname, seed)])
            free_seeds[(cname, seed)] = self._score(test_ranges, acts, free)
            series[key] = per_bar(data.open, data.close, data.timestamps, test_ranges, acts, env)
            seed_metrics[(cname, seed)].update(_durations(series[key]["equity"].to_numpy()))
            returns[(cname, seed)] = series[key]["return"].to_numpy()
        base_metrics = {}
        for name, parts in baseline_parts.items():
            acts = np.concatenate(parts)
            base_metrics[name] = self._score(test_ranges, acts, env)
            free_base[name] = self._score(test_ranges, acts, free)
            series[name] = per_bar(data.open, data.close, data.timestamps, test_ranges, acts, env)
            base_metrics[name].update(_durations(series[name]["equity"].to_numpy()))

        # the configuration judged: the best by mean out-of-sample Sharpe over seeds
        def mean_sharpe(cname: str) -> float:
            return float(np.mean([seed_metrics[(cname, s)]["sharpe"] for s in self.config.seeds]))

        chosen = max((c for c, _ in self.configs), key=mean_sharpe)
        chosen_metrics = [seed_metrics[(chosen, s)] for s in self.config.seeds]
        ensemble = np.mean([returns[(chosen, s)] for s in self.config.seeds], axis=0)
        series["model-ensemble"] = self._ensemble_table(series[f"model-seed-{self.config.seeds[0]}"
                                                              if len(self.configs) == 1 else
                                                              f"{chosen}-seed-{self.config.seeds[0]}"], ensemble)
        stepped = (series["buy-and-hold"].groupby("range").cumcount() > 0).to_numpy()  # no step on a range's first bar
        per_config = None
        if len(self.configs) > 1:
            per_config = np.stack([np.mean([returns[(c, s)] for s in self.config.seeds], axis=0)[stepped]
                                   for c, _ in self.configs], axis=1)
        stats = statistics.summarise(
            ensemble=ensemble[stepped], trials=[returns[k][stepped] for k in returns], bars_per_year=self.bars_per_year,
            benchmarks={"buy_and_hold": series["buy-and-hold"]["return"].to_numpy()[stepped],
                        "never_trade": series["never-trade"]["return"].to_numpy()[stepped]},
            per_config=per_config, prior_trials=self.prior_trials,
            pbo_partitions=self.config.pbo_partitions, resamples=self.config.resamples,
            block_length=self.config.block_length, seed=self.config.seeds[0])
        result = {
            "format": FORMAT, "version": VERSION, "model": self.config.model, "data": str(self.data_path),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": {**self.config.to_dict(), "embargo": self.embargo, "costs": env.costs(),
                       "configurations": {c: sets for c, sets in self.configs}, "chosen": chosen},
            "folds": fold_rows,
            "held_out": None if self.held_out is None else {"name": self.held_out.name, "test": self.held_out.test,
                                                             "test_span": self.span(self.held_out.test)},
            "walk_forward": {"test_span": self.span(test_ranges), "bars": int(sum(b - a for a, b in test_ranges)),
                             "seeds": {str(s): seed_metrics[(chosen, s)] for s in self.config.seeds},
                             "mean": _mean(chosen_metrics), "std": _std(chosen_metrics),
                             "baselines": base_metrics,
                             "zero_cost": {"seeds": {str(s): free_seeds[(chosen, s)] for s in self.config.seeds},
                                           "mean": _mean([free_seeds[(chosen, s)] for s in self.config.seeds]),
                                           "std": _std([free_seeds[(chosen, s)] for s in self.config.seeds]),
                                           "baselines": free_base},
                             "trials": {f"{c}/{s}": seed_metrics[(c, s)]["sharpe"] for c, s in seed_metrics},
                             "bars_per_year": self.bars_per_year,
                             **({"configurations": {c: _mean([seed_metrics[(c, s)] for s in self.config.seeds])
                                                    for c, _ in self.configs}} if len(self.configs) > 1 else {})},
            "cpcv": self._cpcv(env, chosen),
            "statistics": stats,
            "series": {name: f"series/{name}.parquet" for name in series},
        }
        result["gates"] = check_gates(self.gates, result)
        self._series = series
        return _plain(result)

    def _ensemble_table(self, template: Any, ensemble: np.ndarray) -> Any:
        table = template[["timestamp", "row", "range", "close"]].copy()
        table["action"] = -1  # an average of strategies has no single action
        table["position"] = np.nan
        table["return"] = ensemble
        table["gross_return"] = np.nan
        table["equity"] = np.cumprod(1.0 + ensemble)
        return table

    def _cpcv(self, env: EnvConfig, chosen: str) -> dict[str, Any] | None:
        if not self.cpcv_folds:
            return None
        runs = {(r.fold.name, r.seed): r for r in self.runs if r.config == chosen and r.fold.name.startswith("cpcv")}
        paths = []
        for seed in self.config.seeds:
            group_actions: dict[tuple[int, int], np.ndarray] = {}
            for j, path in enumerate(self.paths):
                ranges, acts = [], []
                for group, split in path:
                    fold = self.cpcv_folds[split]
                    if (group, split) not in group_actions:
                        group_ranges = fold.group_tests[fold.test_groups.index(group)]
                        group_actions[(group, split)] = self._actions(runs[(fold.name, seed)], group_ranges)
                    ranges += fold.group_tests[fold.test_groups.index(group)]
                    acts.append(group_actions[(group, split)])
                m = self._score(ranges, np.concatenate(acts), env)
                paths.append({"seed": seed, "path": j, "sharpe": m["sharpe"], "total_return": m["total_return"]})
        sharpes = np.array([p["sharpe"] for p in paths])
        return {"groups": self.config.cpcv[0], "test_groups": self.config.cpcv[1], "splits": len(self.cpcv_folds),
                "paths": paths, "sharpe": {"mean": float(sharpes.mean()), "std": float(sharpes.std(ddof=1))
                                           if len(sharpes) > 1 else 0.0,
                                           "quantiles": {q: float(np.quantile(sharpes, float(q)))
                                                         for q in ("0.05", "0.25", "0.5", "0.75", "0.95")}}}

    def span(self, ranges: list[tuple[int, int]]) -> dict[str, str]:
        import pandas as pd

        ts = self.data.timestamps
        first, last = min(int(ts[a]) for a, _ in ranges), max(int(ts[b - 1]) for _, b in ranges)
        return {"start": pd.Timestamp(first, tz="UTC").isoformat(), "end": pd.Timestamp(last, tz="UTC").isoformat()}

    # --------------------------------------------------------------------------- files

    def write(self, result: dict[str, Any]) -> None:
        from himari.data.atomic import atomic_path, write_text_atomic

        (self.directory / "series").mkdir(parents=True, exist_ok=True)
        for name, table in self._series.items():
            with atomic_path(self.directory / "series" / f"{name}.parquet") as tmp:
                table.to_parquet(tmp, index=False)
        write_text_atomic(self.directory / RESULT, json.dumps(result, indent=2) + "\n")


def _durations(equity: np.ndarray) -> dict[str, Any]:
    """The longest stretch under water and the time from the deepest trough back to its peak,
    in bars of the chained out-of-sample curve (``himari.evaluation.stats``)."""
    from himari.evaluation import stats

    d = stats.drawdown_durations(np.r_[1.0, equity])
    return {"longest_underwater_bars": d.longest_underwater_bars, "recovery_bars": d.time_to_recovery_bars}


def _numeric(metrics: list[dict[str, Any]]) -> list[str]:
    """Keys whose value is a number in every metrics dict (a drawdown that never recovered has
    None)."""
    return [k for k in metrics[0] if all(isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool)
                                         for m in metrics)]


def _mean(metrics: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in metrics])) for k in _numeric(metrics)}


def _std(metrics: list[dict[str, Any]]) -> dict[str, float]:
    return {k: float(np.std([m[k] for m in metrics], ddof=1)) if len(metrics) > 1 else 0.0
            for k in _numeric(metrics)}


def _plain(x: Any) -> Any:
    """JSON-ready: tuples to lists, NumPy scalars to numbers, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def elapsed(t0: float) -> str:
    s = time.perf_counter() - t0
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"
