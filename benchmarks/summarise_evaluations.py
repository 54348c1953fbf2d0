"""One table from several `himari evaluate` directories (by hand, not a test): for each, the
walk-forward out-of-sample Sharpe (mean ± sd over seeds), return, trades, action mix, deflated
Sharpe and p-value against buy-and-hold, beside buy-and-hold and the moving-average rule.

    python benchmarks/summarise_evaluations.py LABEL=EVAL_DIR ... --out summary.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def summarise(path: Path) -> dict:
    d = json.loads((path / "evaluation.json").read_text())
    wf = d["walk_forward"]
    seeds = list(wf["seeds"].values())
    mix = {a: statistics.mean(s["actions"][a] for s in seeds) for a in ("SELL", "HOLD", "BUY")}
    base = wf["baselines"]
    return {
        "sharpe_mean": wf["mean"]["sharpe"], "sharpe_sd": wf["std"]["sharpe"],
        "return_mean": wf["mean"]["total_return"], "trades_mean": wf["mean"]["n_trades"],
        "exposure_mean": wf["mean"]["exposure"], "actions": mix,
        "collapsed": [s["collapsed"] for s in seeds], "static": [s["static_position"] for s in seeds],
        "dsr": d["statistics"]["dsr"], "p_vs_buy_and_hold": d["statistics"]["p_value"]["vs_buy_and_hold"],
        "buy_and_hold_sharpe": base["buy-and-hold"]["sharpe"], "ma_cross_sharpe": base["ma-cross"]["sharpe"],
        "test_span": wf["test_span"], "seeds": len(seeds), "folds": len(d["folds"]),
        "max_drawdown_mean": wf["mean"]["max_drawdown"],
        "model_decisions": ({a: statistics.mean(s["model_decisions"][a] for s in seeds) for a in ("SELL", "HOLD", "BUY")}
                            if all("model_decisions" in s for s in seeds) else None),
        "runs_collapsed": sum(bool(r["metrics"].get("collapsed")) for f in d["folds"] for r in f["runs"].values()),
        "runs_static": sum(r["metrics"].get("static_position") is not None for f in d["folds"]
                           for r in f["runs"].values()),
        "runs": sum(len(f["runs"]) for f in d["folds"]),
        "n_trials": d["statistics"]["n_trials"], "psr": d["statistics"]["psr"],
        "p_vs_never_trade": d["statistics"]["p_value"]["vs_never_trade"],
        "baselines": {k: {"sharpe": v["sharpe"], "total_return": v["total_return"], "n_trades": v["n_trades"]}
                      for k, v in base.items()},
        "zero_cost": None if "zero_cost" not in wf else {
            "sharpe_mean": wf["zero_cost"]["mean"]["sharpe"], "sharpe_sd": wf["zero_cost"]["std"]["sharpe"],
            "return_mean": wf["zero_cost"]["mean"]["total_return"],
            "baselines": {k: v["sharpe"] for k, v in wf["zero_cost"]["baselines"].items()}},
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="LABEL=EVALUATION_DIR")
    p.add_argument("--out", help="JSON output")
    args = p.parse_args()
    rows = {}
    for item in args.runs:
        label, _, where = item.partition("=")
        rows[label] = summarise(Path(where))
    print("| variant | OOS Sharpe | return | trades | S/H/B % | DSR | p vs B&H |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, r in rows.items():
        a = r["actions"]
        print(f"| {label} | {r['sharpe_mean']:+.2f} ± {r['sharpe_sd']:.2f} | {100 * r['return_mean']:+.1f}% | "
              f"{r['trades_mean']:,.0f} | {100 * a['SELL']:.0f}/{100 * a['HOLD']:.0f}/{100 * a['BUY']:.0f} | "
              f"{r['dsr']:.3f} | {r['p_vs_buy_and_hold']:.3f} |")
    first = next(iter(rows.values()))
    print(f"buy-and-hold Sharpe {first['buy_and_hold_sharpe']:+.2f}, moving-average rule {first['ma_cross_sharpe']:+.2f}; "
          f"{first['folds']} folds x {first['seeds']} seeds, test span {first['test_span']}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
