#!/usr/bin/env python
"""One call of each CUDA scan backtester variant on one signal set, for Nsight Compute (NOT a
test, no timing of its own): where the scan's kernels spend their time.

    ncu --clock-control none -k regex:"summary|positions" --section SpeedOfLight \\
        --section WarpStateStats --section MemoryWorkloadAnalysis -c 4 \\
        python benchmarks/profile_backtest_scan.py --signals sticky:0.01

Signals as in bench_backtest_scan.py (uniform, hold, sticky:RATE, coherent:RATE).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backtest_scan import make_signals, prices  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--strategies", type=int, default=10_000)
    ap.add_argument("--signals", default="sticky:0.01")
    ap.add_argument("--kernels", default="scan,held_runs")
    args = ap.parse_args()
    import torch

    from himari import _core

    o, c = prices(args.bars)
    sig = make_signals(args.bars, args.strategies, args.signals)
    for kernel in args.kernels.split(","):
        _core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_flat", 105120.0, False, 0, 0, kernel=kernel)
        torch.cuda.synchronize()
        print(f"ran {kernel} on {args.bars:,} x {args.strategies:,} {args.signals}", flush=True)


if __name__ == "__main__":
    main()
