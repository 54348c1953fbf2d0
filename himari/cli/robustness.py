"""``himari robustness RUN``: a trained policy's action flips and after-cost scores under FGSM,
PGD and random perturbations of its input features. The work is ``himari.training.robustness`` and ``himari.evaluation.robustness``."""

from __future__ import annotations

import typer

from himari.cli.seeds import SEED_MAX


def robustness(
    run: str = typer.Argument(..., help="Run directory of a trained baseline-mlp or ppo-lstm run."),
    split: str = typer.Option("validation", "--split", help="validation or test."),
    eps: str = typer.Option("0.01,0.05,0.1", "--eps", help="Comma-separated L-infinity radii, in the units of "
                                                         "the features the policy reads (after the run's "
                                                         "preprocessing and, for ppo-lstm, its observation "
                                                         "filter such as vec-normalize)."),
    pgd_steps: int = typer.Option(10, "--pgd-steps", help="PGD steps (step 2.5 * eps / steps, random start)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX,
                             help="Seed of PGD's random starts and of the random control."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Flip rate, Sharpe, return and trades under FGSM, PGD and random noise of the same norm.

    Each decision row's features are moved inside the epsilon box: FGSM and PGD aim at the
    model's own decision, the random control moves every feature by +eps or -eps at random.
    A stateful policy (ppo-lstm) is attacked bar by bar along its own path (its account
    columns never move; its state advances on what it saw).
    Scores are after the run's fees and slippage, under its execution rules.
    """
    import json

    from rich import box
    from rich.console import Console
    from rich.table import Table

    from himari.evaluation.report import actions_cell, print_line, print_table
    from himari.evaluation.robustness import parse_epsilons
    from himari.training.robustness import robustness as measure

    result = measure(run, split=split, epsilons=parse_epsilons(eps), pgd_steps=pgd_steps, seed=seed)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    console = Console()
    c = result["costs"]
    table = Table(title=f"{result['model']} {run}: {split} split, fee {c['fee']:g} + slippage {c['slippage']:g} "
                        f"per fill, PGD {result['pgd_steps']} steps", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
    for name, justify in (("attack", "left"), ("eps", "right"), ("flip rate", "right"), ("Sharpe", "right"),
                          ("return", "right"), ("trades", "right"), ("S/H/B %", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]

    def row(attack: str, epsilon: str, flips: str, m: dict) -> None:
        table.add_row(attack, epsilon, flips, f"{m['sharpe']:+.2f}", f"{m['total_return']:+.2%}",
                      f"{m['n_trades']:,.0f}", actions_cell(m))

    row("clean", "0", "-", result["clean"])
    for r in result["results"]:
        row(r["attack"], f"{r['epsilon']:g}", f"{r['flip_rate']:.1%}", r)
    print_table(console, table)
    print_line(console, f"{result['bars']:,} bars; flip rate: share of decisions whose action changes; random: "
                        "every feature moved by +eps or -eps at random (the control)")
