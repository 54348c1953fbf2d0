"""Flip rates of trained runs under FGSM, PGD and random noise (``himari robustness``), grouped by
variant: the runs ``bench_methods.py`` trained with and without a training method (its JSON
names them), on both evaluation splits (by hand, not a test).

    python benchmarks/bench_robustness.py benchmarks/results/partK-adversarial-baseline-mlp-btc.json \
        --eps 0.01,0.05,0.1 --pgd-steps 10 --out benchmarks/results/partK-robustness-baseline-mlp-btc.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def main() -> None:
    from himari.evaluation.robustness import parse_epsilons
    from himari.training.rundir import write_json
    from himari.training.robustness import robustness

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", help="a bench_methods.py JSON (its runs are measured)")
    p.add_argument("--eps", default="0.01,0.05,0.1")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--splits", default="validation,test")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    bench = json.loads(open(args.bench, encoding="utf-8").read())
    eps = parse_epsilons(args.eps)
    out: dict[str, Any] = {"bench": args.bench, "model": bench["model"], "data": bench["data"],
                           "variant": bench["variant"], "eps": eps, "pgd_steps": args.pgd_steps, "runs": {}}
    for variant, runs in bench["runs"].items():
        for run in runs:
            for split in args.splits.split(","):
                t0 = time.perf_counter()
                r = robustness(run["run_dir"], split=split, epsilons=eps, pgd_steps=args.pgd_steps)
                r["wall_seconds"] = time.perf_counter() - t0
                out["runs"].setdefault(variant, []).append({"seed": run["seed"], **r})
    summary: dict[str, Any] = {}
    print(f"{bench['model']} on {bench['data']}: flip rate (mean ± sd over seeds), PGD {args.pgd_steps} steps")
    print(f"{'variant':8} {'split':10} {'attack':6} " + " ".join(f"{'eps ' + format(e, 'g'):>16}" for e in eps))
    for variant, rows in out["runs"].items():
        for split in args.splits.split(","):
            for attack in ("fgsm", "pgd", "random"):
                cells = []
                for e in eps:
                    f = [x["flip_rate"] for r in rows if r["split"] == split for x in r["results"]
                         if x["attack"] == attack and x["epsilon"] == e]
                    mean, sd = float(np.mean(f)), float(np.std(f, ddof=1)) if len(f) > 1 else 0.0
                    summary.setdefault(variant, {}).setdefault(split, {}).setdefault(attack, {})[str(e)] = \
                        {"flip_rate": mean, "sd": sd, "n": len(f)}
                    cells.append(f"{100 * mean:6.1f}% ± {100 * sd:4.1f}")
                print(f"{variant:8} {split:10} {attack:6} " + " ".join(f"{c:>16}" for c in cells))
    out["summary"] = summary
    write_json(args.out, out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
