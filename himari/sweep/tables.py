"""The console view of a sweep: the best trials, failed trials with their errors, the
configurations over seeds and folds, and the statistics line."""

from __future__ import annotations

from typing import Any

SHOWN = 10
"""Trials and configurations printed (sweep.json has them all)."""


def _table(title: str, columns: list[str]) -> Any:
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("trial", "settings") else "right", no_wrap=c != "settings",
                     min_width=16 if c == "settings" else None)
    return t


def _num(x: Any, fmt: str = "{:+.2f}") -> str:
    return "n/a" if not isinstance(x, (int, float)) else fmt.format(x)


def _pct(x: Any) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{100 * x:+.1f}%"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def print_sweep(console: Any, result: dict[str, Any]) -> None:
    from rich.markup import escape

    rows = [r for r in result["trials"] if "test" in r]
    folds = bool(result["folds"])
    title = (f"{result['model']}: best {min(SHOWN, len(rows))} of {result['n_trials']} trials, test split after costs"
             + (" (each trial's fold)" if folds else ""))
    table = _table(title, ["#", "trial", "settings", "seed", *(["fold", "B&H"] if folds else []), "val Sharpe",
                           "Sharpe", "return", "trades"])
    for r in rows[:SHOWN]:
        t = r["test"]
        stopped = " (stopped)" if r["status"] == "stopped" else ""
        table.add_row(str(r["rank"]), r["trial"] + stopped, escape(params_text(r["params"])), str(r["seed"]),
                      *([r["fold"] or "", _num(r["buy_and_hold"]["sharpe"])] if folds else []),
                      _num(r.get("validation_sharpe")), _num(t["sharpe"]), _pct(t["total_return"]),
                      f"{t['n_trades']:,.0f}")
    console.print(table)
    if rows and not folds:
        hold = rows[0]["buy_and_hold"]
        console.print(f"buy-and-hold on the same bars: Sharpe {_num(hold['sharpe'])}, return {_pct(hold['total_return'])}",
                      soft_wrap=True)
    for r in result["trials"]:
        if r["status"] == "failed":
            console.print(f"[bold red]{r['trial']} failed[/] ({escape(params_text(r['params']))}, seed {r['seed']}"
                          f"{', ' + r['fold'] if r['fold'] else ''}): {escape(r['error'] or 'unknown error')}",
                          soft_wrap=True)
    configs = result["configurations"]
    if len(configs) > 1 and any(c["seeds"] > 1 for c in configs) or folds:
        what = "chained over the folds, " if folds else ""
        ct = _table(f"configurations: mean test Sharpe over seeds ({what}after costs)",
                    ["#", "settings", "scored", "Sharpe", "sd", "return", "val Sharpe"])
        for i, c in enumerate(configs[:SHOWN]):
            ct.add_row(str(i + 1), escape(params_text(c["params"])), f"{c['scored']}/{c['seeds']}",
                       _num(c["test_sharpe"]), _num(c["test_sharpe_std"], "{:.2f}"), _pct(c["test_total_return"]),
                       _num(c["validation_sharpe"]))
        console.print(ct)
    s = result["statistics"]
    counts = result["counts"]
    console.print(f"{result['n_trials']} trials: {counts['finished']} finished, {counts['stopped']} stopped early, "
                  f"{counts['failed']} failed", soft_wrap=True)
    if s is not None:
        p = s["p_value"]
        console.print(f"statistics of the best configuration ({escape(params_text(s['chosen']))}; "
                      f"{s['n_trials']} strategies tried): Sharpe {_num(s['sharpe'])}, PSR {_num(s['psr'], '{:.3f}')}, "
                      f"deflated Sharpe of the best strategy {_num(s['dsr'], '{:.3f}')}, p vs buy-and-hold "
                      f"{_num(p['vs_buy_and_hold'], '{:.4f}')}, p vs never-trade {_num(p['vs_never_trade'], '{:.4f}')}"
                      + (f", PBO {s['pbo']:.2f}" if s.get("pbo") is not None else ""), soft_wrap=True)
    report = f", {result['report']}" if result.get("report") else ""
    console.print(f"sweep saved in {result['directory']} (sweep.json, runs/{report})", soft_wrap=True)
