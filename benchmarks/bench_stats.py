"""Benchmark of ``himari.evaluation.stats`` on one core (a benchmark, not a test).

    python benchmarks/bench_stats.py [--bars 105120] [--resamples 10000] [--repeats 5] [--cpu 0]
                                     [--json benchmarks/results/stats-<hostname>.json]

Times, on a year of synthetic 5-minute returns (105,120 bars, Student-t noise with a small
drift): the stationary-bootstrap p-value with 10,000 resamples (target: well under 1 s), the
sign-flip p-value with 10,000 sign patterns, the moments and PSR, the DSR against 96 trials'
Sharpe ratios (16 configurations x 6 seeds), the PBO of 16 configurations' per-bar returns with
S = 6 partitions (one per walk-forward fold: 20 splits) and S = 16 (12,870 splits), and the
drawdown durations. Each number is the median of ``--repeats`` warm repeats (each callable ran
once before timing), the garbage collector off; the process is pinned to one core with
single-threaded BLAS. Prints a table and writes JSON naming the machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import gc
import json
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import machine_info

REPO = Path(__file__).resolve().parents[1]
TARGET_BOOTSTRAP_S = 1.0


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    value = fn()  # warm
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return times, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=105_120, help="returns per series (a year of 5-minute bars)")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--configs", type=int, default=16, help="configurations of the PBO matrix")
    parser.add_argument("--repeats", type=int, default=5, help="median of K warm repeats")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})

    from himari.data.atomic import write_text_atomic
    from himari.evaluation import stats

    rng = np.random.default_rng(0)
    n = args.bars
    returns = 2e-5 + 1e-3 * rng.standard_t(4, n) / np.sqrt(2.0)
    bench = 1e-3 * rng.standard_t(4, n) / np.sqrt(2.0)
    trials = rng.normal(0.0, 0.004, 96)  # per-bar Sharpe ratios of 16 configurations x 6 seeds
    matrix = 1e-3 * rng.standard_t(4, (n, args.configs)) / np.sqrt(2.0) + rng.normal(0, 3e-6, args.configs)

    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("bootstrap p-value", f"{n:,} bars x {args.resamples:,} resamples",
         lambda: stats.bootstrap_pvalue(returns, bench, n_resamples=args.resamples).p_value),
        ("sign-flip p-value", f"{n:,} bars x {args.resamples:,} patterns",
         lambda: stats.sign_flip_pvalue(returns, bench, n_resamples=args.resamples).p_value),
        ("moments + PSR(0)", f"{n:,} bars", lambda: stats.probabilistic_sharpe_ratio(returns)),
        ("DSR, 96 trials", f"{n:,} bars", lambda: stats.deflated_sharpe_ratio(returns, trials)),
        ("PBO, S = 6 (20 splits)", f"{n:,} x {args.configs}",
         lambda: stats.probability_of_backtest_overfitting(matrix, n_partitions=6).pbo),
        ("PBO, S = 16 (12,870 splits)", f"{n:,} x {args.configs}",
         lambda: stats.probability_of_backtest_overfitting(matrix, n_partitions=16).pbo),
        ("drawdown durations", f"{n:,} bars",
         lambda: stats.drawdown_durations_from_returns(returns).longest_underwater_bars),
    ]
    machine = machine_info()
    machine["pinned_cpu"] = cpu
    results = []
    for name, size, fn in cases:
        times, value = _timed(fn, args.repeats)
        results.append({"step": name, "size": size, "median_s": statistics.median(times), "best_s": min(times),
                        "times_s": times, "value": value})

    width = max(len(r["step"]) for r in results)
    size_w = max(len(r["size"]) for r in results)
    print(f"himari.evaluation.stats on {machine['cpu_model']} ({machine['hostname']}), core {cpu}, "
          f"median of {args.repeats}, load {machine['load_avg_start'][0]:.2f}")
    print(f"{'step':<{width}}  {'size':<{size_w}}  {'median ms':>10}  {'best ms':>9}  value")
    for r in results:
        print(f"{r['step']:<{width}}  {r['size']:<{size_w}}  {1e3 * r['median_s']:>10.2f}  {1e3 * r['best_s']:>9.2f}  "
              f"{r['value']:.6g}")
    boot = results[0]["median_s"]
    met = boot < TARGET_BOOTSTRAP_S
    print(f"target: bootstrap of {n:,} bars x {args.resamples:,} resamples < {TARGET_BOOTSTRAP_S:g} s: "
          f"{'met' if met else 'MISSED'} ({boot:.3f} s)")
    out = args.json or REPO / "benchmarks" / "results" / f"stats-{socket.gethostname()}.json"
    payload = {"benchmark": "bench_stats", "machine": machine,
               "config": {"bars": n, "resamples": args.resamples, "configurations": args.configs,
                          "trials": len(trials), "repeats": args.repeats,
                          "mean_block_length": stats.default_block_length(n)},
               "results": results, "target_bootstrap_under_1s": met,
               "load_avg_end": os.getloadavg()}
    write_text_atomic(out, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
