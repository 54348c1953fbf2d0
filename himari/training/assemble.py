"""Building a run's pieces from its config: preprocessed features, the model, and a trained
policy restored from a run directory (what ``himari backtest RUN_DIR`` scores).

Shared by the Trainer and the restore path so both build exactly the same things.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from himari.errors import ConfigError, DataError
from himari.plugin.api import EnvConfig, ModelContext


def apply_preprocessing(features: np.ndarray, names: list[str], configs: dict[str, Any], plugins: Any,
                        train_rows: np.ndarray | None, states: list[dict[str, Any]] | None = None,
                        source: Path | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Run the preprocessors in order. Each is fitted on the train rows of its input (its
    predecessor's output) unless its saved ``states`` are given (read from ``source``, named in
    errors). Returns the features and the states to save with the run."""
    out = np.asarray(features, dtype=np.float32)
    saved: list[dict[str, Any]] = []
    where = source if source is not None else "preprocessing state"
    if states is not None:
        if not (isinstance(states, list) and all(isinstance(s, dict) and "state" in s for s in states)):
            raise ConfigError(f"{where}: damaged preprocessing state (expected a list of "
                              f"{{name, state}} entries)")
        if [s.get("name") for s in states] != list(names):
            raise ConfigError(f"{where}: preprocessing state is for {[s.get('name') for s in states]}, "
                              f"the run uses {names}")
    for i, name in enumerate(names):
        spec = plugins.preprocessors().get(name)
        pre = spec.factory(configs[name])
        if states is not None:
            try:
                pre.load_state_dict(states[i]["state"])
            except Exception as e:  # noqa: BLE001 - a damaged file, whatever the plugin raises
                raise ConfigError(f"{where}: damaged state of preprocessor {name!r} "
                                  f"({type(e).__name__}: {e})") from None
        else:
            if train_rows is None:
                raise ValueError("train_rows are needed to fit preprocessors")
            pre.fit(out[train_rows])
        new = np.asarray(pre.transform(out), dtype=np.float32)
        if new.ndim != 2 or new.shape[0] != out.shape[0]:
            raise ValueError(f"preprocessor {name!r} returned shape {new.shape}, expected [{out.shape[0]}, F]")
        out = np.ascontiguousarray(new)
        saved.append({"name": name, "state": pre.state_dict()})
    return out, saved


def class_counts(labels: np.ndarray, rows: np.ndarray, n_actions: int = 3) -> tuple[int, ...]:
    y = np.asarray(labels)[rows]
    y = y[y >= 0]
    return tuple(int(c) for c in np.bincount(y.astype(np.int64), minlength=n_actions)[:n_actions])


def model_context_to_dict(ctx: ModelContext) -> dict[str, Any]:
    return {"n_features": ctx.n_features, "n_actions": ctx.n_actions, "class_counts": list(ctx.class_counts),
            "env": dataclasses.asdict(ctx.env)}


def model_context_from_dict(d: dict[str, Any]) -> ModelContext:
    return ModelContext(n_features=int(d["n_features"]), n_actions=int(d["n_actions"]),
                        class_counts=tuple(int(c) for c in d["class_counts"]), env=EnvConfig(**d["env"]))


@dataclass
class TrainedPolicy:
    """A model restored from a run directory, with its preprocessing, ready to act on any
    prepared data set with the same raw features."""

    run_dir: Path
    name: str
    model: Any
    run: Any
    preprocessing: list[dict[str, Any]]
    checkpoint: str
    plugins: Any
    context: ModelContext

    @property
    def stateful(self) -> bool:
        """True when the model decides sequentially (``act_sequence``: it sees the account state
        or carries recurrent state), so acting needs the prices."""
        return callable(getattr(self.model, "act_sequence", None))

    def act(self, raw_features: np.ndarray, rows: np.ndarray, *, open: np.ndarray | None = None,
            close: np.ndarray | None = None, ranges: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Actions at ``rows`` of the raw features. A stateful model needs ``open`` and ``close``
        of the same rows; it decides along each of ``ranges`` (default: the contiguous runs of
        ``rows``) from a flat account."""
        import torch

        features, _ = apply_preprocessing(raw_features, self.run.preprocess, self.run.plugin_configs,
                                          self.plugins, None, self.preprocessing,
                                          source=self.run_dir / "preprocessing.json")
        if features.shape[1] != self.context.n_features:
            raise DataError(f"{self.run_dir}: the model takes {self.context.n_features} features after "
                            f"preprocessing, this data gives {features.shape[1]}")
        self.model.network.eval()
        with torch.no_grad():
            if self.stateful:
                if open is None or close is None:
                    raise DataError(f"{self.run_dir}: {self.name} decides from the account state; "
                                    f"pass open= and close= prices to act")
                rows = np.asarray(rows)
                if ranges is None:
                    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
                    ranges = [(int(r[0]), int(r[-1]) + 1) for r in np.split(rows, cuts) if len(r)]
                return np.asarray(self.model.act_sequence(features, open, close, ranges, self.context.env))
            return np.asarray(self.model.act(features, rows))


def load_trained(run_dir: str | Path, *, which: str = "best", plugins: Any = None) -> TrainedPolicy:
    """Restore ``checkpoints/<which>.pt`` of a run (falls back to last.pt when no best.pt)."""
    from himari.plugin.extras import require_modules, require_spec
    from himari.plugin.manager import get_plugins
    from himari.training import rundir
    from himari.training.checkpoint import CheckpointError, load_checkpoint, load_network_state
    from himari.training.config import load_run_config

    run_dir = Path(run_dir)
    if not rundir.is_run_dir(run_dir):
        raise DataError(f"{run_dir}: not a himari run directory (no {rundir.CONFIG})")
    plugins = plugins or get_plugins()
    run = load_run_config(run_dir, plugins)
    spec = plugins.models().get(run.model)
    require_modules(["torch"], f"loading the run {run_dir}")
    require_spec(spec)
    path = run_dir / "checkpoints" / f"{which}.pt"
    if which == "best" and not path.exists():
        path = run_dir / rundir.LAST
    payload = load_checkpoint(path, model=run.model)
    pre_path = run_dir / rundir.PREPROCESSING
    states = rundir.read_json(pre_path, "preprocessing state") if pre_path.exists() else []
    try:
        context = model_context_from_dict(payload["model_context"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged model context ({type(e).__name__}: {e})") from None
    model = spec.factory(run.plugin_configs[run.model], context)
    load_network_state(model.network, payload, path)
    model.network.to("cpu")
    return TrainedPolicy(run_dir, run.model, model, run, states, path.name, plugins, context)
