"""Running a run's preprocessors: fit on the train rows only, transform every row, and keep
their state with the run (JSON beside NumPy/torch arrays), so a resumed run and a backtest
transform exactly as the training did.

What a preprocessor sees is a ``PreprocessData``: features, the prepared bars of the same rows,
the contiguous segments (a filter restarts at each: a missing bar or another symbol breaks the
series) and the split ranges. ``fit`` is handed the train rows alone, so a preprocessor cannot
fit on validation or test data even by mistake; ``transform`` gets every row.

State files in a run directory: ``preprocessing.json`` (per preprocessor: name, output column
names and its state with arrays replaced by references) and, when any state holds arrays,
``preprocessing.npz`` (the arrays, read back with ``allow_pickle=False``) whose SHA-256 the JSON
records and loading verifies.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError
from himari.plugin.api import Bars, PreprocessData

JSON_FILE = "preprocessing.json"
ARRAYS_FILE = "preprocessing.npz"
_REF = "__himari_array__"


# ------------------------------------------------------------------------ what a call sees


def contiguous_segments(data: Any) -> list[tuple[int, int]]:
    """``[a, b)`` runs of prepared rows of one symbol with no missing bar between neighbours."""
    ts = np.asarray(data.timestamps, dtype=np.int64)
    step = int(data.metadata.get("interval_seconds", 0)) * 1_000_000_000
    out: list[tuple[int, int]] = []
    for seg in data.segments:
        a, b = int(seg.start), int(seg.stop)
        if b <= a:
            continue
        gaps = np.flatnonzero(np.diff(ts[a:b]) != step) + 1 if step else np.zeros(0, np.int64)
        cuts = [a, *(a + int(g) for g in gaps), b]
        out.extend((x, y) for x, y in zip(cuts[:-1], cuts[1:]) if y > x)
    return out


def _intersect(ranges: list[tuple[int, int]], segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, b in ranges:
        for s, e in segments:
            lo, hi = max(a, s), min(b, e)
            if hi > lo:
                out.append((lo, hi))
    return sorted(out)


def _local(ranges: list[tuple[int, int]], rows: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Prepared-row ranges as positions among ``rows`` (sorted, each range wholly inside)."""
    starts = np.searchsorted(rows, [a for a, _ in ranges])
    return tuple((int(s), int(s + (b - a))) for s, (a, b) in zip(starts, ranges))


def bars_of(data: Any, rows: np.ndarray | slice) -> Bars:
    return Bars(open=np.asarray(data.open[rows], dtype=np.float64), high=np.asarray(data.high[rows], dtype=np.float64),
                low=np.asarray(data.low[rows], dtype=np.float64), close=np.asarray(data.close[rows], dtype=np.float64),
                volume=np.asarray(data.volume[rows], dtype=np.float64),
                timestamps=np.asarray(data.timestamps[rows], dtype=np.int64))


def fit_view(data: Any, features: np.ndarray, names: tuple[str, ...], splits: dict[str, list[tuple[int, int]]],
             seed: int) -> PreprocessData:
    """The train rows only: features, bars and the train ranges cut at gaps and symbols."""
    train = _intersect(list(splits["train"]), contiguous_segments(data))
    rows = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in train]) if train else np.zeros(0, np.int64)
    segs = _local(train, rows)
    return PreprocessData(features=np.ascontiguousarray(features[rows]), feature_names=names,
                          bars=bars_of(data, rows), rows=rows, segments=segs, splits={"train": segs},
                          interval_seconds=int(data.metadata.get("interval_seconds", 0)), seed=seed)


def transform_view(data: Any, features: np.ndarray, names: tuple[str, ...],
                   splits: dict[str, list[tuple[int, int]]], seed: int) -> PreprocessData:
    """Every prepared row (positions are prepared rows)."""
    n = len(features)
    return PreprocessData(features=features, feature_names=names, bars=bars_of(data, slice(0, n)),
                          rows=np.arange(n, dtype=np.int64), segments=tuple(contiguous_segments(data)),
                          splits={k: tuple((int(a), int(b)) for a, b in v) for k, v in splits.items()},
                          interval_seconds=int(data.metadata.get("interval_seconds", 0)), seed=seed)


# ------------------------------------------------------------------------ helpers for preprocessors


def filter_ranges(data: PreprocessData) -> list[tuple[int, int]]:
    """Where a causal filter or trailing window over ``data``'s rows restarts: ``data.segments``
    cut at the first row of every train range, as ``[a, b)`` positions among its rows.

    The segment cut keeps a gap or another symbol from carrying state across. The train cut is
    what "fitted on the train split only" asks of a filter: the train rows' outputs come from
    train bars alone (the rows before the train split, the prepared data's feature warm-up, never
    reach them), exactly as ``fit``, which sees the train rows only, computes them. Rows after a
    train range (validation, test) continue from the rows before them, as a filter running live
    would: that reads the past only, so it stays causal.
    """
    starts = sorted({int(a) for a, _ in data.splits.get("train", ())})
    out: list[tuple[int, int]] = []
    for a, b in data.segments:
        cuts = [int(a), *(s for s in starts if a < s < b), int(b)]
        out.extend((x, y) for x, y in zip(cuts[:-1], cuts[1:]) if y > x)
    return out


