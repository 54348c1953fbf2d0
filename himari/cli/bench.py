"""``himari bench``: throughput of this install's native core (env, backtest, EKF)."""

from __future__ import annotations

from pathlib import Path

import typer


def bench(
    suite: str = typer.Argument("core", help="core (all), env, backtest or ekf."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes (a few seconds)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed repeats; the median is reported."),
    json_path: Path = typer.Option(None, "--json", help="Also write the results (and the machine) as JSON here."),
) -> None:
    """Time the native core on this machine; peers are compared in benchmarks/bench_core.py."""
    from rich.console import Console
    from rich.table import Table

    from himari.errors import ConfigError
    from himari.evaluation.bench import SUITES, run_bench
    from himari.training.rundir import write_json

    if suite not in ("core", *SUITES):
        raise ConfigError(f"suite {suite!r}: choose core, {', '.join(SUITES)}")
    if json_path is not None:  # before the benchmark's minutes of timing, not after them
        from himari.data.outputs import check_file_outputs

        check_file_outputs([json_path], option="--json", example="bench.json")
    suites = SUITES if suite == "core" else (suite,)
    result = run_bench(suites, device=device, quick=quick, repeats=repeats)
    m = result["machine"]
    table = Table(title=f"himari {m['himari']} native core on {m['cpu']} ({device}, median of {repeats})")
    for col in ("suite", "workload", "throughput", "unit"):
        table.add_column(col, justify="right" if col == "throughput" else "left")
    for r in result["results"]:
        table.add_row(r["suite"], r["what"], f"{r['rate']:,.0f}", r["unit"])
    Console().print(table)
    if json_path is not None:
        write_json(json_path, result)
        Console().print(f"written {json_path}")

