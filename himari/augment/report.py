"""The quality report of a synthetic set: computed beside the real train windows and a naive
block bootstrap of the same size, saved as ``report.json`` in the set and printed as tables.

The deep generators are worth their fitting time only where they beat the bootstrap, so the
report always shows it (unless the set is a bootstrap itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from himari.augment import quality

PAPER = {"discriminative": 0.102, "predictive": 0.038,
         "source": "TimeGAN (Yoon et al., NeurIPS 2019), Table 2, Stocks: TimeGAN's scores"}
"""The paper's scores on its stock data, for orientation (other data, other channels)."""

RETURNS_CHANNEL = "ret_1"
CLASS_LABELS = ("SELL", "HOLD", "BUY")


@dataclass(frozen=True)
class ReportSettings:
    """Budget of the post-hoc networks (the paper: 2,000 discriminator and 5,000 predictor steps)."""

    discriminator_steps: int = 2000
    predictor_steps: int = 5000
    batch_size: int = 128
    max_windows: int = 10_000
    """Real and synthetic windows compared (at most)."""
    seed: int = 0
    device: str = "cpu"


def _label_shares(labels: np.ndarray) -> dict[str, float]:
    lab = np.asarray(labels).reshape(-1)
    lab = lab[lab >= 0]
    counts = np.bincount(lab.astype(np.int64), minlength=3)[:3]
    total = max(int(counts.sum()), 1)
    return {name: float(c / total) for name, c in zip(CLASS_LABELS, counts)}


def _shares(classes: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    c = np.asarray(classes).reshape(-1)
    n = max(len(c), 1)
    out = {name: float(np.mean(c == i)) if len(c) else 0.0 for i, name in enumerate(names)}
    if (c < 0).any():
        out["unclassified"] = float(np.sum(c < 0) / n)
    return out


def real_windows(gd: Any, window: int, n: int, seed: int) -> np.ndarray:
    """``n`` train windows (fewer when the train split has fewer), drawn without replacement."""
    from himari.data.windows import take_windows, window_starts

    starts = window_starts(gd.segments, window)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(starts), size=min(n, len(starts)), replace=False))
    return take_windows(gd.features, starts[pick], window)


