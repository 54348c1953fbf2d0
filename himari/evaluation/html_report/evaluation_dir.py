"""Reading an evaluation directory (what ``himari evaluate`` writes) into a ``ReportTarget``.

The layout: ``evaluation.json`` (format ``himari-evaluation``, version 1: folds, the chained
walk-forward metrics, statistics, gates) and ``series/<strategy>.parquet``, the per-bar tables
of every strategy chained over the out-of-sample folds. Only that format and version are read:
anything else is refused with a ``DataError`` naming the file, rather than drawn wrongly. The
optional parts (``cpcv``, the ``pbo`` statistic) may be null.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from himari.errors import DataError
from himari.evaluation.evaluation_file import EVALUATION_FORMAT as FORMAT
from himari.evaluation.evaluation_file import EVALUATION_RESULT as FILE
from himari.evaluation.html_report.target import BUY_AND_HOLD, FoldRow, ReportTarget, strategy_label
from himari.evaluation.series import COLUMNS

VERSION = 1


def is_evaluation_dir(path: str | Path) -> bool:
    return (Path(path) / FILE).is_file()


def _require(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: missing key '{where}{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{path}: '{where}{key}' must be {names.replace('dict', 'an object').replace('list', 'a list')}"
                        f", got {json.dumps(value)[:60]}")
    return value


def read_evaluation_json(directory: str | Path) -> dict[str, Any]:
    """The parsed ``evaluation.json`` of ``directory``, checked for its format and version and
    for the keys a report reads."""
    path = Path(directory) / FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{path}: format {found!r} is not {FORMAT!r}; not an evaluation that himari report reads")
    if doc.get("version") != VERSION:
        raise DataError(f"{path}: {FORMAT} version {doc.get('version')!r} is not supported (this himari reads "
                        f"version {VERSION}); use the himari that wrote it")
    for key, kind in (("model", str), ("data", str), ("folds", list), ("walk_forward", dict),
                      ("statistics", dict), ("gates", list), ("series", dict)):
        _require(doc, key, kind, "", path)
    wf = doc["walk_forward"]
    for key in ("seeds", "mean", "std", "baselines"):
        _require(wf, key, dict, "walk_forward.", path)
    for i, fold in enumerate(doc["folds"]):
        where = f"folds[{i}]."
        _require(fold, "fold", int, where, path)
        span = _require(fold, "test_span", dict, where, path)
        for k in ("start", "end"):
            _require(span, k, str, where + "test_span.", path)
        for seed, run in _require(fold, "runs", dict, where, path).items():
            _require(run, "metrics", dict, f"{where}runs.{seed}.", path)
        _require(fold, "baselines", dict, where, path)
    for i, gate in enumerate(doc["gates"]):
        for key, kind in (("name", str), ("threshold", (int, float)), ("value", (int, float, type(None))),
                          ("passed", bool), ("description", str)):
            _require(gate, key, kind, f"gates[{i}].", path)
    if doc.get("cpcv") is not None:
        _require(doc, "cpcv", dict, "", path)
    return doc


def _read_series(directory: Path, name: str, relative: Any) -> Any:
    import pandas as pd

    if not isinstance(relative, str):
        raise DataError(f"{directory / FILE}: 'series.{name}' must be a path, got {json.dumps(relative)[:60]}")
    path = directory / relative
    if not path.resolve().is_relative_to(directory.resolve()):
        raise DataError(f"{directory / FILE}: 'series.{name}' ({relative}) is outside the evaluation directory")
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing (evaluation.json lists it as the series of {name!r})") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: not a per-bar series (missing columns {', '.join(missing)})")
    if table.empty:
        raise DataError(f"{path}: the series of {name!r} has no bars")
    return table[list(COLUMNS)]


def _seed_key(seed: str) -> tuple[int, str]:
    return (int(seed), seed) if seed.lstrip("-").isdigit() else (1 << 30, seed)


def _short_time(text: str) -> str:
    import pandas as pd

    try:
        return pd.Timestamp(text).strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return text


_OTHER_CONFIGURATION = re.compile(r"c\d+-seed-\d+$")
"""A series of a grid's configuration (``c3-seed-1``)."""


def load_evaluation(directory: str | Path, label: str | None = None) -> ReportTarget:
    """The ``ReportTarget`` of an evaluation directory: its chained series (models are the
    strategies named ``model-...``, the rest are baselines), the walk-forward mean and spread
    over seeds for the leaderboard, one fold-table row per fold and seed, the gates and the
    statistics."""
    directory = Path(directory)
    doc = read_evaluation_json(directory)
    models: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    chosen = (doc.get("config") or {}).get("chosen") if isinstance(doc.get("config"), dict) else None
    for name, relative in doc["series"].items():
        if name.startswith("model"):
            models[name] = _read_series(directory, name, relative)
        elif isinstance(chosen, str) and name.startswith(f"{chosen}-seed-"):  # a grid: the configuration judged
            models["model-" + name[len(chosen) + 1:]] = _read_series(directory, name, relative)
        elif not _OTHER_CONFIGURATION.match(name):  # the other configurations' series stay in the files
            baselines[name] = _read_series(directory, name, relative)
    if not models:
        raise DataError(f"{directory / FILE}: 'series' lists no model strategy (model-seed-<seed>)")
    folds: list[FoldRow] = []
    fold_actions: list[tuple[str, dict[str, float]]] = []
    for fold in doc["folds"]:
        span = fold["test_span"]
        start, end = _short_time(span["start"]), _short_time(span["end"])
        bh = fold["baselines"].get(BUY_AND_HOLD)
        mixes = []
        for seed in sorted(fold["runs"], key=_seed_key):
            metrics = fold["runs"][seed]["metrics"]
            folds.append(FoldRow(str(fold["fold"]), start, end, f"seed {seed}", metrics, bh))
            if isinstance(metrics.get("actions"), dict):
                mixes.append(metrics["actions"])
        if mixes:
            fold_actions.append((f"fold {fold['fold']}", {a: sum(float(m.get(a, 0.0)) for m in mixes) / len(mixes)
                                                          for a in ("SELL", "HOLD", "BUY")}))
    wf = doc["walk_forward"]
    summary = dict(wf["mean"])
    seeds = wf["seeds"]
    summary["collapsed"] = any(bool(m.get("collapsed")) for m in seeds.values() if isinstance(m, dict))
    summary["buy_and_hold"] = wf["baselines"].get(BUY_AND_HOLD)
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    costs = {k: config[k] for k in ("fee", "slippage") if isinstance(config.get(k), (int, float))} or None
    n_seeds = len(seeds) or len(models)
    return ReportTarget(
        label=label or str(directory), kind="evaluation", model=doc["model"], data=doc["data"],
        scope=f"walk-forward, {len(doc['folds'])} folds x {n_seeds} seed{'s' if n_seeds != 1 else ''}",
        models=dict(sorted(models.items(), key=lambda kv: _seed_key(strategy_label(kv[0]).removeprefix("seed ")))),
        baselines=baselines, summary=summary,
        summary_std={k: float(v) for k, v in wf["std"].items() if isinstance(v, (int, float))},
        folds=folds, fold_actions=fold_actions, gates=list(doc["gates"]), statistics=doc["statistics"],
        cpcv=doc.get("cpcv"), costs=costs)
