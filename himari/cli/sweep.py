"""``himari sweep MODEL``: many trainings on Ray Tune. The work is ``himari.sweep``; this parses
and prints."""

from __future__ import annotations

from pathlib import Path

import typer

from himari.cli.completion import complete_list, complete_model


def sweep(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Model plugin name (or model: in the sweep file).",
                                autocompletion=complete_model),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file; default: the synthetic market."),
    config: Path = typer.Option(None, "--config", help="Sweep file (YAML; docs/sweeps.md). Options given here win."),
    grid: list[str] = typer.Option(None, "--grid", help="KEY=V1,V2: try every value (lr=1e-4,3e-4, n-envs=8,64, "
                                                        "baseline-mlp.dropout=0,0.2). Repeatable; the product is swept."),
    random: list[str] = typer.Option(None, "--random", help="KEY=DIST:A,B: sample the setting, DIST one of uniform, "
                                                            "loguniform, int, logint, choice "
                                                            "(weight-decay=loguniform:1e-5,1e-2). Repeatable."),
    samples: int = typer.Option(None, "--samples", help="Random draws (each runs every grid combination; default 1)."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per configuration: train.seed 0..N-1 (default 1)."),
    walk_forward: int = typer.Option(None, "--walk-forward", help="Walk-forward folds: each configuration and seed is "
                                                                  "retrained on each (default 0: the data's splits)."),
    fold_mode: str = typer.Option(None, "--fold-mode", help="expanding or rolling train windows (default expanding)."),
    validation_fraction: float = typer.Option(None, "--validation-fraction",
                                              help="Share of each fold's training rows kept to pick best.pt "
                                                   "(default 0.2)."),
    embargo: int = typer.Option(None, "--embargo", help="Rows between a fold's blocks (default: the data's)."),
    asha: bool = typer.Option(None, "--asha/--no-asha", help="Stop weak trials early (ASHA on the validation Sharpe "
                                                              "each epoch reports)."),
    grace_period: int = typer.Option(None, "--grace-period", help="ASHA: epochs every trial runs first (default 1)."),
    reduction_factor: int = typer.Option(None, "--reduction-factor", help="ASHA: keep 1/K of the trials at each "
                                                                          "rung (default 2)."),
    cpus_per_trial: float = typer.Option(None, "--cpus-per-trial", help="CPUs each trial holds (default 1)."),
    gpus_per_trial: float = typer.Option(None, "--gpus-per-trial", help="GPUs each trial holds; a fraction such as "
                                                                        "0.25 packs trials onto one GPU (default 0)."),
    max_concurrent: int = typer.Option(None, "--max-concurrent", help="Trials running at once (default: as many as "
                                                                      "the resources allow)."),
    address: str = typer.Option(None, "--address", help="Join an existing Ray cluster (ray://HEAD:10001, HEAD:6379 or "
                                                        "auto) instead of starting a local one."),
    out: Path = typer.Option(None, "--out", help="Sweep directory (default sweeps/<model>/<timestamp>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the sweep in DIR; finished trials are kept."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: run failed trials again."),
    top: int = typer.Option(None, "--top", help="Best trials drawn in report.html (default 3; 0: no report)."),
    json_out: bool = typer.Option(False, "--json", help="Print sweep.json instead of tables."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs of every trial."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per optimiser step."),
    lr: float = typer.Option(None, "--lr", help="Learning rate of every trial (or sweep it: --grid lr=...)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (with --gpus-per-trial)."),
    preprocess: str = typer.Option(None, "--preprocess", help="Preprocessors, comma-separated.",
                                   autocompletion=complete_list("preprocessor")),
    method: str = typer.Option(None, "--method", help="Training methods, comma-separated.",
                               autocompletion=complete_list("training-method")),
    set_: list[str] = typer.Option(None, "--set", help="A setting every trial shares: key=value. Repeatable."),
) -> None:
    """Sweep MODEL over settings, seeds and walk-forward folds on Ray Tune (a local Ray instance on
    every core, or a cluster with --address). Each trial is an ordinary run directory; the
    leaderboard scores them out of sample with the deflated Sharpe over every trial, and
    report.html draws the best against buy-and-hold. The model's own settings are options too
    (--context-length 64)."""
    import json
    import sys

    from rich.console import Console

    from himari.cli.train import exit_interrupted, model_options, refuse_with_resume
    from himari.errors import ConfigError
    from himari.plugin.manager import get_plugins
    from himari.sweep.runner import SweepInterrupted, run_sweep

    plugins = get_plugins()
    # bound to this stdout: Tune's own prints are withheld by swapping sys.stdout while it runs
    console = Console(file=sys.stderr if json_out else sys.stdout)
    options = {"samples": samples, "seeds": seeds, "walk_forward": walk_forward, "fold_mode": fold_mode,
               "validation_fraction": validation_fraction, "embargo": embargo, "cpus_per_trial": cpus_per_trial,
               "gpus_per_trial": gpus_per_trial, "max_concurrent": max_concurrent, "top": top}
    asha_options = {"grace_period": grace_period, "reduction_factor": reduction_factor}
    if resume is not None:
        refuse_with_resume(ctx, {"resume", "retry_failed", "json_out", "address"}, "sweep")
        settings, directory = None, resume
    else:
        if retry_failed:
            raise ConfigError("--retry-failed runs the failed trials of a sweep again; use it with --resume DIR")
        from himari.sweep.config import build_sweep

        if any(v is not None for v in asha_options.values()) and asha is not True:
            if asha is False:
                raise ConfigError("--grace-period and --reduction-factor are ASHA's; drop --no-asha")
            asha = True
        if asha is not None:
            options["asha"] = {k: v for k, v in asha_options.items() if v is not None} if asha else False
        sets = [f"{k}={v}" for k, v in (("train.epochs", epochs), ("train.batch_size", batch_size), ("train.lr", lr),
                                         ("train.device", device)) if v is not None]
        sets += [f"preprocess={json.dumps(preprocess.split(','))}"] if preprocess else []
        sets += [f"methods={json.dumps(method.split(','))}"] if method else []
        model_name = model
        if model_name is None and config is not None:
            from himari.sweep.config import load_sweep_file

            model_name = load_sweep_file(config).get("model")
        sets += [*model_options(list(ctx.args), model_name, plugins), *(set_ or [])]
        settings = build_sweep(plugins=plugins, model=model, data=data, config_file=config, grid=list(grid or []),
                               random=list(random or []), sets=sets, options=options)
        directory = out
    from himari.training.interrupt import stop_signals_interrupt

    try:
        with stop_signals_interrupt():  # SIGTERM and SIGHUP (a scheduler, timeout) stop it as Ctrl-C does
            result = run_sweep(settings, directory, plugins=plugins, console=console, address=address,
                               retry_failed=retry_failed)
    except SweepInterrupted as e:
        exit_interrupted(str(e), e.exit_code)
    except KeyboardInterrupt as e:  # before the trials started: the new sweep's directory is removed
        from himari.training.interrupt import exit_code

        exit_interrupted("interrupted before the first trial started; nothing was kept", exit_code(e))
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        from himari.sweep.tables import print_sweep

        print_sweep(console, result)