def _classify_every_train_window(classify: Any, gd: Any, window: int, chunk: int = 4096) -> np.ndarray:
    """The class of every train window, ``classify`` given whole windows ``[n, window, C]`` as
    the generator protocol says, a chunk at a time (a year of 24-row windows is gigabytes at
    once): the train's class shares come from the whole split, not from the sample drawn to
    match the set's size (a 200-row sample put the flash-crash share at 0.010 where the split's
    is 0.005)."""
    from himari.data.windows import take_windows, window_starts

    starts = window_starts(gd.segments, window)
    parts = [np.asarray(classify(take_windows(gd.features, starts[i:i + chunk], window)))
             for i in range(0, len(starts), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def _set_metrics(name: str, windows: np.ndarray, labels: np.ndarray, real_scaled: np.ndarray, scaled: np.ndarray,
                 ordered: bool, returns_at: int | None, s: ReportSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "windows": int(len(windows)),
        "discriminative": quality.discriminative_score(real_scaled, scaled, steps=s.discriminator_steps,
                                                       batch_size=s.batch_size, seed=s.seed, device=s.device),
        "predictive": quality.predictive_score(scaled, real_scaled, steps=s.predictor_steps,
                                               batch_size=s.batch_size, seed=s.seed, device=s.device),
        "labels": _label_shares(labels),
    }
    if returns_at is not None:
        out["stylised"] = quality.stylised_facts(windows[:, :, returns_at], ordered=ordered)
    return out


def build_report(method: str, sample: Any, gd: Any, *, output: str, generator: Any = None,
                 naive: Any = None, settings: ReportSettings | None = None) -> dict[str, Any]:
    """Every metric of the set ``sample`` (from ``method``, fitted on ``gd``), of the naive
    bootstrap ``naive`` (a sample of the same size, or None) and of the real train data."""
    s = settings or ReportSettings()
    windows = np.asarray(sample.windows)
    L = windows.shape[1]
    n_cmp = min(len(windows), s.max_windows)
    real = real_windows(gd, L, n_cmp, s.seed)
    channels = list(gd.feature_names)
    returns_at = channels.index(RETURNS_CHANNEL) if RETURNS_CHANNEL in channels else None
    ordered = output == "windows" and L > 1
    sets = {method: (windows, np.asarray(sample.labels))}
    if naive is not None:
        sets["block-bootstrap"] = (np.asarray(naive.windows), np.asarray(naive.labels))
    scaled = quality.scale_like(real, *[w[:n_cmp] for w, _ in sets.values()])
    real_scaled = scaled[0]
    report: dict[str, Any] = {
        "generator": method, "window": L, "channels": channels, "windows_compared": int(len(real)),
        "returns_channel": channels[returns_at] if returns_at is not None else None,
        "time_ordered": ordered, "paper": PAPER,
        "settings": {"discriminator_steps": s.discriminator_steps, "predictor_steps": s.predictor_steps,
                     "batch_size": s.batch_size, "seed": s.seed},
        "sets": {},
    }
    real_entry: dict[str, Any] = {
        "windows": int(len(real)),
        "predictive": quality.predictive_score(real_scaled, real_scaled, steps=s.predictor_steps,
                                               batch_size=s.batch_size, seed=s.seed, device=s.device),
        "labels": _label_shares(gd.labels),
    }
    if returns_at is not None:  # the real series in time order, segment by segment laid end to end
        real_entry["stylised"] = quality.stylised_facts(gd.features[:, returns_at], ordered=ordered)
    report["sets"]["real"] = real_entry
    for (name, (w, lab)), sc in zip(sets.items(), scaled[1:]):
        report["sets"][name] = _set_metrics(name, w, lab, real_scaled, sc, ordered, returns_at, s)
    if sample.classes is not None and sample.class_names:
        names = tuple(sample.class_names)
        classes: dict[str, Any] = {"names": list(names), "asked": dict(sample.requested or {}),
                                   "generated_for": _shares(sample.classes, names)}
        classify = getattr(generator, "classify", None)
        if callable(classify):
            classes["measured"] = _shares(classify(windows), names)
            classes["train"] = _shares(_classify_every_train_window(classify, gd, L), names)
        report["classes"] = classes
    return report


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "n/a"
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
    return str(v)


def render_report(report: dict[str, Any], console: Any) -> None:
    """The report as rich tables: one column per set (real, the generator, the bootstrap)."""
    from rich.table import Table

    sets = report["sets"]
    names = list(sets)
    t = Table(title=f"Synthetic set quality: {report['generator']} ({report['windows_compared']:,} windows of "
                    f"{report['window']} compared)", title_justify="left")
    t.add_column("metric")
    for n in names:
        t.add_column(n, justify="right")
    paper = report["paper"]
    t.add_row(f"discriminative |acc-0.5| (paper {paper['discriminative']})",
              *(_fmt(sets[n].get("discriminative")) if n != "real" else "-" for n in names))
    t.add_row(f"predictive MAE, train on this (paper {paper['predictive']})",
              *(_fmt(sets[n].get("predictive")) for n in names))
    if report["returns_channel"]:
        ch = report["returns_channel"]
        t.add_row(f"{ch} excess kurtosis", *(_fmt(sets[n]["stylised"]["kurtosis"], 2) for n in names))
        if report["time_ordered"]:
            for key, label in (("acf_returns", f"ACF {ch}"), ("acf_abs_returns", f"ACF |{ch}|")):
                for lag in (1, 5, 10, 50):
                    t.add_row(f"{label} lag {lag}", *(_fmt(sets[n]["stylised"][key][lag - 1]) for n in names))
        for q in quality.QUANTILES:
            t.add_row(f"{ch} quantile {q:g}", *(_fmt(sets[n]["stylised"]["quantiles"][str(q)], 5) for n in names))
    for c in CLASS_LABELS:
        t.add_row(f"label share {c}", *(_fmt(sets[n]["labels"][c]) for n in names))
    console.print(t)
    if "classes" in report:
        cls = report["classes"]
        c = Table(title="Condition classes: asked, generated for, measured by the rules", title_justify="left")
        cols = [k for k in ("asked", "generated_for", "measured", "train") if k in cls]
        c.add_column("class")
        for k in cols:
            c.add_column(k.replace("_", " "), justify="right")
        for name in [*cls["names"], *(["unclassified"] if any("unclassified" in cls[k] for k in cols) else [])]:
            c.add_row(name, *(_fmt(cls[k].get(name)) for k in cols))
        console.print(c)
    if not report["time_ordered"]:
        console.print("rows without time order: autocorrelations and the predictive score do not apply")
