"""``himari evaluate MODEL``: walk-forward (and CPCV) retraining over seeds, out-of-sample scores
beside baselines, statistics and gates. The work is ``himari.evaluate``; this parses and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from himari.cli.completion import complete_list, complete_model

STRICT_EXIT = 3
"""Exit code of ``--strict`` when a gate fails (2 is bad input, 1 a failure)."""


def evaluate(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Model plugin name.", autocompletion=complete_model),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file; default: the synthetic market."),
    walk_forward: int = typer.Option(6, "--walk-forward", min=1, help="Walk-forward folds (expanding train windows "
                                                                      "by default), each retrained."),
    fold_mode: str = typer.Option("expanding", "--fold-mode", help="expanding or rolling train windows."),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per fold (0, 1, ..., N-1)."),
    cpcv: str = typer.Option(None, "--cpcv", help="N,K: combinatorial purged cross-validation with N groups, K "
                                                  "tested per split (a distribution of out-of-sample Sharpe)."),
    embargo: int = typer.Option(None, "--embargo", min=0, help="Rows between train, validation and test blocks "
                                                               "(default: the data's, at least the label horizon)."),
    hold_out_last: bool = typer.Option(False, "--hold-out-last",
                                       help="Leave the last fold out: its test block is neither trained on nor "
                                            "scored (choose a recipe on the others, test it there once)."),
    prior_trials: list[Path] = typer.Option(None, "--prior-trials",
                                            help="An earlier evaluation directory (or a trials file summarising "
                                                 "one) whose configurations and seeds count as trials in the "
                                                 "deflated Sharpe (a recipe search; repeatable)."),
    validation_fraction: float = typer.Option(0.2, "--validation-fraction",
                                              help="Share of each fold's training rows kept to pick best.pt."),
    grid: list[str] = typer.Option(None, "--grid", help="Compare configurations: KEY=V1,V2 (a run-config key, e.g. "
                                                        "train.lr=1e-4,3e-4). Repeatable; the product is evaluated."),
    gate: list[str] = typer.Option(None, "--gate", help="A gate such as oos_sharpe>=1.5, dsr>=0.95, "
                                                        "p_vs_buy_and_hold<0.05, no_collapse (repeatable; default: "
                                                        "those four)."),
    strict: bool = typer.Option(False, "--strict", help=f"Exit with code {STRICT_EXIT} when a gate fails."),
    resamples: int = typer.Option(10_000, "--resamples", min=100, help="Bootstrap resamples of the p-values."),
    out: Path = typer.Option(None, "--out", help="Evaluation directory (default evaluations/<model>/<timestamp>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the evaluation in DIR with its saved settings."),
    json_out: bool = typer.Option(False, "--json", help="Print evaluation.json instead of tables."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs of every run."),
    batch_size: int = typer.Option(None, "--batch-size"),
    lr: float = typer.Option(None, "--lr"),
    preprocess: str = typer.Option(None, "--preprocess", help="Preprocessors, comma-separated.",
                                   autocompletion=complete_list("preprocessor")),
    method: str = typer.Option(None, "--method", help="Training methods, comma-separated.",
                               autocompletion=complete_list("training-method")),
    fee: float = typer.Option(None, "--fee", help="Fraction of traded notional per fill (env.fee)."),
    slippage: float = typer.Option(None, "--slippage", help="Fraction each fill moves against the trader."),
    set_: list[str] = typer.Option(None, "--set", help="Override a run setting for every run: key=value."),
) -> None:
    """Retrain MODEL on walk-forward folds (and CPCV splits) over seeds; score it out of sample
    after costs beside buy-and-hold, never-trade, random and a moving-average cross on the same
    bars; report the deflated Sharpe, p-values and overfitting probability, and check the gates.
    The model's own settings are options too (--context-length 64)."""
    import json

    from rich.console import Console

    from himari.cli.train import exit_interrupted, model_options, refuse_with_resume
    from himari.errors import ConfigError
    from himari.evaluate.runner import EvaluationConfig
    from himari.evaluate.session import EvaluationInterrupted, run_evaluation
    from himari.plugin.manager import get_plugins
    from himari.training.interrupt import stop_signals_interrupt

    plugins = get_plugins()
    console = Console(stderr=json_out)
    if resume is not None:
        refuse_with_resume(ctx, {"resume", "json_out", "strict"}, "evaluation")
        config, directory = None, resume
    else:
        if not model:
            raise ConfigError("give a MODEL (himari plugins list --kind model)")
        sets = [f"{k}={v}" for k, v in (("train.epochs", epochs), ("train.batch_size", batch_size), ("train.lr", lr),
                                         ("env.fee", fee), ("env.slippage", slippage)) if v is not None]
        sets += [f"preprocess={json.dumps(preprocess.split(','))}"] if preprocess else []
        sets += [f"methods={json.dumps(method.split(','))}"] if method else []
        sets += [*model_options(list(ctx.args), model, plugins), *(set_ or [])]
        config = EvaluationConfig(
            model=model, data=data, seeds=tuple(range(seeds)), walk_forward=walk_forward, fold_mode=fold_mode,
            cpcv=_pair(cpcv), validation_fraction=validation_fraction, embargo=embargo,
            gates=tuple(gate) if gate else EvaluationConfig.gates, grid=_grid(grid or []), sets=tuple(sets),
            resamples=resamples, hold_out_last=hold_out_last,
            prior_trials=tuple(str(p.resolve()) for p in prior_trials or []))
        directory = out
    try:
        with stop_signals_interrupt():  # SIGTERM and SIGHUP (a scheduler, timeout) stop it as Ctrl-C does
            result = run_evaluation(config, directory, plugins, console)
    except EvaluationInterrupted as e:
        exit_interrupted(str(e), e.exit_code)
    except KeyboardInterrupt as e:  # while its plan was checked, before any file was written
        from himari.training.interrupt import exit_code

        kept = "nothing was kept" if resume is None else f"continue with: himari evaluate --resume {resume}"
        exit_interrupted(f"interrupted before the first run started; {kept}", exit_code(e))
    if json_out:
        print(json.dumps(result, indent=2))
    if strict and not all(g["passed"] for g in result["gates"]):
        raise typer.Exit(STRICT_EXIT)


def _pair(text: str | None) -> tuple[int, int] | None:
    from himari.errors import ConfigError

    if text is None:
        return None
    try:
        n, k = (int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--cpcv {text!r}: expected N,K such as 6,2") from None
    return n, k


def _grid(items: list[str]) -> dict[str, list[Any]]:
    import yaml

    from himari.errors import ConfigError
    from himari.sweep.space import check_distinct, number_from_text

    out: dict[str, list[Any]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2")
        try:  # a YAML flow list, so a value may be a mapping: labels=null,{name: triple-barrier, horizon: 48}
            parsed = yaml.safe_load(f"[{values}]")
        except yaml.YAMLError as e:
            raise ConfigError(f"--grid {item!r}: the values are not a comma-separated YAML list "
                              f"({' '.join(str(e).split())})") from None
        if len(parsed) < 2:
            raise ConfigError(f"--grid {item!r}: give at least two values to compare")
        if key.strip() in out:
            raise ConfigError(f"--grid: {key.strip()} is given twice")
        out[key.strip()] = check_distinct([number_from_text(v) for v in parsed], f"--grid {key.strip()}")
    return out