def require_finite(method: str, values: np.ndarray, data: PreprocessData, what: str) -> None:
    """Refuse NaN or infinite ``values`` (``[n]``, or ``[n, F]`` features, rows of ``data``) with
    a ``DataError`` naming the method, the prepared row and, for features, the column."""
    from himari.errors import DataError

    bad = ~np.isfinite(values)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
    row = int(data.rows[i]) if len(data.rows) > i else i
    count = f"({int(bad.sum())} non-finite values); it needs finite input"
    if values.ndim == 2:
        j = int(np.flatnonzero(bad[i])[0])
        name = data.feature_names[j] if j < len(data.feature_names) else f"column {j}"
        raise DataError(f"{method}: {what} {name!r} is {values[i, j]} at prepared row {row} {count}")
    raise DataError(f"{method}: {what} is {values[i]} at prepared row {row} {count}")


def require_n_features(method: str, fitted: int | None, data: PreprocessData) -> None:
    """Refuse (``ConfigError``) data whose number of input features is not the one a state was
    fitted on: a state from another feature set or preprocessing chain."""
    if fitted is None:
        raise RuntimeError(f"{method}: transform before fit")
    got = int(data.features.shape[1])
    if got != fitted:
        raise ConfigError(f"{method}: its state was fitted on {fitted} input features, the data has {got} "
                          f"(a state from another feature set or preprocessing chain)")


# ------------------------------------------------------------------------ the chain


