"""``himari data prepare``: bars in, a directory of memory-mappable arrays out.

Output directory (written atomically: built under a temporary name, then renamed into place):

| file | dtype, shape | content |
| --- | --- | --- |
| ``features.npy`` | float32 [N, 60] | the default features; rows before each symbol's warm-up are 0 |
| ``labels.npy`` | int8 [N] | SELL=0 / HOLD=1 / BUY=2, -1 where undefined (end of a series) |
| ``targets.npy`` | float32 [N] | the labeler's continuous forward measure (NaN where undefined) |
| ``open.npy``, ``high.npy``, ``low.npy``, ``close.npy`` | float64 [N] | prices for the env, offline rewards and preprocessors |
| ``volume.npy`` | float64 [N] | volume |
| ``timestamps.npy`` | int64 [N] | bar open time, ns since the epoch (UTC) |
| ``metadata.json`` | | everything needed to use and to reproduce the arrays |

Several symbols are stacked one after another (``segments`` in the metadata).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from himari.data.atomic import atomic_directory
from himari.data.features import FEATURE_DIM, FEATURE_NAMES, FEATURES, WARMUP, compute_features
from himari.data.frame import symbols_of, ts_ns
from himari.data.ingest import LoadedBars, read_bars
from himari.data.intervals import bars_per_year, format_interval
from himari.data.labels import check_label_params, label_distribution, make_labels
from himari.data.outputs import check_directory_output
from himari.data.splits import Segment, check_fractions, check_split_dates, chronological_split, walk_forward_folds
from himari.errors import DataError

PREPARED_FORMAT = "himari-prepared"
PREPARED_VERSION = 2
"""2: high, low and volume are kept (preprocessors see whole bars); no normalisation statistics
(the ``zscore`` preprocessor fits them on a run's train split)."""
ARRAY_FILES = {
    "features": "features.npy",
    "labels": "labels.npy",
    "targets": "targets.npy",
    "open": "open.npy",
    "high": "high.npy",
    "low": "low.npy",
    "close": "close.npy",
    "volume": "volume.npy",
    "timestamps": "timestamps.npy",
}


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` computes. Defaults: forward-return labels, 70/15/15 split."""

    labeler: str = "forward-return"
    """A name from ``himari.data.labels.LABELERS``."""
    label_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the labeler (missing ones take the labeler's defaults)."""
    train: float = 0.7
    """Fraction of the usable rows (after warm-up) in the train split."""
    validation: float = 0.15
    """Fraction in the validation split; the test split gets the rest."""
    split_dates: tuple[str, str] | None = None
    """Instead of fractions: validation and test start dates (UTC)."""
    embargo: int | None = None
    """Rows dropped before each split boundary; default and minimum: the label's lookahead."""
    folds: int = 0
    """Also compute this many walk-forward folds (0: none)."""
    fold_mode: str = "expanding"
    """``expanding`` or ``rolling`` training windows for the folds."""
    symbols: tuple[str, ...] | None = None
    """Only these symbols of a multi-symbol bars file."""


def _sanitize_features(feats: np.ndarray, symbol: str, timestamps: np.ndarray) -> np.ndarray:
    """float32 row-major copy; warm-up rows -> 0; a non-finite value after warm-up is an error."""
    out = np.empty(feats.shape, dtype=np.float32)
    block = 16384
    for i in range(0, len(feats), block):  # blocked transpose-copy of the column-major result
        out[i: i + block] = feats[i: i + block]
    warm = min(WARMUP, len(out))
    out[:warm] = 0.0
    post = out[warm:]
    bad = ~np.isfinite(post)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        import pandas as pd

        when = pd.Timestamp(int(timestamps[warm + i]), tz="UTC").isoformat()
        raise DataError(f"{symbol}: feature '{FEATURE_NAMES[j]}' is not finite at bar {warm + i} ({when})")
    return out


def check_prepare_config(config: PrepareConfig) -> dict[str, Any]:
    """Everything about the configuration that can be checked without data; returns the
    labeler's full, validated parameters."""
    params = check_label_params(config.labeler, dict(config.label_params))
    if config.split_dates is None:
        check_fractions(config.train, config.validation)
    else:
        check_split_dates(config.split_dates)
    folds = config.folds
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 0:
        raise DataError(f"folds (--folds): must be an integer >= 0, got {folds!r}")
    if config.fold_mode not in ("expanding", "rolling"):
        raise DataError(f"fold mode (--fold-mode): expected 'expanding' or 'rolling', got {config.fold_mode!r}")
    emb = config.embargo
    if emb is not None and (isinstance(emb, bool) or not isinstance(emb, (int, np.integer)) or emb < 0):
        raise DataError(f"embargo (--embargo): must be an integer >= 0, got {config.embargo!r}")
    return params


def _check_labelled_train(labels: np.ndarray, train: list[tuple[int, int]], folds: list[dict[str, Any]],
                          labeler: str, params: dict[str, Any]) -> None:
    """Refuse labels that leave a training range without a single labelled row.

    Supervised models learn from the train split's labelled rows, label-driven behaviour
    policies and generators read them too; a data set whose train rows are all undefined (-1),
    e.g. a volatility window longer than the series, would only fail later, in every run.
    """
    blocks = [("the train split", train)] + [(f"the train block of fold {i}", f["train"]) for i, f in enumerate(folds)]
    for what, ranges in blocks:
        rows = sum(b - a for a, b in ranges)
        if not any((labels[a:b] >= 0).any() for a, b in ranges):
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            knobs = " or ".join(f"--{k.replace('_', '-')}" for k in ("vol_window", "horizon") if k in params)
            raise DataError(f"labels: the {labeler} labeler ({shown}) labels none of the {rows:,} rows of {what} "
                            "(a row without a known future or volatility estimate gets no label); use "
                            f"{'a smaller ' + knobs + ', or ' if knobs else ''}more bars")


def _input_paths(bars: str | os.PathLike[str] | LoadedBars) -> list[Path]:
    """The files a prepare reads, which its output must never contain."""
    if isinstance(bars, LoadedBars):
        return [Path(s["path"]) for s in bars.sources if s.get("path")]
    return [Path(bars)]


def check_prepare_output(out: str | os.PathLike[str], inputs: list[Path] | None = None, *,
                         force: bool = False) -> Path:
    """Whether ``prepare`` may write ``out`` (see ``himari.data.outputs``); returns it resolved."""
    return check_directory_output(out, inputs or [], format_name=PREPARED_FORMAT,
                                  allowed_files=ARRAY_FILES.values(), force=force)


def prepare(bars: str | os.PathLike[str] | LoadedBars, out: str | os.PathLike[str],
            config: PrepareConfig | None = None, *, force: bool = False) -> dict[str, Any]:
    """Compute features, labels and splits; write the directory; return metadata.

    The configuration and the output are checked before anything is read, and the splits and
    folds before the (expensive) features. ``out`` must be new or empty; an existing prepared
    directory is replaced only with ``force`` (never a directory holding anything else, an
    input, or the working directory).
    """
    config = config or PrepareConfig()
    label_params = check_prepare_config(config)
    inputs = _input_paths(bars)
    target = check_prepare_output(out, inputs, force=force)
    t0 = time.perf_counter()
    loaded = bars if isinstance(bars, LoadedBars) else read_bars(bars, import_options=False)
    frame = loaded.frame
    symbols = symbols_of(frame)
    if config.symbols:
        missing = [s for s in config.symbols if s not in symbols]
        if missing:
            raise DataError(f"symbol(s) {', '.join(missing)} not in the bars (have {', '.join(symbols)})")
        symbols = [s for s in symbols if s in config.symbols]

    single = len(symbols_of(frame)) == 1
    seg_frames, segments, start = [], [], 0
    for sym in symbols:
        seg = frame if single else frame[frame["symbol"] == sym]
        if len(seg) <= WARMUP + 1:
            raise DataError(f"{sym}: {len(seg)} bars, but the features need a warm-up of {WARMUP} bars "
                            f"and at least one bar after it")
        seg_frames.append(seg)
        segments.append(Segment(sym, start, start + len(seg), start + WARMUP))
        start += len(seg)

    # labels and splits first: they are cheap, and a split or fold that cannot work must fail
    # before the features are computed
    label_results = []
    for seg in seg_frames:
        o, h, l, c = (seg[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
        label_results.append(make_labels(config.labeler, o, h, l, c, **label_params))
    label_result = label_results[-1]
    lookahead = label_result.lookahead
    embargo = lookahead if config.embargo is None else int(config.embargo)
    if embargo < lookahead:
        raise DataError(f"embargo: {embargo} rows is less than the label's lookahead of {lookahead} bars "
                        "(labels of one split would see prices of the next)")
    timestamps = np.concatenate([ts_ns(seg["timestamp"]) for seg in seg_frames])
    splits = chronological_split(timestamps, segments, train=config.train, validation=config.validation,
                                 dates=config.split_dates, embargo=embargo)
    folds = (walk_forward_folds(timestamps, segments, n_folds=config.folds, mode=config.fold_mode,  # type: ignore[arg-type]
                                embargo=embargo) if config.folds else [])
    labels = np.concatenate([r.labels for r in label_results])
    _check_labelled_train(labels, splits["train"], folds, label_result.name, label_result.params)

    feature_parts = []
    for sym, seg, s in zip(symbols, seg_frames, segments, strict=True):
        o, h, l, c, v = (seg[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
        # extreme prices overflow to inf or NaN here; _sanitize_features refuses any such value
        # after the warm-up with a message naming it, so numpy's warnings would only add noise
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            feats = compute_features(o, h, l, c, v, timestamps[s.start: s.stop])
        feature_parts.append(_sanitize_features(feats, sym, timestamps[s.start: s.stop]))
    features = np.concatenate(feature_parts) if len(feature_parts) > 1 else feature_parts[0]
    targets = np.concatenate([r.target for r in label_results])
    bars_out = {k: np.concatenate([seg[k].to_numpy(dtype=np.float64) for seg in seg_frames])
                for k in ("open", "high", "low", "close", "volume")}

    usable = np.zeros(len(labels), dtype=bool)
    for s in segments:
        usable[s.first: s.stop] = True

    def dist(ranges: list[tuple[int, int]]) -> dict[str, int]:
        if not ranges:
            return label_distribution(np.zeros(0, np.int8))
        return label_distribution(np.concatenate([labels[a:b] for a, b in ranges]))

    import pandas as pd

    def iso(ns: int) -> str:
        return pd.Timestamp(int(ns), tz="UTC").isoformat().replace("+00:00", "Z")

    from himari import __version__

    meta: dict[str, Any] = {
        "format": PREPARED_FORMAT,
        "version": PREPARED_VERSION,
        "himari_version": __version__,
        "created_at": iso(time.time_ns()),
        "symbols": symbols,
        "segments": [asdict(s) for s in segments],
        "num_samples": int(len(labels)),
        "num_labeled": int((usable & (labels >= 0)).sum()),
        "feature_dim": FEATURE_DIM,
        "feature_names": list(FEATURE_NAMES),
        "feature_groups": [f.group for f in FEATURES],
        "warmup": WARMUP,
        "interval": format_interval(loaded.interval_seconds),
        "interval_seconds": loaded.interval_seconds,
        "bars_per_year": bars_per_year(loaded.interval_seconds),
        "span": {"start": iso(timestamps.min()), "end": iso(timestamps.max())},
        "labeler": {"name": label_result.name, "params": label_result.params, "lookahead": lookahead},
        "label_distribution": label_distribution(labels[usable]),
        "label_distribution_by_split": {k: dist(v) for k, v in splits.items()},
        "embargo": embargo,
        "splits": {k: [list(r) for r in v] for k, v in splits.items()},
        "split_rule": ({"dates": list(config.split_dates)} if config.split_dates else
                       {"train": config.train, "validation": config.validation}),
        "folds": [{k: [list(r) for r in v] for k, v in f.items()} for f in folds],
        "fold_mode": config.fold_mode if folds else None,
        "sources": [{"path": s.get("path"), "name": s.get("name"), "sha256": s.get("sha256"),
                     "format": s.get("format")} for s in loaded.sources],
        "files": dict(ARRAY_FILES),
        "data_report": loaded.report.to_dict(),
    }
    with atomic_directory(target, replace=force) as tmp:
        np.save(tmp / ARRAY_FILES["features"], features)
        np.save(tmp / ARRAY_FILES["labels"], labels.astype(np.int8))
        np.save(tmp / ARRAY_FILES["targets"], targets.astype(np.float32))
        for k, arr in bars_out.items():
            np.save(tmp / ARRAY_FILES[k], arr)
        np.save(tmp / ARRAY_FILES["timestamps"], timestamps.astype(np.int64))
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def cache_dir() -> Path:
    """Where synthesised and prepared defaults live: $HIMARI_CACHE_DIR or ~/.cache/himari."""
    env = os.environ.get("HIMARI_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "himari"


def default_prepared_dataset(*, bars: int = 200_000, seed: int = 0, labeler: str = "forward-return",
                             label_params: dict[str, Any] | None = None,
                             cache: str | os.PathLike[str] | None = None, refresh: bool = False) -> Path:
    """The offline default data set: synthesise ``bars`` seeded bars and prepare them, once.

    Returns the prepared directory inside the cache (reused when it exists with the same
    parameters and format version), so every command can run on a fresh install without data.
    """
    from himari.data.synthetic import SynthConfig, write_synthetic

    params = dict(label_params or {})
    key = json.dumps({"bars": bars, "seed": seed, "labeler": labeler, "params": params,
                      "version": PREPARED_VERSION, "features": list(FEATURE_NAMES)}, sort_keys=True)
    import hashlib

    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    root = Path(cache) if cache is not None else cache_dir()
    out = root / "prepared" / f"synth-{bars}-{seed}-{digest}"
    if (out / "metadata.json").exists() and not refresh:
        return out
    bars_path = root / "bars" / f"synth-{bars}-{seed}.parquet"
    if not bars_path.exists() or refresh:
        write_synthetic(bars_path, SynthConfig(bars=bars, seed=seed))
    # force: a refresh replaces the cache entry (prepare still refuses anything but prepared data)
    prepare(bars_path, out, PrepareConfig(labeler=labeler, label_params=params), force=True)
    return out


def resolve_prepared(data: str | os.PathLike[str] | None, **prepare_kwargs: Any) -> Path:
    """What a command's ``--data`` means: None -> the synthetic default; a prepared directory
    -> itself; a bars file (any importable format) -> prepared once into the cache."""
    if data is None:
        return default_prepared_dataset()
    p = Path(data)
    if p.is_dir():
        if not (p / "metadata.json").exists():
            raise DataError(f"{p}: not a prepared data directory (no metadata.json); run himari data prepare")
        return p
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    from himari.data.readers import file_sha256

    out = cache_dir() / "prepared" / f"{p.name}-{file_sha256(p)[:10]}-v{PREPARED_VERSION}"
    if not (out / "metadata.json").exists():
        prepare(p, out, PrepareConfig(**prepare_kwargs), force=True)
    return out
