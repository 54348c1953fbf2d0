"""What the conversational autoencoders do to a real series (by hand, not a test): fit time on the
train split, and on each split the partners' reconstruction error, the agreed reconstruction's
error at the row it is output for, the partners' disagreement, and how the denoised column
relates to the next bar's return compared with the raw return.

    python benchmarks/bench_conversational_ae.py --data /work/data/btc --seeds 0,1,2 \
        --out benchmarks/results/partA-conversational-ae-fit-btc.json
    python benchmarks/bench_conversational_ae.py --data /work/data/btc --set agreement_weight=0 --out ...

The chain is the one ``--preprocess zscore,conversational-ae`` runs (zscore fitted first, its
output fed to the autoencoders); ``--set KEY=VALUE`` changes the plugin's config (YAML values).
Errors are in standardised units (1.0: the error of predicting the train mean).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_common import machine_info  # type: ignore[import-not-found]

NAME = "conversational-ae"


def split_scores(pre: Any, data: Any, features: np.ndarray, names: tuple[str, ...], splits: dict[str, Any],
                 out: np.ndarray) -> dict[str, Any]:
    """Scores of the fitted partners on each split's full windows, and the next-bar correlations."""
    from himari_builtin.preprocessing.conversational_ae.network import scores
    from himari_builtin.preprocessing.conversational_ae.series import series_matrix, standardise, windows

    from himari.plugin.api import filter_ranges, rows_of
    from himari.training.preprocess import transform_view

    cfg, state = pre.config, pre.state_dict()
    view = transform_view(data, features, names, splits, 0)
    parts = filter_ranges(view)  # the runs the transform reads: restarts at gaps, symbols and train starts
    z = standardise(series_matrix(cfg.series, view, parts, cfg.window, "rows"), state["mean"], state["std"], cfg.clip)
    x, full = windows(z, parts, cfg.window)
    close = np.asarray(data.close, dtype=np.float64)
    next_ret = np.full(len(close), np.nan)
    next_ret[:-1] = np.diff(np.log(close))
    col = out[:, features.shape[1]]
    result = {}
    for split in ("train", "validation", "test"):
        rows = rows_of(splits[split])
        rows = rows[full[rows] & np.isfinite(next_ret[rows])]
        s = scores(pre.model, x[rows], cfg.agreement_weight)
        s["output_std"] = float(col[rows].std())
        s["corr_output_target"] = float(np.corrcoef(col[rows], z[rows, 0])[0, 1])
        s["corr_next_return_output"] = float(np.corrcoef(col[rows], next_ret[rows])[0, 1])
        s["corr_next_return_target"] = float(np.corrcoef(z[rows, 0], next_ret[rows])[0, 1])
        if cfg.disagreement:
            s["mean_disagreement_column"] = float(out[rows, features.shape[1] + 1].mean())
        s["windows"] = len(rows)
        result[split] = s
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", default="0,1,2", help="the plugin's seed (weights and shuffling)")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE of the plugin's config")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from himari.data import PreparedData
    from himari.plugin.config import build_config
    from himari.plugin.manager import get_plugins
    from himari.training.preprocess import fit_view, run_preprocessors, transform_view

    plugins = get_plugins()
    spec = plugins.preprocessors().get(NAME)
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    data = PreparedData(args.data)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    zscored, _ = run_preprocessors(data, np.asarray(data.features), ["zscore"],
                                   {"zscore": plugins.preprocessors().get("zscore").config()}, plugins, splits)
    names = tuple(data.feature_names)
    results: dict[str, Any] = {"machine": machine_info(), "data": args.data, "sets": sets, "runs": []}
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = build_config(spec.config, {**sets, "seed": seed}, f"plugins.{NAME}")
        pre = spec.factory(cfg)
        t0 = time.perf_counter()
        pre.fit(fit_view(data, zscored, names, splits, seed))
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = pre.transform(transform_view(data, zscored, names, splits, seed))
        transform_seconds = time.perf_counter() - t0
        metrics = pre.state_dict()["metrics"]
        run = {"seed": seed, "fit_seconds": fit_seconds, "transform_seconds": transform_seconds,
               "rounds": metrics["rounds"], "best_round": metrics["best_round"], "holdout": metrics["holdout"],
               "splits": split_scores(pre, data, zscored, names, splits, out)}
        results["runs"].append(run)
        v = run["splits"]["validation"]
        print(f"seed {seed}: fit {fit_seconds:.1f}s ({metrics['rounds']} rounds, best {metrics['best_round']}), "
              f"validation recon {v['recon_mse']:.3f} endpoint {v['endpoint_mse']:.3f} "
              f"disagreement {v['disagreement']:.5f} partner corr {v['partner_corr']:.3f} "
              f"corr(next return): output {v['corr_next_return_output']:+.4f} raw {v['corr_next_return_target']:+.4f}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
