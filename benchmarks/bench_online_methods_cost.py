"""Training-time cost of maml (K2) and adversarial (K5) on an online-RL model, against a plain run
of the same model and budget (by hand, not a test).

    # FLAG-TRADER at its default size on a GPU (a few minutes on an H200):
    python benchmarks/bench_online_methods_cost.py --model flag-trader --device cuda --bars 12000 --cycles 1 \
        --max-steps 4 --out flag-trader-k2-k5.json
    # the same with the tests' tiny FLAG-TRADER on a CPU: a check of the script, not a measurement
    python benchmarks/bench_online_methods_cost.py --model flag-trader --device cpu --tiny --bars 6000 \
        --cycles 1 --max-steps 2 --out /tmp/ft-smoke.json
    # PPO-LSTM on the CPU (the numbers in docs/training-methods.md, K2), on prepared data:
    OMP_NUM_THREADS=1 python benchmarks/bench_online_methods_cost.py --model ppo-lstm --device cpu \\
        --data /path/to/prepared/btc --cycles 8 --out ppo-lstm-k2.json

Each variant is a one-epoch run of ``--cycles`` rollout cycles (``--max-steps`` stops it after that
many optimiser steps: a cycle's cost is then its collection plus 16 times the mean step) (the model's defaults otherwise:
n_envs, rollout_steps, update_epochs x n_minibatches optimiser steps per cycle), seed 0. Timed,
by patching the Trainer's online loop: ``collect`` (the run's rollout plus the methods'
``on_rollout`` hooks: maml's task rollouts and inner loops, adversarial's attack on the update
observations) and ``train_step`` (forward, backward, the methods' ``before_optimizer_step``:
maml's meta-gradients, and the optimiser step), in wall time with the GPU synchronised, and in
process CPU time. Validation and test scoring are not counted. Without ``--data`` a synthetic
market of ``--bars`` bars is prepared in a temporary directory (the timing does not depend on the
prices). maml's task windows are set long enough for the model's observation window (FLAG-TRADER
reads 256 bars: ``maml.window=1024``, ``maml.support=512``).

Prints a table and writes JSON (machine, settings, per variant: cycles, optimiser steps, seconds
collecting and updating, ms per cycle and per step, ratio to the plain run) to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {  # name: (what it is, --method and --set values)
    "plain": ("the model alone", []),
    "maml": ("maml first-order, k=1, 4 tasks per cycle", ["maml"]),
    "maml-reptile": ("maml reptile, k=1, 4 tasks per cycle", ["maml", "maml.mode=reptile"]),
    "adversarial": ("adversarial pgd-3 on the updates, ratio 0.5", ["adversarial"]),
    "adversarial-rollouts": ("adversarial fgsm in the rollouts, ratio 0.5",
                             ["adversarial", "adversarial.rollouts=true", "adversarial.attack=fgsm"]),
}


TINY_FLAG_TRADER = ["flag-trader.n_layer=2", "flag-trader.n_head=2", "flag-trader.n_embd=32",
                    "flag-trader.context_length=16", "flag-trader.lora_rank=4", "flag-trader.head_hidden=16"]
"""``--tiny``: the tests' FLAG-TRADER, for a quick check of the script on a CPU."""


def maml_windows(model: str) -> list[str]:
    return ["maml.window=1024", "maml.support=512"] if model == "flag-trader" else ["maml.window=288",
                                                                                   "maml.support=192"]


def synthetic(bars: int, out: Path) -> Path:
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    prepare(load_synthetic(SynthConfig(bars=bars, seed=0)), out, PrepareConfig())
    return out


