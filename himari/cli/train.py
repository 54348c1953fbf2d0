"""``himari train MODEL``: parse options into a run config and hand it to the Trainer.

``--devices N`` re-runs the same command without ``--devices`` under
``torchrun --standalone --nproc-per-node N`` (``himari.training.distributed.launch``); each of
those processes then trains data-parallel (docs/distributed.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn
import typer

from himari.cli.completion import complete_list, complete_model


def model_options(args: list[str], model: str | None, plugins: object) -> list[str]:
    """``--some-field VALUE`` (or ``--some-field=VALUE``) options the command does not define, as
    ``--set MODEL.some_field=VALUE`` for fields of the model's config (``himari plugins show
    MODEL``): ``himari train cgdt --context-length 64``."""
    from himari.errors import ConfigError

    if not args:
        return []
    if not model:
        raise ConfigError(f"{args[0]}: no such option (model settings need a MODEL)")
    return config_options(args, model, plugins.models().get(model).config)  # type: ignore[attr-defined]


def config_options(args: list[str], owner: str, config: type) -> list[str]:
    """``--some-field VALUE`` options as ``OWNER.some_field=VALUE`` for fields of the plugin
    config class ``config``; anything else is a ``ConfigError`` naming the option."""
    from himari.errors import ConfigError
    from himari.plugin.config import config_fields, unknown_key_error

    fields = [f.name for f in config_fields(config)]
    out, i = [], 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if not name.startswith("--") or len(name) < 3:
            raise ConfigError(f"{args[i]}: unexpected argument")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"{name} needs a value")
            i += 1
            value = args[i]
        key = name[2:].replace("-", "_")
        if key not in fields:
            raise unknown_key_error(f"{name} ({owner}.{key})", fields, f"the settings of {owner}")
        out.append(f"{owner}.{key}={value}")
        i += 1
    return out


def refuse_with_resume(ctx: typer.Context, keep: set[str], what: str) -> None:
    """``--resume`` continues a run, evaluation or sweep with the settings it saved: every option
    given on the command line other than those named in ``keep`` (parameter names) would change
    them, so each is refused by name; defaults do not count, whatever their value. An option the
    command does not define (model settings need a MODEL, which ``--resume`` takes from the saved
    settings) is named as such, and checked first: the parser takes its value for MODEL."""
    from himari.errors import ConfigError

    # the parser takes an option it does not know (--bogus 3.5) for MODEL, and its value for an
    # extra argument: name that option, not MODEL
    arguments = [str(ctx.params.get(p.name or "")) for p in ctx.command.params
                 if p.param_type_name == "argument" and ctx.params.get(p.name or "") is not None]
    extra = [a for a in [*arguments, *ctx.args] if a.startswith("-")] or list(ctx.args)
    if extra:
        if not extra[0].startswith("-"):
            raise ConfigError(f"{extra[0]}: unexpected argument")
        raise ConfigError(f"{extra[0].partition('=')[0]}: no such option with --resume, which continues the {what} "
                          f"with its saved settings (the model's settings included)")
    given = []
    for param in ctx.command.params:
        if param.name is None or param.name in keep:
            continue
        source = ctx.get_parameter_source(param.name)  # an enum of the click Typer runs on (it may vendor one)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        if param.param_type_name == "argument":
            given.append(param.name.upper())
        else:  # --no-asha as given, not --asha
            off = getattr(param, "secondary_opts", None) and ctx.params.get(param.name) is False
            given.append(param.secondary_opts[0] if off else param.opts[0])
    if given:
        raise ConfigError(f"--resume continues the {what} with its saved settings; drop {', '.join(given)}")


def train(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Model plugin name (himari plugins list --kind model).",
                                autocompletion=complete_model),
    data: str = typer.Option(None, "--data", help="Prepared directory or bars file; default: the synthetic market."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per optimiser step."),
    lr: float = typer.Option(None, "--lr", help="Learning rate."),
    seed: int = typer.Option(None, "--seed", help="Seed of every random stream of the run."),
    preprocess: str = typer.Option(None, "--preprocess", help="Preprocessors in order, comma-separated.",
                                   autocompletion=complete_list("preprocessor")),
    method: str = typer.Option(None, "--method", help="Training methods, comma-separated.",
                               autocompletion=complete_list("training-method")),
    augment: Path = typer.Option(None, "--augment", help="A synthetic set (himari data augment) whose rows are added "
                                                        "to the train split; validation and test stay real."),
    tracker: str = typer.Option(None, "--tracker", help="Trackers, comma-separated (jsonl is always on).",
                                autocompletion=complete_list("tracker")),
    config: Path = typer.Option(None, "--config", help="Run config YAML (docs/training.md)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a setting: key=value (train.lr=0.01, "
                                                        "baseline-mlp.loss=focal). Repeatable."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Run directory (default runs/<model>/<timestamp>)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in RUN_DIR from its last checkpoint."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Write last.pt every N steps."),
    env_episodes: int = typer.Option(None, "--env-episodes", help="Online RL: episodes of experience to train on."),
    n_envs: int = typer.Option(None, "--n-envs", help="Online RL: envs stepping together."),
    rollout_steps: int = typer.Option(None, "--rollout-steps", help="Online RL: steps per env per rollout."),
    drawdown_penalty: float = typer.Option(None, "--drawdown-penalty", help="Online RL: drawdown increase penalty "
                                                                            "(turns on the reward-shaping method; "
                                                                            "plugins.reward-shaping.drawdown_penalty)."),
    turnover_penalty: float = typer.Option(None, "--turnover-penalty", help="Online RL: turnover penalty (turns on "
                                                                            "reward-shaping; "
                                                                            "plugins.reward-shaping.turnover_penalty)."),
    dsr_weight: float = typer.Option(None, "--dsr-weight", help="Online RL: differential Sharpe ratio weight (turns "
                                                                "on reward-shaping; "
                                                                "plugins.reward-shaping.dsr_weight)."),
    fee: float = typer.Option(None, "--fee", help="Fraction of traded notional paid on every fill (env.fee; "
                                                  "default 0.001)."),
    slippage: float = typer.Option(None, "--slippage", help="Fraction each fill price moves against the trader "
                                                            "(env.slippage; default 0.0005)."),
    decision_interval: int = typer.Option(None, "--decision-interval", help="Execution rule: decide only every K "
                                                                           "bars, HOLD in between "
                                                                           "(execution.decision_interval; default 1)."),
    min_hold: int = typer.Option(None, "--min-hold", help="Execution rule: keep a position at least M bars after "
                                                          "a change; an earlier change becomes HOLD "
                                                          "(execution.min_hold; default 0: off)."),
    confidence: float = typer.Option(None, "--confidence", help="Execution rule: act only when the top action's "
                                                                "probability exceeds C, else HOLD "
                                                                "(execution.confidence, in [0, 1); default 0: off)."),
    select_execution: bool = typer.Option(False, "--select-execution",
                                          help="After training, choose the decision interval, minimum hold and "
                                               "confidence from grids on the validation split (best Sharpe after "
                                               "costs); the test split and himari backtest use the choice "
                                               "(execution.select; grids: execution.grid_*)."),
    devices: int = typer.Option(None, "--devices", min=1,
                                help="Train data-parallel on N processes of this machine through torchrun: one per "
                                     "GPU (NCCL), or N gloo processes with --device cpu. --batch-size and --n-envs "
                                     "stay global (split over the processes). Several machines: run torchrun "
                                     "yourself (docs/distributed.md)."),
) -> None:
    """Train a model plugin; evaluate it each epoch on the validation split through the backtester.
    The model's settings are options too: --context-length 64 is --set MODEL.context_length=64."""
    from himari.errors import ConfigError
    from himari.plugin.manager import get_plugins
    from himari.training import distributed
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    if resume is not None:
        refuse_with_resume(ctx, {"resume", "devices"}, "run")
        if devices is not None and devices > 1:
            from himari.training.config import load_run_config

            check_devices(load_run_config(resume, plugins).train.device, devices)
            raise typer.Exit(distributed.launch(devices, _relaunch_args(ctx)))
        _fit(Trainer.resume(resume, plugins=plugins))
        return
    overrides = {"model": model, "data": data, "train.device": device, "train.epochs": epochs,
                 "train.batch_size": batch_size, "train.lr": lr, "train.seed": seed,
                 "train.checkpoint_every": checkpoint_every,
                 "preprocess": preprocess, "methods": method, "trackers": tracker,
                 "augment": str(augment) if augment is not None else None,
                 "env.fee": fee, "env.slippage": slippage,
                 "execution.decision_interval": decision_interval, "execution.min_hold": min_hold,
                 "execution.confidence": confidence, "execution.select": True if select_execution else None}
    online = {"env_episodes": env_episodes, "n_envs": n_envs, "rollout_steps": rollout_steps}
    if any(v is not None for v in online.values()):
        if not model:
            raise ConfigError("--env-episodes, --n-envs and --rollout-steps need a MODEL")
        spec = plugins.models().get(model)
        if spec.paradigm != "online-rl":
            raise ConfigError(f"--env-episodes, --n-envs and --rollout-steps are for online-RL models; "
                              f"{model} is {spec.paradigm}")
        overrides.update({f"plugins.{model}.{k}": v for k, v in online.items()})
    shaping = {k: v for k, v in (("drawdown_penalty", drawdown_penalty), ("turnover_penalty", turnover_penalty),
                                 ("dsr_weight", dsr_weight)) if v is not None}
    overrides.update({f"plugins.reward-shaping.{k}": v for k, v in shaping.items()})
    sets = [*model_options(list(ctx.args), model, plugins), *(set_ or [])]
    run = merge_run_config(plugins=plugins, config_file=str(config) if config else None,
                           overrides=overrides, sets=sets, add_methods=["reward-shaping"] if shaping else None)
    if devices is not None and devices > 1:  # checked here, so a bad run is refused before torchrun starts
        from himari.training.config import require_run_extras
        from himari.training.rundir import check_run_dir_target

        require_run_extras(run, plugins)
        check_devices(run.train.device, devices)
        if run_dir is not None:
            check_run_dir_target(run_dir, resume=False)
        raise typer.Exit(distributed.launch(devices, _relaunch_args(ctx)))
    _fit(Trainer(run, plugins=plugins, run_dir=run_dir))


