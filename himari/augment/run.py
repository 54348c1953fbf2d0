"""``himari data augment``: fit a generator plugin on the train split, sample, optionally measure,
and write the set atomically (a failure leaves no directory behind)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError, DataError


@dataclass
class AugmentRequest:
    """One ``himari data augment`` call."""

    data: Path
    method: str
    out: Path
    windows: int | None = None
    rows: int | None = None
    features: str | None = None
    seed: int = 0
    device: str = "cpu"
    settings: dict[str, Any] = field(default_factory=dict)
    """The generator's config fields (``--set KEY=VALUE``, ``--condition tail``)."""
    report: bool = False
    report_steps: int | None = None
    """Steps of both post-hoc networks (None: the paper's 2,000 and 5,000)."""
    force: bool = False


def _count(req: AugmentRequest, window: int) -> int:
    if (req.windows is None) == (req.rows is None):
        raise ConfigError("give exactly one of --windows N and --rows N (how much synthetic data to make)")
    n = req.windows if req.windows is not None else req.rows
    if n is None or n < 1:
        raise ConfigError(f"{'--windows' if req.windows is not None else '--rows'}: must be >= 1, got {n}")
    return int(n) if req.windows is not None else int(math.ceil(n / window))


def available_memory() -> int | None:
    """Bytes this machine can still give (``MemAvailable`` on Linux); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_size(req: AugmentRequest, n: int, window: int, channels: int) -> None:
    """Refuse, before the fit, a set that cannot be held: the sample (float32 windows, int8
    labels) and the copy written to disk must fit in the memory available, else the system kills
    the process without a word after the fit."""
    need = 2 * n * window * (4 * channels + 1)
    free = available_memory()
    if free is not None and need > free:
        asked = f"--windows {req.windows:,}" if req.windows is not None else f"--rows {req.rows:,}"
        raise ConfigError(f"{asked}: {n:,} windows of {window} bars x {channels} channels need about "
                          f"{need / 1e9:.1f} GB of memory to sample and write, more than the {free / 1e9:.1f} GB "
                          f"available; ask for fewer")


def _check_sample(name: str, sample: Any, n: int, window: int, k: int) -> None:
    w, lab = np.asarray(sample.windows), np.asarray(sample.labels)
    if w.shape != (n, window, k) or lab.shape != (n, window):
        raise DataError(f"generator {name!r} returned windows {w.shape} and labels {lab.shape}, expected "
                        f"({n}, {window}, {k}) and ({n}, {window})")
    if not np.isfinite(w).all():
        raise DataError(f"generator {name!r} generated NaN or infinite values (its fit diverged); try another seed "
                        f"or fewer iterations")
    if not np.isin(lab, (-1, 0, 1, 2)).all():
        raise DataError(f"generator {name!r} generated labels outside -1..2")


def write_state(directory: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The generator's state as ``generator.json`` (+ ``generator.npz`` for its arrays)."""
    from himari.data.synthetic_set import STATE_JSON, STATE_NPZ
    from himari.training.preprocess import split_arrays

    arrays: dict[str, np.ndarray] = {}
    doc: dict[str, Any] = {"state": split_arrays(state, arrays, "generator")}
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        (directory / STATE_NPZ).write_bytes(data)
        doc["arrays"] = {"file": STATE_NPZ, "sha256": hashlib.sha256(data).hexdigest()}
    (directory / STATE_JSON).write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return {"json": STATE_JSON, **({"arrays": STATE_NPZ} if arrays else {})}


