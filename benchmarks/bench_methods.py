"""The measured effect of a preprocessor or training method: a model trained with and without it
on the same data and seeds, scored on validation and test after costs (by hand, not a test).

    python benchmarks/bench_methods.py --model baseline-mlp --data prepared/btc --seeds 0,1,2 \
        --preprocess zscore,ekf --baseline-preprocess zscore --out ekf-mlp-btc.json
    python benchmarks/bench_methods.py --model ppo-lstm --data prepared/eth --method online-augment \
        --set ppo-lstm.env_episodes=30 --out aug-ppo-eth.json
    python benchmarks/bench_methods.py --model baseline-mlp --data prepared/btc --augment synth/ \
        --out tab-ddpm-mlp-btc.json     # a synthetic set (himari data augment) added to the train split

Each variant is an ordinary ``himari train`` run (the run directories are kept under
``--runs``); the table gives per variant the mean and spread over seeds of the validation and
test Sharpe, return, trades and action mix, with buy-and-hold on the same splits, and the JSON
every run's numbers and the machine. Fee 0.1% and slippage 0.05% unless ``--set`` says otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import machine_info  # type: ignore[import-not-found]


def train(model: str, data: str, run_dir: Path, seed: int, preprocess: str | None, method: str | None,
          sets: list[str], augment: str | None = None) -> dict[str, Any]:
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    overrides: dict[str, Any] = {"model": model, "data": data, "train.seed": seed}
    if preprocess is not None:
        overrides["preprocess"] = preprocess
    if method:
        overrides["methods"] = method
    if augment:
        overrides["augment"] = augment
    run = merge_run_config(plugins=plugins, overrides=overrides, sets=["train.progress=false", *sets])
    t0 = time.perf_counter()
    summary = Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO())).fit()
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def row(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("sharpe", "total_return", "n_trades")
    out = {k: (float(np.mean([m[k] for m in metrics])), float(np.std([m[k] for m in metrics], ddof=1))
               if len(metrics) > 1 else 0.0) for k in keys}
    out["actions"] = {a: float(np.mean([m["actions"][a] for m in metrics])) for a in ("SELL", "HOLD", "BUY")}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--preprocess", help="the variant's preprocessing (comma-separated)")
    p.add_argument("--baseline-preprocess", help="the baseline's preprocessing (default: the model's)")
    p.add_argument("--method", help="the variant's training methods (comma-separated)")
    p.add_argument("--augment", help="the variant's synthetic set (himari data augment), added to its train split")
    p.add_argument("--set", action="append", default=[], help="run settings for both variants")
    p.add_argument("--variant-set", action="append", default=[],
                   help="run settings for the variant only (its method's or preprocessor's config)")
    p.add_argument("--runs", default="bench-method-runs", help="where the run directories go")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = {"without": (args.baseline_preprocess, None, args.set, None),
                "with": (args.preprocess or args.baseline_preprocess, args.method, [*args.set, *args.variant_set],
                         args.augment)}
    augment_label = f"augment={Path(args.augment).name}" if args.augment else None
    label = ",".join(x for x in (args.preprocess, args.method, augment_label) if x)
    results: dict[str, Any] = {"machine": machine_info(), "model": args.model, "data": args.data, "seeds": seeds,
                               "variant": label, "sets": args.set, "variant_sets": args.variant_set, "runs": {}}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name, (pre, method, sets, augment) in variants.items():
        for seed in seeds:
            run_dir = Path(args.runs) / f"{args.model}-{label.replace(',', '+').replace('=', '-')}-{stamp}" / name / \
                f"seed-{seed}"
            s = train(args.model, args.data, run_dir, seed, pre, method, sets, augment)
            results["runs"].setdefault(name, []).append(
                {"seed": seed, "run_dir": str(run_dir), "seconds": s["wall_seconds"],
                 **{split: {k: s[split]["model"][k] for k in ("sharpe", "total_return", "n_trades", "actions")}
                    for split in ("validation", "test")},
                 "buy_and_hold": {split: s[split]["buy-and-hold"]["sharpe"] for split in ("validation", "test")}})
    print(f"{args.model} on {args.data}, {label} vs without, seeds {args.seeds} (mean ± sd over seeds, after costs)")
    print(f"{'variant':8} {'split':10} {'Sharpe':>15} {'return':>17} {'trades':>9} {'S/H/B %':>10} {'s/run':>7}")
    for name, runs in results["runs"].items():
        for split in ("validation", "test"):
            r = row([x[split] for x in runs])
            results.setdefault("summary", {}).setdefault(name, {})[split] = r
            mix = "/".join(f"{100 * r['actions'][a]:.0f}" for a in ("SELL", "HOLD", "BUY"))
            print(f"{name:8} {split:10} {r['sharpe'][0]:+7.2f} ± {r['sharpe'][1]:5.2f} "
                  f"{100 * r['total_return'][0]:+7.1f}% ± {100 * r['total_return'][1]:5.1f} {r['n_trades'][0]:9,.0f} "
                  f"{mix:>10} {np.mean([x['seconds'] for x in runs]):7.1f}")
    bh = results["runs"]["without"][0]["buy_and_hold"]
    print(f"buy-and-hold Sharpe: validation {bh['validation']:+.2f}, test {bh['test']:+.2f}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
