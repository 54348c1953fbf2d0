"""``himari data``: import, synth, prepare, report, info. Parsing and printing only."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from himari.cli.seeds import SEED_MAX

if TYPE_CHECKING:
    from himari.data.frame import ImportOptions

app = typer.Typer(no_args_is_help=True, help="Import, synthesise and prepare bar data.")


class Format(str, Enum):
    auto = "auto"
    csv = "csv"
    binance = "binance"
    freqtrade = "freqtrade"
    parquet = "parquet"


class GapFill(str, Enum):
    none = "none"
    forward = "forward"


class Duplicates(str, Enum):
    error = "error"
    first = "first"
    last = "last"


class Labeler(str, Enum):
    forward_return = "forward-return"
    triple_barrier = "triple-barrier"
    risk_adjusted = "risk-adjusted"


class FoldMode(str, Enum):
    expanding = "expanding"
    rolling = "rolling"


def _console() -> Any:
    from rich.console import Console

    return Console()


# import's reading options, shared with ``report`` (which checks the files as import would)
_FORMAT = typer.Option(Format.auto, "--format", "-f", help="Input format; auto sniffs name and first line.")
_SYMBOL = typer.Option(None, "--symbol", help="Symbol for all inputs (default: a 'symbol' column or the file name).")
_INTERVAL = typer.Option(None, "--interval", help="Expected interval, e.g. 5m (default: inferred).")
_FILL_GAPS = typer.Option(GapFill.none, "--fill-gaps",
                          help="forward: insert missing bars flat at the previous close, volume 0, marked filled.")
_DUPLICATES = typer.Option(Duplicates.error, "--duplicates",
                           help="Same timestamp, different values: error, or keep first/last.")
_DROP_INVALID = typer.Option(False, "--drop-invalid",
                             help="Drop rows with NaN/inf/non-positive prices, negative volume or high < low.")
_REPAIR_OHLC = typer.Option(False, "--repair-ohlc", help="Clamp high/low to contain open and close.")
_BARS_OUT_HELP = "Output bars file, a name ending in .parquet (its report goes to <name>.report.json)."


def _import_options(interval: str | None, fill_gaps: GapFill, duplicates: Duplicates, drop_invalid: bool,
                    repair_ohlc: bool) -> ImportOptions:
    """The ImportOptions that import's flags describe (``report`` checks with the same)."""
    from himari.data.frame import ImportOptions

    return ImportOptions(interval=interval, fill_gaps=fill_gaps.value, duplicates=duplicates.value,  # type: ignore[arg-type]
                         drop_invalid=drop_invalid, repair_ohlc=repair_ohlc)


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., help="Input files (CSV, Binance klines, freqtrade .feather/.json, Parquet; .gz/.zip ok)."),
    out: str = typer.Option(..., "--out", "-o", metavar="<path>", help=_BARS_OUT_HELP),
    format: Format = _FORMAT,
    symbol: str | None = _SYMBOL,
    interval: str | None = _INTERVAL,
    fill_gaps: GapFill = _FILL_GAPS,
    duplicates: Duplicates = _DUPLICATES,
    drop_invalid: bool = _DROP_INVALID,
    repair_ohlc: bool = _REPAIR_OHLC,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
) -> None:
    """Import bar files into one canonical bars Parquet and print the data report."""
    from himari.data.ingest import import_bars
    from himari.data.report import report_path_for

    options = _import_options(interval, fill_gaps, duplicates, drop_invalid, repair_ohlc)
    loaded = import_bars(paths, out, format=format.value, symbol=symbol, options=options)
    if as_json:
        typer.echo(json.dumps(loaded.report.to_dict(), indent=2))
        return
    console = _console()
    loaded.report.render(console, title=f"Data report: {out}")
    console.print(f"wrote [bold]{out}[/bold] ({len(loaded.frame):,} bars) and {report_path_for(out)}")