def load_generator(path: str | Path, plugins: Any = None) -> Any:
    """The fitted generator of a synthetic set, rebuilt from its config and saved state: sampling
    it with a seed gives what the original gave."""
    from himari.data.synthetic_set import STATE_JSON, SyntheticSet
    from himari.plugin.config import build_config
    from himari.plugin.extras import require_spec
    from himari.plugin.manager import get_plugins
    from himari.training.preprocess import join_arrays

    s = SyntheticSet(path)
    plugins = plugins or get_plugins()
    spec = plugins.generators().get(s.generator)
    require_spec(spec)
    gen = spec.factory(build_config(spec.config, s.metadata["generator"]["config"], s.generator))
    try:
        doc = json.loads((s.path / STATE_JSON).read_text(encoding="utf-8"))
        state = doc["state"]
        if "arrays" in doc:
            raw = (s.path / doc["arrays"]["file"]).read_bytes()
            if hashlib.sha256(raw).hexdigest() != doc["arrays"]["sha256"]:
                raise DataError(f"{s.path / doc['arrays']['file']}: does not match its hash (modified or damaged)")
            with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
                state = join_arrays(state, arrays, s.path / doc["arrays"]["file"])
        gen.load_state_dict(state)
    except (OSError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{s.path}: damaged generator state ({type(e).__name__}: {e})") from None
    return gen


def make_set(req: AugmentRequest, *, plugins: Any = None) -> dict[str, Any]:
    """Fit, sample, (measure,) write; returns the set's metadata (with ``report`` when asked)."""
    from himari import __version__
    from himari.augment.source import generator_data, resolve_channels, train_ranges
    from himari.data import PreparedData
    from himari.data.atomic import atomic_directory
    from himari.data.outputs import check_directory_output
    from himari.data.splits import Ranges
    from himari.data.synthetic_set import REPORT_JSON, SET_FILES, SET_FORMAT, SET_VERSION, data_fingerprint, \
        write_arrays
    from himari.plugin.config import build_config, config_to_dict
    from himari.plugin.extras import require_spec
    from himari.plugin.manager import get_plugins
    from himari.training.device import DEVICE_NAMES, is_device_name

    plugins = plugins or get_plugins()
    entry = plugins.generators().entry(req.method)
    spec = entry.spec
    config = build_config(spec.config, req.settings, req.method)
    require_spec(spec)
    target = check_directory_output(req.out, [req.data], format_name=SET_FORMAT, allowed_files=SET_FILES,
                                    force=req.force, what="synthetic set")
    if not is_device_name(req.device):
        raise ConfigError(f"--device {req.device}: expected {DEVICE_NAMES}")
    device = "cpu"
    if "torch" in spec.extras:
        from himari.training.device import resolve_device

        device = resolve_device(req.device)
    elif req.device.startswith("cuda"):
        raise ConfigError(f"--device {req.device}: generator {req.method!r} runs on the CPU only")
    data = PreparedData(req.data)
    channels = resolve_channels(req.features, spec.default_features, list(data.feature_names))
    gd = generator_data(data, channels, seed=req.seed, device=device)
    gen = spec.factory(config)
    n = _count(req, int(gen.window))
    _check_size(req, n, int(gen.window), len(channels))
    t0 = time.perf_counter()
    gen.fit(gd)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample = gen.sample(n, seed=req.seed)
    sample_seconds = time.perf_counter() - t0
    _check_sample(req.method, sample, n, int(gen.window), len(channels))
    report = None
    if req.report:
        report = _report(req, spec, gen, sample, gd, config, device, plugins, n)
    lab = np.asarray(sample.labels).reshape(-1)
    ranges: Ranges = [(a, b) for a, b in train_ranges(gd)]
    meta: dict[str, Any] = {
        "format": SET_FORMAT, "version": SET_VERSION, "himari_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "generator": {"name": spec.name, "code": spec.code, "config": config_to_dict(config),
                      "plugin": entry.origin.plugin, "distribution": entry.origin.distribution,
                      "version": entry.origin.version, "output": spec.output},
        "seed": req.seed, "device": device, "window": int(gen.window), "channels": list(channels),
        "n_windows": n, "n_rows": n * int(gen.window),
        "label_distribution": {c: int(np.sum(lab == i)) for i, c in enumerate(("SELL", "HOLD", "BUY"))},
        "source": {"path": str(Path(data.path).resolve()), "fingerprint": data_fingerprint(data),
                   "feature_names": list(data.feature_names), "labeler": data.metadata["labeler"],
                   "interval": data.metadata["interval"], "train_ranges": [list(r) for r in ranges],
                   "train_span": data.span_text(ranges), "lookahead": int(data.lookahead)},
        "fit_seconds": fit_seconds, "sample_seconds": sample_seconds,
    }
    if getattr(gen, "fit_log", None):
        meta["fit_log"] = dict(gen.fit_log)
    if sample.classes is not None:
        meta["classes"] = {"names": list(sample.class_names), "asked": dict(sample.requested or {}),
                           "counts": {name: int(np.sum(np.asarray(sample.classes) == i))
                                      for i, name in enumerate(sample.class_names)}}
    with atomic_directory(target, replace=req.force) as tmp:
        meta["files"] = write_arrays(tmp, sample.windows, sample.labels, sample.classes)
        meta["state"] = write_state(tmp, gen.state_dict())
        if report is not None:
            (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if report is not None:
        meta["report"] = report
    meta["path"] = str(target)
    return meta


def _report(req: AugmentRequest, spec: Any, gen: Any, sample: Any, gd: Any, config: Any, device: str, plugins: Any,
            n: int) -> dict[str, Any]:
    from himari.augment.report import ReportSettings, build_report
    from himari.plugin.config import build_config

    naive = None
    if spec.name != "block-bootstrap" and "block-bootstrap" in plugins.generators():
        bspec = plugins.generators().get("block-bootstrap")
        boot = bspec.factory(build_config(bspec.config, {"window": int(gen.window)}, "block-bootstrap"))
        boot.fit(gd)
        naive = boot.sample(n, seed=req.seed)
    steps = {} if req.report_steps is None else {"discriminator_steps": req.report_steps,
                                                 "predictor_steps": req.report_steps}
    settings = ReportSettings(seed=req.seed, device=device, **steps)
    return build_report(spec.name, sample, gd, output=spec.output, generator=gen, naive=naive, settings=settings)
