"""CGDT acting speed: decisions per second of its sequential rollout (``rollout_targets``), the
work that validates every epoch (5 target returns-to-go in one batch over the validation bars)
and acts on the test split (one target).

Why it matters: a decision needs the account the previous one left, so the validation and test
passes are sequential over bars; on a GPU each step is a few hundred small kernels and a round
trip to the CPU env, and at the default size these passes, not the training steps, took most of
a ``himari train cgdt`` run (an H100 run: about 90% of 638 s; benchmarks/GPU_NOTES.md).

Setup: cgdt at its default size (or ``--d-model/--layers/--context``), freshly initialised (the
cost does not depend on the weights), 60 features, a random-walk market of ``--steps`` bars, the
fee and slippage of the env defaults. Rows: each ``--targets`` batch size, on ``--device``, with
the decoder step replayed as a CUDA graph and without (``acting_cuda_graph``; on the CPU only
the eager row). Median of ``--repeats`` timed passes after one warm-up pass; decisions/s counts
bars, not bars x targets. Writes JSON (``--out``) and prints a table.

    python benchmarks/bench_cgdt_acting.py [--device cuda] [--steps 2000] [--targets 1,5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, synchronize

N_FEATURES = 60


def build(device: str, d_model: int, layers: int, context: int, graphs: bool) -> tuple[Any, Any]:
    import torch
    from himari_builtin.models.cgdt import CGDT, CGDTConfig

    from himari.plugin.api import ModelContext

    torch.manual_seed(0)
    cfg = CGDTConfig(d_model=d_model, n_layers=layers, context_length=context, acting_cuda_graph=graphs)
    model = CGDT(cfg, ModelContext(n_features=N_FEATURES))
    net = model.network.to(device).eval()
    return net, cfg


def market(steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, steps)))
    open_ = np.concatenate([[100.0], close[:-1]])
    feats = rng.normal(size=(steps, N_FEATURES)).astype(np.float32)
    return feats, open_, close


def timed(net: Any, cfg: Any, feats: np.ndarray, open_: np.ndarray, close: np.ndarray, targets: list[float],
          device: str, repeats: int) -> list[float]:
    import torch
    from himari_builtin.models.cgdt.decoding import rollout_targets

    from himari.plugin.api import EnvConfig

    env = EnvConfig()
    seconds = []
    with torch.no_grad():
        for i in range(repeats + 1):
            synchronize(device)
            t = time.perf_counter()
            rollout_targets(net, cfg, feats, open_, close, targets, env)
            synchronize(device)
            if i:  # the first pass warms up (allocations, cuDNN/cuBLAS, the graph's recording)
                seconds.append(time.perf_counter() - t)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--targets", default="1,5", help="batch sizes (target returns-to-go in one pass)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    feats, open_, close = market(args.steps)
    modes = [False, True] if args.device.startswith("cuda") else [False]
    rows = []
    for g in (int(x) for x in args.targets.split(",")):
        targets = list(np.linspace(-1.0, 1.0, g)) if g > 1 else [0.5]
        for graphs in modes:
            net, cfg = build(args.device, args.d_model, args.layers, args.context, graphs)
            secs = timed(net, cfg, feats, open_, close, targets, args.device, args.repeats)
            med = statistics.median(secs)
            rows.append({"targets": g, "cuda_graph": graphs, "seconds": secs, "median_s": med,
                         "decisions_per_s": (args.steps - 1) / med, "ms_per_decision": 1e3 * med / (args.steps - 1)})
    print(f"cgdt acting on {args.device}: d_model {args.d_model}, {args.layers} layers, context {args.context}, "
          f"{args.steps:,} bars, median of {args.repeats}")
    print(f"{'targets':>8} {'graph':>6} {'ms/decision':>12} {'decisions/s':>12}")
    for r in rows:
        print(f"{r['targets']:>8} {r['cuda_graph']!s:>6} {r['ms_per_decision']:>12.3f} {r['decisions_per_s']:>12.1f}")
    result = {"machine": machine_info(), "device": args.device, "steps": args.steps, "d_model": args.d_model,
              "layers": args.layers, "context": args.context, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
