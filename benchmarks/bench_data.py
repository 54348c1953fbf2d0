"""Benchmark of the data pipeline on one core (a benchmark, not a test).

    python benchmarks/bench_data.py [--bars 1000000] [--json benchmarks/results/bench_data.json]

Times synthesis, the bars Parquet write, features, labels and the full ``prepare`` (read bars,
features, labels, splits, atomic write) on ``--bars`` synthetic bars, plus the real
BTC/USDT year when ../shared/data is present. Runs pinned to one CPU with single-threaded BLAS.
Prints a table and writes JSON that names the machine. Target: prepare 1M bars in < 10 s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import socket
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import pandas
    import pyarrow

    import himari

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "pinned_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "himari": himari.__version__,
    }


def _timed(results: list[dict[str, object]], name: str, rows: int, fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    results.append({"step": name, "rows": rows, "seconds": round(best, 4), "rows_per_s": round(rows / best)})
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each step")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "bench_data.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from himari.data.features import compute_features
    from himari.data.frame import ts_ns
    from himari.data.labels import make_labels
    from himari.data.pipeline import prepare
    from himari.data.synthetic import SynthConfig, synthesize, write_synthetic

    n = args.bars
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        frame = _timed(results, "synthesize", n, lambda: synthesize(SynthConfig(bars=n, seed=0)), args.repeat)
        bars = tmpd / "bars.parquet"
        _timed(results, "synth + write bars parquet", n, lambda: write_synthetic(bars, SynthConfig(bars=n, seed=0)))
        cols = [frame[k].to_numpy() for k in ("open", "high", "low", "close", "volume")]
        stamps = ts_ns(frame["timestamp"])
        _timed(results, "features (60, incl. native EKF)", n, lambda: compute_features(*cols, stamps), args.repeat)
        _timed(results, "labels forward-return", n, lambda: make_labels("forward-return", *cols[:4]), args.repeat)
        _timed(results, "labels triple-barrier", n, lambda: make_labels("triple-barrier", *cols[:4]), args.repeat)
        _timed(results, "prepare (read, all stages, write)", n, lambda: prepare(bars, tmpd / "prepared", force=True), args.repeat)
        btc = SHARED / "btcusdt_5m.csv.gz"
        if btc.exists():
            _timed(results, "prepare BTC/USDT 2023 from .csv.gz", 104_816, lambda: prepare(btc, tmpd / "btc", force=True), args.repeat)

    machine = _machine()
    width = max(len(str(r["step"])) for r in results)
    print(f"himari data benchmark on {machine['cpu']} ({machine['hostname']}), 1 core, best of {args.repeat}")
    print(f"{'step':<{width}}  {'rows':>10}  {'seconds':>8}  {'rows/s':>12}")
    for r in results:
        print(f"{r['step']:<{width}}  {r['rows']:>10,}  {r['seconds']:>8.3f}  {r['rows_per_s']:>12,}")
    target = next(r for r in results if str(r["step"]).startswith("prepare ("))
    ok = float(target["seconds"]) < 10.0  # type: ignore[arg-type]
    print(f"target: prepare {n:,} bars < 10 s: {'met' if ok else 'MISSED'} ({target['seconds']} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "bench_data", "bars": n, "repeat": args.repeat, "machine": machine,
               "results": results, "target_prepare_under_10s": ok,
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