def exit_interrupted(message: str, code: int) -> NoReturn:
    """End a command that Ctrl-C or a stop signal interrupted: ``message`` (what was kept, how to
    continue) on stderr as written, then exit ``code`` (128 + the signal)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(message)
    raise typer.Exit(code)


def _fit(trainer: object) -> None:
    """Train; on Ctrl-C, SIGTERM or SIGHUP (a scheduler's or ``timeout``'s stop), say how to
    continue (or that nothing was kept) and exit 128 + the signal (130 for Ctrl-C)."""
    from himari.training import distributed, rundir
    from himari.training.interrupt import exit_code, stop_signals_interrupt

    try:
        with stop_signals_interrupt():
            trainer.fit()  # type: ignore[attr-defined]
    except KeyboardInterrupt as e:
        run_dir = trainer.run_dir  # type: ignore[attr-defined]
        if (run_dir / rundir.LAST).exists():
            exit_interrupted(f"interrupted; the last checkpoint is kept. Continue with: himari train --resume {run_dir}",
                             exit_code(e))
        exit_interrupted("interrupted before the first checkpoint; nothing was kept", exit_code(e))
    trainer.release_data_parallel()  # type: ignore[attr-defined]  # before the group closes
    distributed.shutdown()  # after success only (see its docstring)


def check_devices(device: str, devices: int) -> None:
    """``--devices N`` on GPUs needs N CUDA devices (a usage error, exit 2, before torchrun runs)."""
    from himari.errors import ConfigError, CudaUnavailableError
    from himari.plugin.extras import require_modules

    require_modules(["torch"], "training")
    import torch

    if device == "cpu":
        return
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device}: with --devices each process trains on its own GPU; use --device "
                          f"cuda (and CUDA_VISIBLE_DEVICES to pick GPUs)")
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (device == "cuda" or (device == "auto" and have > 0)) and have < devices:
        raise CudaUnavailableError(f"--devices {devices} --device cuda: torch sees {have} CUDA device(s); "
                                   f"use --device cpu for {devices} CPU processes (gloo)")


def _relaunch_args(ctx: typer.Context) -> list[str]:
    """This ``himari train`` command line without ``--devices``, rebuilt from the parsed values
    (so every spelling of an option on the original command line survives)."""
    args: list[str] = ["--verbose"] if ctx.parent is not None and ctx.parent.params.get("verbose") else []
    args.append(ctx.info_name or "train")
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name == "devices" or value is None or value == [] or value == ():
            continue
        if param.param_type_name == "argument":
            args.append(str(value))
            continue
        if getattr(param, "is_flag", False):  # a flag is given bare, or not at all
            if value:
                args.append(param.opts[0])
            continue
        for v in (value if getattr(param, "multiple", False) else [value]):
            args += [param.opts[0], str(v)]
    return [*args, *ctx.args]  # the model's own settings (--context-length 64) pass through as given