@app.command("report")
def report(
    paths: list[Path] = typer.Argument(..., help="Bars files to check (any importable format)."),
    format: Format = _FORMAT,
    symbol: str | None = _SYMBOL,
    interval: str | None = _INTERVAL,
    fill_gaps: GapFill = _FILL_GAPS,
    duplicates: Duplicates = _DUPLICATES,
    drop_invalid: bool = _DROP_INVALID,
    repair_ohlc: bool = _REPAIR_OHLC,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate files and print the data report without writing anything.

    Checks the files as himari data import with the same options would; one bars file without options is shown as stored.
    """
    from himari.data.frame import ImportOptions
    from himari.data.ingest import load_bars, read_bars

    options = _import_options(interval, fill_gaps, duplicates, drop_invalid, repair_ohlc)
    if len(paths) == 1 and symbol is None and options == ImportOptions():
        loaded = read_bars(paths[0], format=format.value)
    else:
        loaded = load_bars(paths, format=format.value, symbol=symbol, options=options)
    if as_json:
        typer.echo(json.dumps(loaded.report.to_dict(), indent=2))
    else:
        loaded.report.render(_console())


@app.command("synth")
def synth(
    out: str = typer.Option(..., "--out", "-o", metavar="<path>", help=_BARS_OUT_HELP),
    bars: int = typer.Option(200_000, "--bars", min=2, help="Number of bars."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed (same seed, same bars)."),
    symbol: str = typer.Option("SYNTH", "--symbol"),
    interval: str = typer.Option("5m", "--interval", help="Spacing of the timestamps (the bars' dynamics are "
                                                          "5-minute bars' whatever it is)."),
    start: str = typer.Option("2023-01-01T00:00:00Z", "--start",
                              help="Open time of the first bar (UTC); every bar must open in 1900-01-01 .. 2199-12-31."),
) -> None:
    """Write a synthetic market (regimes, volatility clustering, fat tails, seasonality)."""
    from himari.data.intervals import parse_interval
    from himari.data.report import build_report, report_path_for
    from himari.data.synthetic import SynthConfig, write_synthetic

    cfg = SynthConfig(bars=bars, seed=seed, symbol=symbol, interval_seconds=parse_interval(interval), start=start)
    frame = write_synthetic(out, cfg)
    console = _console()
    build_report(frame, cfg.interval_seconds).render(console, title=f"Synthetic bars: {out}")
    console.print(f"wrote [bold]{out}[/bold] ({len(frame):,} bars) and {report_path_for(out)}")


@app.command("prepare")
def prepare_(
    bars: Path | None = typer.Argument(None, help="Bars file (himari Parquet or any importable format). Omitted: the synthetic market."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: new, empty, or an earlier prepared one with --force."),
    labels: Labeler = typer.Option(Labeler.forward_return, "--labels", help="Labeler."),
    horizon: int | None = typer.Option(None, "--horizon", help="Label horizon in bars (default 5; triple-barrier 20)."),
    threshold: float | None = typer.Option(None, "--threshold", help="forward-return: log-return threshold (default 0.002)."),
    take_profit: float | None = typer.Option(None, "--take-profit", help="triple-barrier: upper barrier in volatility units (default 1)."),
    stop_loss: float | None = typer.Option(None, "--stop-loss", help="triple-barrier: lower barrier in volatility units (default 1)."),
    z: float | None = typer.Option(None, "--z", help="risk-adjusted: class threshold in volatility units (default 0.5)."),
    vol_window: int | None = typer.Option(None, "--vol-window", help="triple-barrier/risk-adjusted: volatility window (default 48)."),
    train: float | None = typer.Option(None, "--train", help="Train fraction of the rows after warm-up (default 0.7)."),
    validation: float | None = typer.Option(None, "--validation",
                                            help="Validation fraction (default 0.15; test gets the rest)."),
    split_dates: str | None = typer.Option(None, "--split-dates",
                                           help="VALIDATION_START,TEST_START (UTC dates) instead of --train/--validation."),
    embargo: int | None = typer.Option(None, "--embargo", help="Bars dropped before each split boundary (default and minimum: the label lookahead)."),
    folds: int = typer.Option(0, "--folds", min=0, help="Also compute N walk-forward folds."),
    fold_mode: FoldMode = typer.Option(None, "--fold-mode", help="With --folds: expanding (default) or rolling.",
                                       show_default=False),
    symbol: list[str] | None = typer.Option(None, "--symbol", help="Only this symbol (repeatable)."),
    synth_bars: int = typer.Option(None, "--synth-bars", help="Without BARS: size of the synthetic market (default "
                                                              "200,000).", show_default=False),
    seed: int = typer.Option(None, "--seed", min=0, max=SEED_MAX, help="Without BARS: seed of the synthetic market "
                                                                        "(default 0).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it holds an earlier prepared data set (never any other directory)."),
) -> None:
    """Compute the 60 features, labels and splits into OUT (a new or empty directory).

    Other files than himari bars are read with the strict defaults of himari data import; to use its options, import first.
    """
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.prepared import render_summary
    from himari.errors import DataError

    # options that would do nothing are refused, not silently ignored
    unused = [o for o, v in (("--synth-bars", synth_bars), ("--seed", seed)) if bars is not None and v is not None]
    if unused:
        raise DataError(f"{' and '.join(unused)}: only for the synthetic market (without BARS); {bars} is read as it is")
    if fold_mode is not None and folds == 0:
        raise DataError("--fold-mode: only with --folds N (walk-forward folds)")
    given = {"horizon": horizon, "threshold": threshold, "take_profit": take_profit,
             "stop_loss": stop_loss, "z": z, "vol_window": vol_window}
    params = {k: v for k, v in given.items() if v is not None}
    dates = None
    if split_dates is not None:
        dates = tuple(d.strip() for d in split_dates.split(","))
        if len(dates) != 2:
            raise DataError(f"--split-dates: expected VALIDATION_START,TEST_START, got {split_dates!r}")
        given_fractions = [o for o, v in (("--train", train), ("--validation", validation)) if v is not None]
        if given_fractions:
            raise DataError(f"--split-dates and {' and '.join(given_fractions)}: the dates already set the splits; "
                            "give either the dates or the fractions")
    fractions = PrepareConfig()
    config = PrepareConfig(labeler=labels.value, label_params=params,
                           train=fractions.train if train is None else train,
                           validation=fractions.validation if validation is None else validation,
                           split_dates=dates, embargo=embargo, folds=folds,
                           fold_mode=(fold_mode or FoldMode.expanding).value,  # type: ignore[arg-type]
                           symbols=tuple(symbol) if symbol else None)
    source: Any = bars
    if bars is None:
        from himari.data.pipeline import check_prepare_config, check_prepare_output
        from himari.data.synthetic import SynthConfig, load_synthetic

        check_prepare_config(config)  # before synthesising
        check_prepare_output(out, force=force)
        source = load_synthetic(SynthConfig(bars=200_000 if synth_bars is None else synth_bars,
                                            seed=0 if seed is None else seed))
    meta = prepare(source, out, config, force=force)
    console = _console()
    render_summary(meta, console, title=f"Prepared: {out}")
    console.print(f"wrote [bold]{out}[/bold]")


@app.command("info")
def info(
    data: Path = typer.Argument(..., help="A prepared directory."),
    as_json: bool = typer.Option(False, "--json", help="Print metadata.json."),
) -> None:
    """Summarise a prepared directory."""
    from himari.data.prepared import PreparedData, render_summary

    prepared = PreparedData(data)
    if as_json:
        typer.echo(json.dumps(prepared.metadata, indent=2))
    else:
        render_summary(prepared.metadata, _console(), title=str(data))


@app.command("augment", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def augment(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="A prepared directory: the generator is fitted on its train split only."),
    method: str = typer.Option(..., "--method", "-m", help="Generator plugin: timegan, tab-ddpm, block-bootstrap "
                                                             "(himari plugins list --kind generator)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory of the synthetic set (new or empty; "
                                                     "--force replaces an earlier set)."),
    windows: int | None = typer.Option(None, "--windows", help="Synthetic windows to generate."),
    rows: int | None = typer.Option(None, "--rows", help="Synthetic rows to generate (windows x window length)."),
    features: str | None = typer.Option(None, "--features", help="Channels, comma-separated prepared feature names, "
                                                               "or 'all' (needed to train a model on the set). "
                                                               "Default: the generator's (timegan: ret_1, hl_range, "
                                                               "vol_rel_1, rv_48; tab-ddpm: all)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX,
                             help="Seed of the fit and of the sampling (same seed, same set on the CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    set_: list[str] = typer.Option(None, "--set", help="A generator setting KEY=VALUE (iterations=2000); "
                                                       "repeatable. Settings are options too: --condition tail."),
    report: bool = typer.Option(False, "--report", help="Measure the set against the real train windows and a "
                                                        "block bootstrap; print the tables and save report.json."),
    report_steps: int | None = typer.Option(None, "--report-steps", min=1,
                                            help="Training steps of the report's post-hoc networks (default: the "
                                                 "paper's 2,000 for the discriminator, 5,000 for the predictor)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it holds an earlier synthetic set."),
    as_json: bool = typer.Option(False, "--json", help="Print the set's metadata (and report) as JSON."),
) -> None:
    """Fit a generator on the train split and write a synthetic set (himari train --augment SET)."""
    import yaml

    from himari.augment.run import AugmentRequest, make_set
    from himari.cli.train import config_options
    from himari.errors import ConfigError
    from himari.plugin.manager import get_plugins

    plugins = get_plugins()
    spec = plugins.generators().get(method)
    settings: dict[str, Any] = {}
    # options first, then --set, so that --set wins as it does for himari train
    for item in [*config_options(list(ctx.args), method, spec.config), *(f"{method}.{s}" for s in (set_ or []))]:
        key, eq, value = item[len(method) + 1:].partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item[len(method) + 1:]!r}: expected KEY=VALUE")
        try:
            settings[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            settings[key.strip().replace("-", "_")] = value
    console = _console()
    from rich.console import Console

    from himari.progress import ConsoleReporter, reporting

    # with --json, stdout holds the JSON alone: the fit's phases go to stderr
    with reporting(ConsoleReporter(Console(stderr=True) if as_json else console)):
        meta = make_set(AugmentRequest(data=data, method=method, out=out, windows=windows, rows=rows,
                                       features=features, seed=seed, device=device, settings=settings,
                                       report=report, report_steps=report_steps, force=force), plugins=plugins)
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    if "report" in meta:
        from himari.augment.report import render_report

        render_report(meta["report"], console)
    src = meta["source"]
    console.print(f"fitted {method} on {src['train_span']} UTC ({sum(b - a for a, b in src['train_ranges']):,} train "
                  f"rows) in {meta['fit_seconds']:.1f}s; wrote [bold]{meta['path']}[/bold]: {meta['n_windows']:,} "
                  f"windows of {meta['window']} ({len(meta['channels'])} channels)")
