#!/usr/bin/env python
"""By-hand benchmark of the CUDA signal backtester: the chunked-scan kernel against the
per-strategy sequential kernel. Prints a table and writes JSON. NOT a test.

    python benchmarks/bench_backtest_scan.py --out scan.json      # about 2-3 minutes on an H200
    python benchmarks/bench_backtest_scan.py --quick

Sizes: 1k, 10k, 100k strategies x 10k, 100k, 1M bars of int8 signals already on the GPU,
leaving out combinations over 4 GB of signals. Signals are uniform random actions (most
strategies trade a third of their bars and hit the bankruptcy floor half way, so the scan's
floor path is in the timing), plus "sticky" signals (an action on 1% of bars) for 100k x 10k.
``--held-sweep`` times 100k x 10k only, from all-HOLD signals (the floor of a pass that reads
every signal) through actions on 1%, 0.1% and 0.01% of bars, drawn per strategy or shared by
each warp of 32 strategies.

Times (medians of CUDA-event timings of whole calls, prices passed from the host as users do):
``call`` is the whole backtest_signals call (price upload, scratch, kernels, metrics download);
``kernels`` is the sum of the backtester's kernel durations from the torch profiler (absent
when the profiler is not available).

``*_untiled``: the same kernels reading one action per thread per bar instead of staging the
signals in shared-memory tiles (``tiles=False``; the same results to the bit).

``held_runs`` (where the build has it) is the scan with long-flat chunks summarised by held runs
(a compare per bar, account maths at fills, held runs from prefix sums and a range tree of the
closes built on the host and copied with the prices: about 50 bytes a bar, in the call time, not
in the kernels'); its bytes are counted as the scan's.

Bytes counted (``bytes_moved``): the scan reads the signals once in its summary pass, and
writes and reads back per (chunk, strategy) a position summary (8 B), a carry (16 B) and a chunk
summary (76 B), and writes the metrics (80 B per strategy); the sequential kernel reads the
signals once and writes the metrics. Not counted: the positions pass, which reads each chunk
backwards only as far as its last run of equal targets (a few bars for uniform signals, about
200 for sticky ones), and the strategies near the floor, which read their one chunk again. ``signals_once`` = signal bytes / time, the plan's measure.
Both are reported as fractions of the copy bandwidth measured in the same run: a
device-to-device copy of a buffer the size of the 100k x 10k signals, (bytes read + written)
per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import time_cuda  # noqa: E402  (CUDA events around a call, median)

SIZES = [(10_000, 1_000), (100_000, 1_000), (1_000_000, 1_000), (10_000, 10_000), (100_000, 10_000),
         (10_000, 100_000)]
MAX_SIGNAL_BYTES = 4 << 30
METRIC_BYTES = 80


def kernel_seconds(fn, repeats: int = 3) -> tuple[float | None, dict[str, float]]:
    """Median over calls of the summed durations of the backtester's kernels (torch profiler),
    and the median of each kernel's own (by the kernel's short name, e.g. ``summary_kernel``)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile

        totals: list[float] = []
        each: dict[str, list[float]] = {}
        for _ in range(repeats):
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            total = 0.0
            this_call: dict[str, float] = {}
            for evt in prof.events():
                name = evt.name
                if ("himari" in name or "_kernel" in name) and "Memcpy" not in name and "Memset" not in name:
                    dt = getattr(evt, "device_time", None)
                    if dt is None:
                        dt = getattr(evt, "cuda_time", 0.0)
                    total += float(dt) * 1e-6
                    short = next((w for w in name.replace("<", " ").replace("(", " ").split()
                                  if w.endswith("_kernel")), name[:40])
                    short = short.rsplit("::", 1)[-1]
                    this_call[short] = this_call.get(short, 0.0) + float(dt) * 1e-6
            totals.append(total)
            for k, v in this_call.items():
                each.setdefault(k, []).append(v)
        per_kernel = {k: statistics.median(v) for k, v in each.items()}
        return (statistics.median(totals) if any(totals) else None), per_kernel
    except Exception as exc:  # noqa: BLE001 - the profiler is optional here
        print(f"(no kernel times: {exc})", file=sys.stderr)
        return None, {}


def copy_bandwidth(n_bytes: int) -> float:
    import torch

    x = torch.randint(0, 3, (n_bytes,), dtype=torch.int8, device="cuda")
    y = torch.empty_like(x)
    t = time_cuda(lambda: y.copy_(x), iters=1, repeats=7, warmup=2)
    return 2 * n_bytes / t


def prices(bars: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.003, bars)))
    return close * np.exp(rng.normal(0, 0.0005, bars)), close


