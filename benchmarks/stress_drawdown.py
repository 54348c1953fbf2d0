"""Drawdown on a held-out stress set with and without ``rare-events`` (by hand, not a test).

    python benchmarks/stress_drawdown.py --model baseline-mlp --data prepared/btc --seeds 0,1,2 \
        --out stress-mlp-btc.json

For each seed a model is trained without and with ``--method rare-events`` (same seed, same
settings); both are then scored on the validation split as it is and on the stress set
``rare-events`` builds from the validation period (its events at ``stress_rate``, sized by the
calibration on the train split, a generator fixed by the seed: both variants of a seed see the
same stress set). The table gives Sharpe, return and max drawdown per variant (mean and spread
over seeds); the JSON every run's numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info  # type: ignore[import-not-found]


def run(model: str, data: str, run_dir: Path, seed: int, method: bool, sets: list[str]) -> dict[str, Any]:
    from rich.console import Console

    from himari.plugin.manager import get_plugins
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer
    from himari_builtin.training.rare_events import RareEvents

    plugins = get_plugins()
    overrides: dict[str, Any] = {"model": model, "data": data, "train.seed": seed}
    if method:
        overrides["methods"] = "rare-events"
    run_config = merge_run_config(plugins=plugins, overrides=overrides, sets=["train.progress=false", *sets])
    trainer = Trainer(run_config, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO()))
    trainer.fit()
    config = run_config.plugin_configs.get("rare-events") or plugins.training_methods().get("rare-events").config()
    return RareEvents(config).after_training(trainer.policy(), trainer.ctx)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="baseline-mlp")
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--set", action="append", default=[], help="run settings for both variants")
    p.add_argument("--runs", default="bench-stress-runs")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out: dict[str, Any] = {"machine": machine_info(), "model": args.model, "data": args.data, "seeds": seeds,
                           "sets": args.set, "runs": {}}
    for name in ("without", "with"):
        for seed in seeds:
            rd = Path(args.runs) / f"{args.model}-stress-{stamp}" / name / f"seed-{seed}"
            out["runs"].setdefault(name, []).append({"seed": seed, **run(args.model, args.data, rd, seed,
                                                                           name == "with", args.set)})
    print(f"{args.model} on {args.data}: validation and its stress set, without / with rare-events "
          f"(mean ± sd over seeds {args.seeds})")
    print(f"{'variant':8} {'set':11} {'Sharpe':>15} {'return':>16} {'max drawdown':>16}")
    for name, runs in out["runs"].items():
        for which in ("validation", "stress"):
            cells = []
            for k, pct in (("sharpe", False), ("total_return", True), ("max_drawdown", True)):
                v = np.array([r[which][k] for r in runs]) * (100 if pct else 1)
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                cells.append(f"{v.mean():+8.2f}{'%' if pct else ''} ± {sd:5.2f}")
            print(f"{name:8} {which:11} " + " ".join(f"{c:>16}" for c in cells))
    print(f"stress events per seed: {[r['stress_events'] for r in out['runs']['with']]}")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
