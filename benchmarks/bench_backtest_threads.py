"""``backtest_signals`` on the CPU with ``threads`` > 1 against one thread, the call users make.

Times the whole call (input checks, price copies, kernel, metrics) at 1, 2, 4, ... threads up to
the machine's hardware threads, interleaved, medians of ``--repeats``; shows which split the
library took (``strategies``: contiguous strategy ranges, the one-thread bits; ``time_scan``: a
few strategies over many bars as a scan over time, counts exact and metrics to rounding) and
checks every threaded result against the one-thread result. Signals: a random BUY or SELL on a
share of the bars (0.02: a position change about every 100 bars; 1.0: an action on every bar,
where every strategy is ground down to the bankruptcy floor by costs).

Writes ``benchmarks/results/backtest-threads-<hostname>.json`` (or ``--json``).

    python benchmarks/bench_backtest_threads.py [--repeats 9] [--quick]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from pathlib import Path

import numpy as np

from bench_common import machine_info

CASES = [(1_000_000, 1, 0.02), (1_000_000, 4, 0.02), (1_000_000, 10, 0.02), (200_000, 64, 0.02),
         (100_000, 1000, 0.02), (1_000_000, 1, 1.0), (100_000, 1000, 1.0)]
QUICK = [(200_000, 1, 0.02), (20_000, 200, 0.02)]
COUNTS = ("n_trades", "turnover", "exposure", "win_rate")


def market(bars: int, strategies: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, bars)))
    open_ = np.r_[close[0], close[:-1]]
    signals = np.ones((bars, strategies), dtype=np.int8)
    act = rng.random((bars, strategies)) < share
    signals[act] = rng.choice(np.array([0, 2], dtype=np.int8), int(act.sum()))
    return open_, close, signals


def largest_difference(one, many) -> tuple[bool, float]:
    """Whether every count matches exactly, and the largest relative difference of the rest."""
    counts_equal = all(np.array_equal(getattr(one, n), getattr(many, n)) for n in COUNTS)
    rel = 0.0
    for n in one.metric_names():
        a, b = getattr(one, n), getattr(many, n)
        rel = max(rel, float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300))))
    return counts_equal, rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="two small cases (a smoke run)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from himari.engine import backtest_signals, hardware_threads
    from himari.engine._native import _core

    hw = hardware_threads()
    counts = [1]
    while counts[-1] * 2 <= hw:
        counts.append(counts[-1] * 2)
    if counts[-1] != hw:
        counts.append(hw)
    print(f"backtest_signals on the CPU, 1..{hw} threads, median of {args.repeats} (whole call)")
    print(f"{'bars':>9} {'strats':>6} {'acts':>5}  " + "  ".join(f"{p:>2} thr (ms)" for p in counts)
          + "  speed-up  split")
    rows = []
    for bars, strategies, share in QUICK if args.quick else CASES:
        open_, close, signals = market(bars, strategies, share, seed=7)
        one = backtest_signals(open_, close, signals)
        times: dict[int, list[float]] = {p: [] for p in counts}
        for p in counts:  # warm, and the agreement check
            many = backtest_signals(open_, close, signals, threads=p)
            counts_equal, rel = largest_difference(one, many)
            if not counts_equal or rel > 1e-9:
                raise SystemExit(f"threads={p} disagrees with one thread on {bars} x {strategies}: "
                                 f"counts equal {counts_equal}, largest relative difference {rel:.3g}")
        for _ in range(args.repeats):
            for p in counts:
                t0 = time.perf_counter()
                backtest_signals(open_, close, signals, threads=p)
                times[p].append(time.perf_counter() - t0)
        med = {p: statistics.median(v) * 1e3 for p, v in times.items()}
        split, workers = _core.backtest_plan(bars, strategies, False, hw)
        _, rel = largest_difference(one, backtest_signals(open_, close, signals, threads=hw))
        rows.append({"bars": bars, "strategies": strategies, "action_share": share, "median_ms": med,
                     "speedup_all_threads": med[1] / med[hw], "split": split, "workers": workers,
                     "max_relative_difference": rel})
        print(f"{bars:>9} {strategies:>6} {share:>5.0%}  " + "  ".join(f"{med[p]:>11.2f}" for p in counts)
              + f"  {med[1] / med[hw]:>7.2f}x  {split} ({workers})")
    out = {"machine": machine_info(), "repeats": args.repeats, "thread_counts": counts, "results": rows}
    path = args.json or Path(__file__).parent / "results" / f"backtest-threads-{socket.gethostname()}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
