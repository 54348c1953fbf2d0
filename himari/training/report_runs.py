"""The targets of ``himari report``: run directories scored on a split, evaluation directories read.

A run directory is scored as ``himari backtest`` scores it: its best checkpoint and saved
preprocessing act on a split of its data (or of ``data``), with the run's own costs; its per-bar
series and buy-and-hold's on the same bars are what the report draws. Each range of the split (one
per symbol) is a row of its fold table. An evaluation directory is read as it is
(``himari.evaluation.html_report.load_evaluation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError, DataError
from himari.evaluation.html_report import FoldRow, ReportTarget, is_evaluation_dir, load_evaluation
from himari.evaluation.policy import baseline_actions, evaluate_actions, judged_on_decisions
from himari.evaluation.series import per_bar

SPLITS = ("train", "validation", "test")


def _time(timestamps: Any, row: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(timestamps[row]), unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M")


def score_run(run_dir: str | Path, *, data: str | None = None, split: str = "test",
              label: str | None = None) -> ReportTarget:
    """The ``ReportTarget`` of a trained run on ``split`` of its data (or of ``data``): the run's
    own ranges when it trained on ranges of its own on that data (a walk-forward fold's test block,
    as ``himari backtest`` scores it), else the data set's split."""
    from himari.data import PreparedData, resolve_prepared
    from himari.training.assemble import load_trained
    from himari.training.device import scoring_device

    policy = load_trained(run_dir, device=scoring_device(run_dir))  # where its evaluation scored it
    prepared = PreparedData(resolve_prepared(data if data is not None else policy.run.data))
    if data is None:
        from himari.training.data_identity import check_same_data

        check_same_data(run_dir, prepared, f"to score the run on it all the same, pass --data {prepared.path}")
    ranges = [tuple(r) for r in policy.splits_of(prepared)[split]]
    if not ranges or sum(b - a for a, b in ranges) == 0:
        raise DataError(f"split {split!r} of {prepared.path} is empty")
    env = policy.run.env
    bpy = float(prepared.metadata.get("bars_per_year", 105_120))
    o, c, ts = prepared.open, prepared.close, prepared.timestamps
    # Range by range (each is traded from flat either way), counting the model's own decisions:
    # collapse is judged on them, as backtest and the run's summary judge it, not on the HOLDs a
    # decision interval, holding period or confidence threshold imposed.
    counts = [np.zeros(3, dtype=np.int64) for _ in ranges]
    actions = np.concatenate([np.asarray(policy.actions(prepared, [r], decision_counts=k))
                              for r, k in zip(ranges, counts)])
    hold = baseline_actions("buy-and-hold", ranges)
    summary = judged_on_decisions(evaluate_actions(o, c, ranges, actions, env, bpy), sum(counts))
    summary["buy_and_hold"] = evaluate_actions(o, c, ranges, hold, env, bpy)
    folds, mixes, offset = [], [], 0
    for k, (a, b) in enumerate(ranges):
        n = b - a
        fold = split if len(ranges) == 1 else f"{split} {k}"
        m = judged_on_decisions(evaluate_actions(o, c, [(a, b)], actions[offset:offset + n], env, bpy), counts[k])
        bh = evaluate_actions(o, c, [(a, b)], hold[offset:offset + n], env, bpy)
        offset += n
        folds.append(FoldRow(fold, _time(ts, a), _time(ts, b - 1), "model", m, bh))
        mixes.append((fold, m["actions"]))
    bars = sum(b - a for a, b in ranges)
    return ReportTarget(
        label=label or str(run_dir), kind="run", model=policy.name, data=str(prepared.path),
        scope=f"{split} split, {bars:,} bars", models={"model": per_bar(o, c, ts, ranges, actions, env)},
        baselines={"buy-and-hold": per_bar(o, c, ts, ranges, hold, env)}, summary=summary, folds=folds,
        fold_actions=mixes, costs={"fee": env.fee, "slippage": env.slippage})


def target_kind(target: str) -> str:
    """``evaluation`` or ``run``; a ``ConfigError`` naming the path for anything else."""
    from himari.training import rundir

    p = Path(target)
    if not p.exists():
        raise ConfigError(f"{target}: no such directory")
    if not p.is_dir():
        raise ConfigError(f"{target}: a file; expected a run directory ({rundir.CONFIG}) or an evaluation "
                          f"directory (evaluation.json)")
    if is_evaluation_dir(p):
        return "evaluation"
    if rundir.is_run_dir(p):
        return "run"
    raise ConfigError(f"{target}: neither a run directory (no {rundir.CONFIG}) nor an evaluation directory "
                      f"(no evaluation.json)")


def data_read_by(targets: Sequence[str], data: str | None = None) -> list[str]:
    """The data sets a report of ``targets`` reads: ``data`` when given, else each run
    directory's own (from its ``config.yaml``), so that ``--out`` can be refused before scoring
    when it would write over one of them. A target that cannot be read adds nothing here: loading
    it fails with its own message."""
    if data is not None:
        return [data]
    import yaml

    from himari.training import rundir

    found = []
    for t in targets:
        try:
            cfg = yaml.safe_load((Path(t) / rundir.CONFIG).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict) and isinstance(cfg.get("data"), str) and cfg["data"].strip():
            found.append(cfg["data"])
    return found


def load_targets(targets: Sequence[str], *, data: str | None = None, split: str | None = None) -> list[ReportTarget]:
    """Every target of a report, each checked before any is loaded (a typo fails at once, not
    after minutes of scoring). ``data`` and ``split`` choose what run directories are scored on;
    an evaluation directory is already scored, so they are refused when no run needs them."""
    if not targets:
        raise ConfigError("give at least one run directory or evaluation directory")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    seen: set[str] = set()
    for t in targets:
        key = str(Path(t).resolve())
        if key in seen:
            raise ConfigError(f"{t}: given twice")
        seen.add(key)
    kinds = [target_kind(t) for t in targets]
    if "run" not in kinds:
        for option, value in (("--data", data), ("--split", split)):
            if value is not None:
                raise ConfigError(f"{option}: only run directories are scored on a data set and split; "
                                  f"evaluation directories carry their own")
    return [load_evaluation(t, label=t) if kind == "evaluation" else
            score_run(t, data=data, split=split or "test", label=t) for t, kind in zip(targets, kinds)]