def run_variant(model: str, data: Path, device: str, cycles: int, extra: list[str], methods: list[str],
                max_steps: int = 0) -> dict:
    import torch
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training import online
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    acc = {"collect": 0.0, "collect_cpu": 0.0, "step": 0.0, "step_cpu": 0.0, "cycles": 0, "steps": 0}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(fn, key):
        def wrapper(*a, **k):
            sync()
            t, c = time.perf_counter(), time.process_time()
            out = fn(*a, **k)
            sync()
            acc[key] += time.perf_counter() - t
            acc[key + "_cpu"] += time.process_time() - c
            acc["cycles" if key == "collect" else "steps"] += 1
            return out
        return wrapper

    saved = online.collect, online.train_step
    online.collect, online.train_step = timed(online.collect, "collect"), timed(online.train_step, "step")
    try:
        plugins = get_plugins()
        n_envs, steps = 8, 128  # the models' defaults: env_episodes sets the number of cycles
        episode = 2048
        sets = ["train.epochs=1", "train.patience=0", "train.progress=false", f"train.device={device}",
                f"train.max_steps_per_epoch={max_steps}",
                f"{model}.env_episodes={max(1, cycles * n_envs * steps // episode)}", *extra]
        if model == "flag-trader":
            sets.append("train.amp=true")
        run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data), "methods": methods},
                               sets=sets)
        Trainer(run, plugins=plugins, run_dir=Path(tempfile.mkdtemp()) / "run",
                console=Console(file=io.StringIO())).fit()
    finally:
        online.collect, online.train_step = saved
    cycles_done, steps_done = max(acc["cycles"], 1), max(acc["steps"], 1)
    per_step = acc["step"] / steps_done
    # a whole cycle: its collection and all its update_epochs x n_minibatches steps (4 x 4 by default)
    full = acc["collect"] / cycles_done + 16 * per_step
    return {"cycles": acc["cycles"], "steps": acc["steps"], "collect_s": acc["collect"], "update_s": acc["step"],
            "cpu_s": acc["collect_cpu"] + acc["step_cpu"], "ms_per_cycle": 1000 * full, "ms_per_step": 1000 * per_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="flag-trader", choices=["flag-trader", "ppo-lstm"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", type=Path, default=None, help="a prepared data directory (default: synthetic)")
    ap.add_argument("--bars", type=int, default=20_000, help="synthetic bars without --data")
    ap.add_argument("--cycles", type=int, default=2, help="rollout cycles per variant (8 envs x 128 steps each)")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="optimiser steps per variant (0: all); a cycle's cost is then its collection plus 16 "
                         "times the mean step")
    ap.add_argument("--tiny", action="store_true", help="flag-trader's tiny test architecture (a CPU smoke run)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated, of: " + "; ".join(f"{k} ({v[0]})" for k, v in VARIANTS.items()))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from bench_common import machine_info

    data = args.data or synthetic(args.bars, Path(tempfile.mkdtemp()) / "synthetic")
    chosen = [v.strip() for v in args.variants.split(",")]
    results = {}
    for name in chosen:
        spec = VARIANTS[name][1]
        methods, extra = spec[:1], spec[1:]
        if methods == ["maml"]:
            extra = [*maml_windows(args.model), *extra]
        if args.tiny and args.model == "flag-trader":
            extra = [*TINY_FLAG_TRADER, *extra]
        results[name] = run_variant(args.model, data, args.device, args.cycles, extra, methods, args.max_steps)
        print(f"{name}: {results[name]}", flush=True)
    base = results.get("plain", next(iter(results.values())))
    for r in results.values():
        r["x_plain"] = r["ms_per_cycle"] / base["ms_per_cycle"]
    print(f"\n{args.model} on {args.device}, {args.cycles} cycles per variant (8 envs x 128 steps, 16 optimiser "
          f"steps each{f'; {args.max_steps} steps timed' if args.max_steps else ''})")
    print(f"{'variant':46} {'ms/cycle':>10} {'collect s':>10} {'update s':>10} {'x plain':>8}")
    for name, r in results.items():
        r["description"] = VARIANTS[name][0]
        print(f"{VARIANTS[name][0]:46} {r['ms_per_cycle']:10.0f} {r['collect_s']:10.2f} {r['update_s']:10.2f} "
              f"{r['x_plain']:8.2f}")
    record = {"machine": machine_info(), "model": args.model, "device": args.device,
              "data": str(args.data) if args.data else f"synthetic {args.bars} bars", "cycles": args.cycles, "tiny": args.tiny,
              "max_steps": args.max_steps, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "variants": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
