"""Every configuration a recipe search tried, from its `himari evaluate --hold-out-last` directories
(by hand, not a test): one row per (evaluation, configuration) with the settings that differ, the
walk-forward out-of-sample Sharpe (mean and sd over seeds), return, trades, exposure, and how many
of its (fold, seed) runs collapsed onto one action or sat static. The trial count is what the
final evaluation's deflated Sharpe must count (`himari evaluate --prior-trials DIR ...`); the JSON
written with `--out` is also a trials file (`"format": "himari-trials"`, one group of trials per
row) that `--prior-trials` takes where the search's directories are gone.

    python benchmarks/summarise_search.py LABEL=EVAL_DIR ... --out search.json [--markdown] [--rank]
    python benchmarks/summarise_search.py SUMMARY.json ... --model ppo-lstm --out search-ppo-lstm.json

A summary written earlier (a JSON with "rows") can stand in for its directories, with `--model`
keeping one model's rows: that is how a model's trials file is made once the directories are
gone (summaries written before rows recorded their bars per year take `--bars-per-year`).

`--rank` pairs each configuration's BTC and ETH rows (labels ending in `-btc` and `-eth`, the same
settings) and ranks them by the rule the model cards use: the highest mean out-of-sample Sharpe
over both markets among a model's configurations with no collapsed and no static run; where none
qualifies, the highest mean Sharpe.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def _run_key(config: str, seed: str, n_configs: int) -> str:
    return seed if n_configs == 1 else f"{config}/{seed}"


def rows_of(label: str, path: Path) -> list[dict[str, Any]]:
    d = json.loads((path / "evaluation.json").read_text())
    cfg = d["config"]
    configurations: dict[str, list[str]] = cfg["configurations"]
    wf = d["walk_forward"]
    seeds = [str(s) for s in cfg["seeds"]]
    out = []
    for name, sets in configurations.items():
        sharpes = [wf["trials"][f"{name}/{s}"] for s in seeds] if "trials" in wf else []
        runs = [f["runs"][_run_key(name, s, len(configurations))]["metrics"] for f in d["folds"] for s in seeds]
        mean = wf["configurations"][name] if "configurations" in wf else wf["mean"]
        out.append({
            "search": label, "directory": str(path), "configuration": name, "sets": sets,
            "common_sets": cfg["sets"], "model": d["model"], "data": d["data"],
            "held_out": d.get("held_out"), "test_span": wf["test_span"], "folds": len(d["folds"]), "seeds": len(seeds),
            "sharpe_mean": mean["sharpe"], "sharpe_sd": statistics.stdev(sharpes) if len(sharpes) > 1 else None,
            "sharpes": sharpes, "bars_per_year": wf["bars_per_year"],
            "return_mean": mean["total_return"], "trades_mean": mean["n_trades"], "exposure_mean": mean["exposure"],
            "collapsed_runs": sum(bool(m.get("collapsed")) for m in runs),
            "static_runs": sum(m.get("static_position") is not None for m in runs), "runs": len(runs),
            "buy_and_hold_sharpe": wf["baselines"]["buy-and-hold"]["sharpe"],
            "ma_cross_sharpe": wf["baselines"]["ma-cross"]["sharpe"],
            "chosen": name == cfg.get("chosen"),
        })
    return out


def summary_rows(path: Path, bars_per_year: float | None) -> list[dict[str, Any]]:
    """The rows of a summary this script wrote earlier; ``bars_per_year`` fills the rows that
    do not record it (summaries written before they did)."""
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        if "bars_per_year" not in r:
            if bars_per_year is None:
                raise SystemExit(f"{path}: its rows do not record their bars per year: give --bars-per-year")
            r["bars_per_year"] = bars_per_year
    return rows


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BTC and ETH rows of the same search and settings paired, best first by the rule above."""
    pairs: dict[tuple[str, str, tuple[str, ...]], dict[str, dict[str, Any]]] = {}
    for r in rows:
        for market in ("btc", "eth"):
            if r["search"].endswith(f"-{market}"):
                key = (r["model"], r["search"][: -len(market) - 1], tuple(r["sets"]))
                pairs.setdefault(key, {})[market] = r
    out = []
    for (model, search, sets), by in pairs.items():
        if set(by) != {"btc", "eth"}:
            continue
        clean = all(by[m]["collapsed_runs"] == 0 and by[m]["static_runs"] == 0 for m in by)
        out.append({"model": model, "search": search, "sets": list(sets), "qualifies": clean,
                    "sharpe_mean": (by["btc"]["sharpe_mean"] + by["eth"]["sharpe_mean"]) / 2,
                    "btc": by["btc"]["sharpe_mean"], "eth": by["eth"]["sharpe_mean"],
                    "trades": (by["btc"]["trades_mean"], by["eth"]["trades_mean"])})
    clean_models = {r["model"] for r in out if r["qualifies"]}  # the rule applies per model
    return sorted(out, key=lambda r: (r["model"], not (r["qualifies"] or r["model"] not in clean_models),
                                      -r["sharpe_mean"]))


