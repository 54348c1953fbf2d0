"""The measured effect of adapting at evaluation (``himari backtest RUN --adapt-bars N``): each run
scored with and without adaptation on the same bars (each split's blocks after their first N bars),
after costs; by hand, not a test.

    python benchmarks/bench_adapt.py RUN_DIR ... --adapt-bars 288,2016 --out adapt.json

Prints per N and split the mean and spread over the runs of Sharpe, return and trades with and
without adaptation, and writes every run's numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--adapt-bars", default="288,2016", help="comma-separated N")
    ap.add_argument("--splits", default="validation,test")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from himari.training.leaderboard import backtest

    rows = []
    for n in [int(x) for x in args.adapt_bars.split(",")]:
        for split in args.splits.split(","):
            for run in args.runs:
                entries, context = backtest([run, "buy-and-hold"], split=split, adapt_bars=n)
                by = {e.name: e.metrics for e in entries}
                pick = ("sharpe", "total_return", "n_trades")
                rows.append({"run": run, "adapt_bars": n, "split": split, "bars": context["bars"],
                             "without": {k: by[str(Path(run))][k] for k in pick},
                             "adapted": {k: by[f"{Path(run)} adapted"][k] for k in pick},
                             "buy_and_hold_sharpe": by["buy-and-hold"]["sharpe"]})
    print(f"{'N':>6} {'split':<11} {'Sharpe without':>18} {'Sharpe adapted':>18} {'return without':>16} "
          f"{'return adapted':>16} {'trades w/o':>10} {'trades ad.':>10}")
    for n in sorted({r["adapt_bars"] for r in rows}):
        for split in args.splits.split(","):
            sel = [r for r in rows if r["adapt_bars"] == n and r["split"] == split]

            def ms(variant: str, key: str, sel=sel) -> tuple[float, float]:
                values = [r[variant][key] for r in sel]
                return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

            sw, sa = ms("without", "sharpe"), ms("adapted", "sharpe")
            rw, ra = ms("without", "total_return"), ms("adapted", "total_return")
            tw, ta = ms("without", "n_trades"), ms("adapted", "n_trades")
            print(f"{n:>6} {split:<11} {sw[0]:>+9.2f} ± {sw[1]:5.2f} {sa[0]:>+9.2f} ± {sa[1]:5.2f} "
                  f"{rw[0]:>+9.1%} ± {rw[1]:4.1%} {ra[0]:>+9.1%} ± {ra[1]:4.1%} {tw[0]:>10.0f} {ta[0]:>10.0f}")
    Path(args.out).write_text(json.dumps({"runs": args.runs, "results": rows}, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
