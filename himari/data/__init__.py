"""himari.data: bars in, model-ready arrays and datasets out.

Pipeline: readers (CSV, Binance klines, freqtrade, Parquet) -> canonical frame (validated, on a
grid) -> data report -> 60 causal features + labels -> chronological splits with embargo ->
a prepared directory of memory-mapped arrays -> torch datasets for each model family. The
synthetic market stands in for real data everywhere (``default_prepared_dataset``).

Names are loaded lazily so that ``import himari.data`` stays cheap (no pandas, pyarrow or torch
until a function is used). See docs/data.md.
"""

from __future__ import annotations

from himari._lazy import lazy_exports

_EXPORTS = {
    "ImportOptions": "himari.data.frame",
    "build_canonical": "himari.data.frame",
    "write_bars": "himari.data.frame",
    "read_source": "himari.data.readers",
    "detect_format": "himari.data.readers",
    "FORMATS": "himari.data.readers",
    "LoadedBars": "himari.data.ingest",
    "load_bars": "himari.data.ingest",
    "import_bars": "himari.data.ingest",
    "read_bars": "himari.data.ingest",
    "DataReport": "himari.data.report",
    "build_report": "himari.data.report",
    "SynthConfig": "himari.data.synthetic",
    "synthesize": "himari.data.synthetic",
    "write_synthetic": "himari.data.synthetic",
    "FEATURES": "himari.data.features",
    "FEATURE_NAMES": "himari.data.features",
    "FEATURE_DIM": "himari.data.features",
    "WARMUP": "himari.data.features",
    "compute_features": "himari.data.features",
    "LABELERS": "himari.data.labels",
    "make_labels": "himari.data.labels",
    "register_labeler": "himari.data.labels",
    "chronological_split": "himari.data.splits",
    "walk_forward_folds": "himari.data.splits",
    "PrepareConfig": "himari.data.pipeline",
    "prepare": "himari.data.pipeline",
    "default_prepared_dataset": "himari.data.pipeline",
    "resolve_prepared": "himari.data.pipeline",
    "PreparedData": "himari.data.prepared",
    "TabularDataset": "himari.data.datasets",
    "TransitionDataset": "himari.data.datasets",
    "TrajectoryDataset": "himari.data.datasets",
    "SequenceDataset": "himari.data.datasets",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports('himari.data', globals(), _EXPORTS)
