"""Fit time and quality of the synthetic-data generators (``himari data augment``) on a prepared set.

Each generator is fitted on the train split, sampled, and measured with the quality report
(discriminative and predictive scores, stylised facts, beside the block bootstrap); the JSON
keeps the fit and sample seconds, the settings, the report and the machine. CPU runs use reduced
settings (``--set``); on a GPU pass ``--device cuda`` and the paper-size settings:

    OMP_NUM_THREADS=1 python benchmarks/bench_generators.py --data /work/data/btc --method tab-ddpm \
        --rows 5000 --set steps=1000 --set layers=[128,128] --set batch_size=1024 \
        --report-steps 300 --out benchmarks/results/generator-tab-ddpm-btc-cpu-small.json
    python benchmarks/bench_generators.py --data prepared/btc --method timegan --windows 20000 \
        --device cuda --out benchmarks/results/generator-timegan-btc-gpu.json   # paper size: 50,000 iterations

The set itself is written to a temporary directory (or ``--keep DIR``), so it can be reused by
``benchmarks/bench_methods.py --augment DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info  # type: ignore[import-not-found]  # noqa: E402


class PhaseTimer:
    """A progress reporter that keeps each phase's seconds (the GPU's queue drained at its end, so
    a phase that never waits for the GPU is not credited to the next)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, description: str, total: int | None = None) -> Iterator[Any]:
        start = time.perf_counter()
        yield lambda n=1: None
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.synchronize()
        self.seconds[description] = self.seconds.get(description, 0.0) + time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared directory (fitted on its train split)")
    p.add_argument("--method", required=True, help="generator plugin: timegan, tab-ddpm, block-bootstrap")
    p.add_argument("--windows", type=int)
    p.add_argument("--rows", type=int)
    p.add_argument("--features", help="channels (default: the generator's)")
    p.add_argument("--set", action="append", default=[], help="generator setting KEY=VALUE (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--report-steps", type=int, help="steps of the report's post-hoc networks (default: the paper's)")
    p.add_argument("--keep", help="write the set here (default: a temporary directory, removed)")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args()

    from rich.console import Console

    from himari.augment.report import render_report
    from himari.augment.run import AugmentRequest, make_set
    from himari.progress import reporting

    settings: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key.strip()] = yaml.safe_load(value)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "set"
        t0 = time.perf_counter()
        timer = PhaseTimer()
        with reporting(timer):
            meta = make_set(AugmentRequest(data=Path(args.data), method=args.method, out=out, windows=args.windows,
                                           rows=args.rows, features=args.features, seed=args.seed,
                                           device=args.device, settings=settings, report=True,
                                           report_steps=args.report_steps, force=bool(args.keep)))
        total = time.perf_counter() - t0
    report = meta.pop("report")
    result = {"machine": machine_info(), "method": args.method, "data": args.data, "device": meta["device"],
              "settings": meta["generator"]["config"], "channels": meta["channels"], "window": meta["window"],
              "n_windows": meta["n_windows"], "train_rows": sum(b - a for a, b in meta["source"]["train_ranges"]),
              "train_span": meta["source"]["train_span"], "fit_seconds": meta["fit_seconds"],
              "sample_seconds": meta["sample_seconds"], "total_seconds": total, "phase_seconds": timer.seconds,
              "fit_log": meta.get("fit_log"), "classes": meta.get("classes"), "report": report, "set": args.keep}
    render_report(report, Console())
    print(f"{args.method}: fit {meta['fit_seconds']:.1f}s, sample {meta['sample_seconds']:.1f}s on {meta['device']}")
    print("phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in timer.seconds.items()))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