def scan_bytes(bars: int, m: int, chunk: int) -> int:
    steps = bars - 1
    pairs = -(-steps // chunk) * m
    return steps * m + pairs * (2 * 8 + 2 * 16 + 2 * 76) + m * METRIC_BYTES


def auto_chunk(steps: int, m: int) -> int:
    """The kernel's automatic chunk size (backtest_scan_cuda.cu: auto_chunk)."""
    return int(min(max(-(-steps * m // (1 << 19)), 64), 16384))


def make_signals(bars: int, m: int, kind: str):
    """int8 signals [bars, m] on the GPU: "uniform" random actions, "hold" (all HOLD), or
    "sticky:RATE" / "coherent:RATE" (an action, uniform over SELL/HOLD/BUY, on RATE of bars, HOLD
    elsewhere; "coherent" gives each group of 32 neighbouring strategies, one CUDA warp, the same
    signals)."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(bars + m)
    name, _, rate = kind.partition(":")
    if name == "uniform":
        return torch.randint(0, 3, (bars, m), device="cuda", dtype=torch.int8, generator=gen)
    if name == "hold":
        return torch.ones((bars, m), device="cuda", dtype=torch.int8)
    if name not in ("sticky", "coherent"):
        raise ValueError(f"unknown signals {kind!r}")
    cols = m if name == "sticky" else -(-m // 32)
    acts = torch.randint(0, 3, (bars, cols), device="cuda", dtype=torch.int8, generator=gen)
    acts[torch.rand((bars, cols), device="cuda", generator=gen) >= float(rate or 0.01)] = 1
    return acts if name == "sticky" else acts.repeat_interleave(32, dim=1)[:, :m].contiguous()


def run_case(bars: int, m: int, kind: str, copy_bw: float, quick: bool) -> dict:
    import torch

    from himari import _core

    o, c = prices(bars)
    sig = make_signals(bars, m, kind)

    def call(variant: str):
        kernel, tiles = variant.removesuffix("_untiled"), not variant.endswith("_untiled")
        return lambda: _core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_flat", 105120.0, False, 0, 0,
                                                   kernel=kernel, tiles=tiles)

    row: dict = {"bars": bars, "strategies": m, "signals": kind, "signal_bytes": bars * m}
    reps = 3 if quick else 5
    for kernel in ("scan", "held_runs", "sequential", "scan_untiled", "held_runs_untiled"):
        if kernel.startswith("held_runs") and not held_runs_available(o, c):
            continue
        slow = kernel == "sequential" and bars * m >= 10**9
        t = time_cuda(call(kernel), iters=1, repeats=1 if slow else reps, warmup=0 if slow else 1)
        k, per_kernel = (None, {}) if slow else kernel_seconds(call(kernel), repeats=2)
        moved = (scan_bytes(bars, m, auto_chunk(bars - 1, m)) if kernel != "sequential"
                 else (bars - 1) * m + m * METRIC_BYTES)
        best = k if k else t
        row[kernel] = {"call_seconds": t, "kernel_seconds": k, "bytes_moved": moved,
                       "signals_once_fraction": bars * m / best / copy_bw, "moved_fraction": moved / best / copy_bw,
                       "kernels": per_kernel}
    ref = np.asarray(_core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_flat", 105120.0, False, 0, 0,
                                                 kernel="sequential")[0])
    got = np.asarray(_core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_flat", 105120.0, False, 0, 0,
                                                 kernel="scan")[0])
    scale = np.maximum(np.abs(ref), 1e-12)
    row["trades_equal"] = bool(np.array_equal(got[:, 7], ref[:, 7]))
    row["max_rel_diff"] = float(np.max(np.abs(got - ref) / scale))
    row["bankrupt_fraction"] = float(np.mean(ref[:, 0] <= -1 + 1e-9))
    row["speedup"] = row["sequential"]["call_seconds"] / row["scan"]["call_seconds"]
    if "held_runs" in row:
        held = np.asarray(_core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_flat", 105120.0, False, 0, 0,
                                                      kernel="held_runs")[0])
        row["held_runs"].update(trades_equal=bool(np.array_equal(held[:, 7], ref[:, 7])),
                                max_rel_diff=float(np.max(np.abs(held - ref) / scale)),
                                speedup_vs_scan=row["scan"]["call_seconds"] / row["held_runs"]["call_seconds"])
    return row


def held_runs_available(o: np.ndarray, c: np.ndarray) -> bool:
    """Whether this build's CUDA backtester has the held-run summaries (kernel="held_runs")."""
    import torch

    from himari import _core
    from himari.errors import InvalidArgumentError

    try:
        _core.backtest_signals_cuda(o[:3], c[:3], torch.ones((3, 1), dtype=torch.int8, device="cuda"), 1e-3, 5e-4,
                                    "long_flat", 105120.0, False, 0, 0, kernel="held_runs")
        return True
    except InvalidArgumentError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="only the sizes up to 10^8 signals")
    ap.add_argument("--held-sweep", action="store_true",
                    help="only 100k x 10k with all-HOLD signals and actions on 1%%, 0.1%% and 0.01%% of bars, "
                         "per strategy and shared by each warp of 32 (where the held-run summaries pay)")
    args = ap.parse_args()
    import torch

    from himari.engine import build_info, cuda_available

    if not cuda_available():
        sys.exit(f"needs a CUDA build and device: {build_info()}")
    copy_bw = copy_bandwidth(100_000 * 10_000 if not args.quick else 10**8)
    result: dict = {"gpu": torch.cuda.get_device_name(0), "build": build_info(),
                    "copy_bandwidth_bytes_per_s": copy_bw, "cases": []}
    print(f"copy bandwidth {copy_bw / 1e12:.2f} TB/s (read + write)")
    cases = [(b, m, "uniform") for b, m in SIZES if b * m <= MAX_SIGNAL_BYTES and (not args.quick or b * m <= 10**8)]
    cases.append((100_000, 10_000, "sticky") if not args.quick else (10_000, 10_000, "sticky"))
    if args.held_sweep:
        cases = [(100_000, 10_000, kind) for kind in ("hold", "sticky:0.01", "sticky:0.001", "sticky:0.0001",
                                                      "coherent:0.01", "coherent:0.001")]
    for bars, m, kind in cases:
        row = run_case(bars, m, kind, copy_bw, args.quick)
        torch.cuda.empty_cache()
        result["cases"].append(row)
        s, q = row["scan"], row["sequential"]
        print(f"{bars:>9,} x {m:>7,} {kind:7s}: scan {s['call_seconds'] * 1e3:8.2f} ms (kernels "
              f"{(s['kernel_seconds'] or float('nan')) * 1e3:.2f} ms), sequential {q['call_seconds'] * 1e3:9.2f} ms, "
              f"x{row['speedup']:.0f}, trades equal {row['trades_equal']}, max rel diff {row['max_rel_diff']:.1e}",
              flush=True)
        for name in ("scan", "held_runs"):
            if row.get(name, {}).get("kernels"):
                print(f"{'':27s}{name} kernels: " + ", ".join(
                    f"{k} {v * 1e3:.2f} ms" for k, v in sorted(row[name]["kernels"].items(), key=lambda kv: -kv[1])))
        if "held_runs" in row:
            h = row["held_runs"]
            print(f"{'':27s}held runs {h['call_seconds'] * 1e3:8.2f} ms (kernels "
                  f"{(h['kernel_seconds'] or float('nan')) * 1e3:.2f} ms, signals once "
                  f"{h['signals_once_fraction']:.1%} of copy BW), trades equal {h['trades_equal']}, "
                  f"max rel diff {h['max_rel_diff']:.1e}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
    print("\n| bars x strategies | signals | scan call | scan kernels | signals-once BW | moved BW | sequential | speed-up |"
          "\n|---|---|---|---|---|---|---|---|")
    for row in result["cases"]:
        s, q = row["scan"], row["sequential"]
        k = f"{s['kernel_seconds'] * 1e3:.2f} ms" if s["kernel_seconds"] else "-"
        print(f"| {row['bars']:,} x {row['strategies']:,} | {row['signals']} | {s['call_seconds'] * 1e3:.2f} ms | {k} "
              f"| {s['signals_once_fraction']:.1%} | {s['moved_fraction']:.1%} | {q['call_seconds'] * 1e3:.1f} ms "
              f"| x{row['speedup']:.0f} |")
    held_rows = [row for row in result["cases"] if "held_runs" in row]
    if held_rows:
        print("\n| bars x strategies | signals | held-runs call | held-runs kernels | signals-once BW | vs scan call |"
              "\n|---|---|---|---|---|---|")
        for row in held_rows:
            h = row["held_runs"]
            k = f"{h['kernel_seconds'] * 1e3:.2f} ms" if h["kernel_seconds"] else "-"
            print(f"| {row['bars']:,} x {row['strategies']:,} | {row['signals']} | {h['call_seconds'] * 1e3:.2f} ms "
                  f"| {k} | {h['signals_once_fraction']:.1%} | x{h['speedup_vs_scan']:.1f} |")
    print("\nSignals staged in shared-memory tiles against one action per thread per bar (kernel times):"
          "\n| bars x strategies | signals | scan tiled | untiled | speed-up | held runs tiled | untiled | speed-up |"
          "\n|---|---|---|---|---|---|---|---|")

    def ms(row: dict, key: str) -> tuple[str, float | None]:
        t = row.get(key, {}).get("kernel_seconds")
        return (f"{t * 1e3:.2f} ms" if t else "-"), t

    for row in result["cases"]:
        cells = []
        for name in ("scan", "held_runs"):
            (a, ta), (b, tb) = ms(row, name), ms(row, name + "_untiled")
            cells += [a, b, f"x{tb / ta:.2f}" if ta and tb else "-"]
        print(f"| {row['bars']:,} x {row['strategies']:,} | {row['signals']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
