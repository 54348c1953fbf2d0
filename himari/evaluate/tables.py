"""The console view of an evaluation: folds, the chained out-of-sample result beside the
baselines, CPCV, the statistics and the gates (each passed or failed with its number)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _table(title: str, columns: list[str]) -> Any:
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    return t


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _num(x: float | None, fmt: str = "{:+.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def print_evaluation(console: Any, ev: dict[str, Any], directory: Path) -> None:
    folds = _table(f"{ev['model']}: walk-forward folds, out of sample after costs (mean over seeds)",
                   ["fold", "test from", "Sharpe", "return", "trades", "B&H", "MA-cross", "random"])
    for f in ev["folds"]:
        runs = [r["metrics"] for r in f["runs"].values()]
        b = f["baselines"]
        folds.add_row(f["name"], f["test_span"]["start"][:10], _num(np.mean([m["sharpe"] for m in runs])),
                      _pct(float(np.mean([m["total_return"] for m in runs]))),
                      f"{np.mean([m['n_trades'] for m in runs]):,.0f}", _num(b["buy-and-hold"]["sharpe"]),
                      _num(b["ma-cross"]["sharpe"]), _num(b["random"]["sharpe"]))
    console.print(folds)
    wf = ev["walk_forward"]
    chained = _table(f"chained out-of-sample blocks ({wf['bars']:,} bars, {wf['test_span']['start'][:10]} to "
                     f"{wf['test_span']['end'][:10]})", ["strategy", "Sharpe", "return", "max DD", "trades", "in mkt",
                                                         "S/H/B %"])
    for seed, m in wf["seeds"].items():
        chained.add_row(f"seed {seed}", _num(m["sharpe"]), _pct(m["total_return"]), f"{100 * m['max_drawdown']:.1f}%",
                        f"{m['n_trades']:,.0f}", f"{100 * m['exposure']:.0f}%",
                        "/".join(f"{100 * v:.0f}" for v in m["actions"].values()))
    mean, std = wf["mean"], wf["std"]
    chained.add_row("mean ± sd", f"{mean['sharpe']:+.2f} ± {std['sharpe']:.2f}", _pct(mean["total_return"]),
                    f"{100 * mean['max_drawdown']:.1f}%", f"{mean['n_trades']:,.0f}", f"{100 * mean['exposure']:.0f}%", "")
    for name, m in wf["baselines"].items():
        chained.add_row(name, _num(m["sharpe"]), _pct(m["total_return"]), f"{100 * m['max_drawdown']:.1f}%",
                        f"{m['n_trades']:,.0f}", f"{100 * m['exposure']:.0f}%", "")
    console.print(chained)
    free = wf.get("zero_cost")
    if free:  # evaluations written before it have no such section
        zero = _table("the same decisions without fee and slippage (direction skill, not cost control)",
                      ["strategy", "Sharpe", "return"])
        zero.add_row("model mean ± sd", f"{free['mean']['sharpe']:+.2f} ± {free['std']['sharpe']:.2f}",
                     _pct(free["mean"]["total_return"]))
        for name, m in free["baselines"].items():
            zero.add_row(name, _num(m["sharpe"]), _pct(m["total_return"]))
        console.print(zero)
    if ev.get("held_out"):
        h = ev["held_out"]
        console.print(f"held out: {h['name']}, its test block from {h['test_span']['start'][:10]} to "
                      f"{h['test_span']['end'][:10]}, neither trained on nor scored", soft_wrap=not console.is_terminal)
    if ev.get("cpcv"):
        c = ev["cpcv"]
        q = c["sharpe"]["quantiles"]
        console.print(f"CPCV: {c['splits']} splits, {len(c['paths'])} paths (all seeds); out-of-sample Sharpe mean "
                      f"{c['sharpe']['mean']:+.2f}, sd {c['sharpe']['std']:.2f}, 5% {q['0.05']:+.2f}, median "
                      f"{q['0.5']:+.2f}, 95% {q['0.95']:+.2f}")
    s = ev["statistics"]
    p = s["p_value"]
    prior = f", {s['prior_trials']} of them from earlier evaluations" if s.get("prior_trials") else ""
    console.print(f"statistics ({s['n_trials']} trials{prior}): PSR {_num(s['psr'], '{:.3f}')}, deflated Sharpe "
                  f"{_num(s['dsr'], '{:.3f}')}, p vs buy-and-hold {_num(p['vs_buy_and_hold'], '{:.4f}')}, p vs "
                  f"never-trade {_num(p['vs_never_trade'], '{:.4f}')} ({s['method']}, block {s['block_length']} bars, "
                  f"{s['resamples']:,} resamples)" + (f", PBO {s['pbo']:.2f}" if s.get("pbo") is not None else ""),
                  soft_wrap=not console.is_terminal)
    gates = _table("gates", ["gate", "value", "threshold", "verdict"])
    for g in ev["gates"]:
        value = g["value"]
        shown = "n/a" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))
        threshold = "" if g.get("op") is None else f"{g['op']} {g['threshold']:g}"
        gates.add_row(g["name"], shown, threshold, "[green]passed[/]" if g["passed"] else "[bold red]FAILED[/]")
    console.print(gates)
    console.print(f"evaluation saved in {directory} (evaluation.json, series/, runs/"
                  f"{', report.html' if (directory / 'report.html').exists() else ''})", soft_wrap=True)