def run_preprocessors(data: Any, features: np.ndarray, names: list[str], configs: dict[str, Any], plugins: Any,
                      splits: dict[str, list[tuple[int, int]]], *, seed: int = 0,
                      states: list[dict[str, Any]] | None = None,
                      source: Path | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Run the preprocessors in order. Each is fitted on the train rows of its input (its
    predecessor's output) unless its saved ``states`` are given (read from ``source``, named in
    errors). Returns the features and the states to save with the run."""
    out = np.ascontiguousarray(features, dtype=np.float32)
    columns = tuple(data.feature_names) if len(data.feature_names) == out.shape[1] else \
        tuple(f"f{i}" for i in range(out.shape[1]))
    where = source if source is not None else "preprocessing state"
    if states is not None:
        if not (isinstance(states, list) and all(isinstance(s, dict) and "state" in s for s in states)):
            raise ConfigError(f"{where}: damaged preprocessing state (expected a list of {{name, state}} entries)")
        if [s.get("name") for s in states] != list(names):
            raise ConfigError(f"{where}: preprocessing state is for {[s.get('name') for s in states]}, "
                              f"the run uses {names}")
    saved: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        pre = plugins.preprocessors().get(name).factory(configs[name])
        if states is not None:
            try:
                pre.load_state_dict(states[i]["state"])
            except Exception as e:  # noqa: BLE001 - a damaged file, whatever the plugin raises
                raise ConfigError(f"{where}: damaged state of preprocessor {name!r} ({type(e).__name__}: {e})") from None
        else:
            pre.fit(fit_view(data, out, columns, splits, seed))
        new = np.asarray(pre.transform(transform_view(data, out, columns, splits, seed)), dtype=np.float32)
        if new.ndim != 2 or new.shape[0] != out.shape[0]:
            raise ConfigError(f"preprocessor {name!r} returned shape {new.shape}, expected [{out.shape[0]}, F]")
        if callable(getattr(pre, "output_names", None)):
            columns = tuple(pre.output_names(columns))
        elif new.shape[1] != len(columns):
            columns = tuple(f"{name}_{j}" for j in range(new.shape[1]))
        if len(columns) != new.shape[1]:
            raise ConfigError(f"preprocessor {name!r} names {len(columns)} columns but returned {new.shape[1]}")
        _require_finite_output(name, new, columns, splits)
        out = np.ascontiguousarray(new)
        saved.append({"name": name, "columns": list(columns), "state": pre.state_dict()})
    return out, saved


def _require_finite_output(name: str, values: np.ndarray, columns: tuple[str, ...],
                           splits: dict[str, list[tuple[int, int]]]) -> None:
    """Refuse a NaN or infinite output on a row of the run's splits (prepared features are
    finite, so it is the preprocessor's): a model's logits went NaN there, and a NaN row acted
    as SELL, silently, on validation and test."""
    from himari.errors import DataError

    for split in ("train", "validation", "test"):
        for a, b in splits.get(split, ()):
            bad = ~np.isfinite(values[a:b])
            if bad.any():
                i, j = (int(k) for k in np.argwhere(bad)[0])
                raise DataError(f"preprocessor {name!r}: output {columns[j]!r} is {values[a + i, j]} at prepared row "
                                f"{a + i} ({split} split; {int(bad.sum())} non-finite values there)")


# ------------------------------------------------------------------------ state files


def _split_arrays(state: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    """``state`` with every NumPy array / torch tensor replaced by a reference into ``arrays``."""
    if isinstance(state, dict):
        for k in state:
            if not isinstance(k, str):
                raise ConfigError(f"preprocessing state key {k!r} at {path or 'top'}: keys must be strings")
        return {k: _split_arrays(v, arrays, f"{path}/{k}") for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_split_arrays(v, arrays, f"{path}/{i}") for i, v in enumerate(state)]
    if isinstance(state, (np.ndarray, np.generic)) or type(state).__module__.startswith("torch"):
        # a NumPy scalar is saved as a 0-d array and comes back with its dtype: a float64 read back
        # as a Python float would let float32 maths win in the transform
        kind = ("numpy" if isinstance(state, np.ndarray) else "numpy-scalar" if isinstance(state, np.generic)
                else "torch")
        if kind == "torch":
            t = state.detach().cpu()
            dtype = str(t.dtype).removeprefix("torch.")
            arr = t.view(__import__("torch").int16).numpy() if dtype == "bfloat16" else t.numpy()
        else:
            dtype, arr = str(state.dtype), np.asarray(state)
        if arr.dtype == object:
            raise ConfigError(f"preprocessing state {path}: object arrays cannot be saved")
        key = f"a{len(arrays)}"
        arrays[key] = np.require(arr, requirements="C")  # not ascontiguousarray: it makes a 0-d array 1-d
        return {_REF: key, "kind": kind, "dtype": dtype}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise ConfigError(f"preprocessing state {path}: {type(state).__name__} is not JSON, a NumPy array or a tensor")


def _join_arrays(state: Any, arrays: Any, where: Any) -> Any:
    if isinstance(state, dict):
        if _REF in state:
            key = state[_REF]
            if key not in arrays:
                raise ConfigError(f"{where}: array {key!r} missing from {ARRAYS_FILE}")
            arr = arrays[key]
            if state.get("kind") == "torch":
                import torch

                if state.get("dtype") == "bfloat16":
                    return torch.from_numpy(np.array(arr)).view(torch.bfloat16)
                return torch.from_numpy(np.array(arr))
            if state.get("kind") == "numpy-scalar":
                return np.array(arr)[()]
            return np.array(arr)
        return {k: _join_arrays(v, arrays, where) for k, v in state.items()}
    if isinstance(state, list):
        return [_join_arrays(v, arrays, where) for v in state]
    return state


def save_states(run_dir: Path, states: list[dict[str, Any]]) -> None:
    """Write ``preprocessing.json`` (and ``preprocessing.npz`` when a state holds arrays)."""
    from himari.data.atomic import atomic_path, write_text_atomic

    arrays: dict[str, np.ndarray] = {}
    plain = [{**s, "state": _split_arrays(s["state"], arrays, s["name"])} for s in states]
    doc: dict[str, Any] = {"format": "himari-preprocessing", "version": 2, "preprocessors": plain}
    npz = run_dir / ARRAYS_FILE
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        doc["arrays"] = {"file": ARRAYS_FILE, "sha256": hashlib.sha256(data).hexdigest()}
        with atomic_path(npz) as tmp:
            tmp.write_bytes(data)
    elif npz.exists():
        npz.unlink()
    write_text_atomic(run_dir / JSON_FILE, json.dumps(doc, indent=2) + "\n")


def load_states(run_dir: Path) -> list[dict[str, Any]] | None:
    """The saved states of a run's preprocessors (None when it has no ``preprocessing.json``);
    a damaged or modified file is a ``ConfigError`` naming it."""
    path = run_dir / JSON_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable preprocessing state ({' '.join(str(e).split())})") from None
    if isinstance(doc, list):  # written by himari before array states existed
        return doc
    if not (isinstance(doc, dict) and doc.get("format") == "himari-preprocessing"
            and isinstance(doc.get("preprocessors"), list)):
        raise ConfigError(f"{path}: damaged preprocessing state (not a himari preprocessing file)")
    states = doc["preprocessors"]
    if "arrays" not in doc:
        return states
    npz = run_dir / ARRAYS_FILE
    try:
        data = npz.read_bytes()
    except OSError as e:
        raise ConfigError(f"{npz}: cannot read the preprocessors' arrays ({e})") from None
    if hashlib.sha256(data).hexdigest() != doc["arrays"].get("sha256"):
        raise ConfigError(f"{npz}: its content does not match the hash in {path} (modified or damaged)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return [replace_state(s, _join_arrays(s.get("state"), arrays, npz)) for s in states]
    except (OSError, ValueError) as e:
        raise ConfigError(f"{npz}: damaged arrays ({e})") from None


def replace_state(entry: dict[str, Any], state: Any) -> dict[str, Any]:
    return {**entry, "state": state}


split_arrays = _split_arrays
"""``state`` with its arrays moved into a dict of arrays (to save them beside the JSON); other
state files (a generator's, beside a synthetic set) use it too."""
join_arrays = _join_arrays
"""The inverse of ``split_arrays``."""

__all__ = ["contiguous_segments", "filter_ranges", "fit_view", "join_arrays", "load_states", "require_finite",
           "require_n_features", "run_preprocessors", "save_states", "split_arrays", "transform_view"]