def trials_file(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The keys that make the summary a trials file for `himari evaluate --prior-trials`: each
    row's seeds as one group (count, mean and sample sd of their annualised Sharpe ratios)."""
    per_year = {r["bars_per_year"] for r in rows}
    if len(per_year) != 1:
        raise SystemExit(f"the searches annualise at different bars per year ({sorted(per_year)}): summarise them apart")
    return {"format": "himari-trials", "bars_per_year": per_year.pop(),
            "groups": [{"label": f"{r['search']}/{r['configuration']}", "trials": r["seeds"],
                        "sharpe_mean": r["sharpe_mean"], "sharpe_sd": r["sharpe_sd"]} for r in rows]}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| search | settings | OOS Sharpe | return | trades | in market | collapsed / static runs | B&H |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        sd = "" if r["sharpe_sd"] is None else f" ± {r['sharpe_sd']:.2f}"
        sets = ", ".join(s.replace('"', "") for s in r["sets"]) or "(as given)"
        lines.append(f"| {r['search']} | {sets} | {r['sharpe_mean']:+.2f}{sd} | {100 * r['return_mean']:+.1f}% | "
                     f"{r['trades_mean']:,.0f} | {100 * r['exposure_mean']:.0f}% | "
                     f"{r['collapsed_runs']} / {r['static_runs']} of {r['runs']} | {r['buy_and_hold_sharpe']:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("searches", nargs="+", help="LABEL=EVALUATION_DIR, or an earlier summary's JSON")
    p.add_argument("--model", help="keep only this model's rows")
    p.add_argument("--bars-per-year", type=float, help="for summary rows that do not record theirs")
    p.add_argument("--out", help="JSON output")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--rank", action="store_true", help="rank the configurations over BTC and ETH")
    args = p.parse_args()
    rows = []
    for item in args.searches:
        label, _, where = item.partition("=")
        rows += rows_of(label, Path(where)) if where else summary_rows(Path(item), args.bars_per_year)
    if args.model:
        rows = [r for r in rows if r["model"] == args.model]
    if not rows:
        raise SystemExit("no configurations to summarise")
    trials = sum(r["seeds"] for r in rows)
    doc = {**trials_file(rows), "trials": trials, "configurations": len(rows), "rows": rows, "ranked": ranked(rows)}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    if args.rank:
        for r in doc["ranked"]:
            print(f"{r['model']:13s} {r['sharpe_mean']:+.2f} {'qualifies' if r['qualifies'] else 'collapsed or static':20s} "
                  f"BTC {r['btc']:+.2f} ETH {r['eth']:+.2f} trades {r['trades'][0]:,.0f}/{r['trades'][1]:,.0f} "
                  f"{r['search']}: {', '.join(r['sets']) or '(as given)'}")
    else:
        print(markdown(rows) if args.markdown else json.dumps(doc, indent=2))
    print(f"\n{len(rows)} configurations, {trials} trials (configuration x seed)")


if __name__ == "__main__":
    main()
