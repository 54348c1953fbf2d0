"""The preprocessor plugin instance: fit the conversation on train windows, append the agreed
reconstruction (torch and the network are imported only when fitting or transforming)."""

from __future__ import annotations

from typing import Any

import numpy as np

from himari.plugin.api import ConfigError, DataError
from himari_builtin.preprocessing.conversational_ae.config import ConversationalAEConfig
from himari_builtin.preprocessing.conversational_ae.series import NAME, pieces, series_matrix, standardise, windows

MIN_WINDOWS = 20
"""Fewest full train windows a fit accepts (some to train on, some held out)."""
STATE_VERSION = 1


def column_names(config: ConversationalAEConfig) -> tuple[str, ...]:
    stem = "cae_" + config.target.replace("-", "_")
    return (stem, f"{stem}_disagreement") if config.disagreement else (stem,)


class ConversationalAE:
    """See the package docstring. State: the series' train mean and std, the partners' weights
    (torch tensors, saved in the run's ``preprocessing.npz``), the input feature names it was
    fitted on and the held-out scores of the fit (``metrics``)."""

    def __init__(self, config: ConversationalAEConfig) -> None:
        self.config = config
        self.state: dict[str, Any] | None = None
        self.model: Any = None

    # ------------------------------------------------------------------ fit

    def fit(self, data: Any) -> None:
        """Train the partners on the full windows of the train rows (``data`` holds those only)."""
        from himari.plugin.api import phase
        from himari_builtin.preprocessing.conversational_ae.network import converse

        cfg = self.config
        parts = pieces(data.segments, data.splits)
        raw = series_matrix(cfg.series, data, parts, cfg.window, "train rows")
        mean = raw.mean(axis=0) if len(raw) else np.zeros(len(cfg.series))
        std = raw.std(axis=0) if len(raw) else np.ones(len(cfg.series))
        std = np.where(std > 1e-12, std, 1.0)
        all_windows, full = windows(standardise(raw, mean, std, cfg.clip), parts, cfg.window)
        x = all_windows[full]
        if len(x) < MIN_WINDOWS:
            raise DataError(f"{NAME}: the train split gives {len(x)} full window(s) of {cfg.window} consecutive "
                            f"rows inside one segment ({len(raw)} train rows); at least {MIN_WINDOWS} are needed: "
                            f"lower {NAME}.window or train on more rows")
        n_hold = max(1, round(cfg.holdout * len(x)))
        n_train = len(x) - n_hold
        purged = n_train - (cfg.window - 1)  # windows overlapping the held-out ones are left out
        if purged < MIN_WINDOWS // 2:  # training on windows that overlap the held-out ones would flatter its scores
            raise DataError(f"{NAME}: of the train split's {len(x)} full windows, {n_hold} are held out and "
                            f"{min(cfg.window - 1, n_train)} more overlap them, which leaves {max(purged, 0)} to train "
                            f"on; at least "
                            f"{MIN_WINDOWS // 2} are needed: lower {NAME}.window or {NAME}.holdout, or train on "
                            f"more rows")
        train = x[:purged]
        with phase(f"{NAME}: {len(cfg.contexts)} autoencoders on {len(train)} train windows",
                   total=cfg.epochs) as advance:
            model, info = converse(cfg, train, x[n_train:], cfg.seed, advance)
        self.model = model
        self.state = {
            "version": STATE_VERSION,
            "input_names": list(data.feature_names),
            "series": list(cfg.series),
            "architecture": [cfg.window, cfg.hidden, cfg.latent],
            "mean": mean, "std": std,
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "metrics": {**info, "train_windows": len(train), "holdout_windows": n_hold},
        }

    # ------------------------------------------------------------------ transform

    def transform(self, data: Any) -> np.ndarray:
        """The input features with the agreed reconstruction of the target at each row (and the
        partners' spread there), from the row's trailing window in its run of bars: causal."""
        from himari.plugin.api import filter_ranges
        from himari_builtin.preprocessing.conversational_ae.network import reconstruct

        if self.state is None or self.model is None:
            raise RuntimeError(f"{NAME}: transform before fit")
        cfg, state = self.config, self.state
        names = list(data.feature_names)
        if names != state["input_names"]:
            fitted = state["input_names"]
            raise ConfigError(f"{NAME}: the state was fitted on {len(fitted)} input features "
                              f"({', '.join(fitted[:4])}{', ...' if len(fitted) > 4 else ''}), this data has "
                              f"{len(names)} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}): "
                              f"fit it again on this feature set")
        # Cut where a filter restarts (gaps, symbols, each train start), not at every split boundary:
        # validation and test rows continue from the rows before them, as they would live, so a
        # bar's input does not depend on where a data set's later split boundaries fall.
        parts = filter_ranges(data)
        raw = series_matrix(cfg.series, data, parts, cfg.window, "rows to transform")
        x, _ = windows(standardise(raw, state["mean"], state["std"], cfg.clip), parts, cfg.window)
        end = reconstruct(self.model, x)[:, :, -1]
        cols = [end.mean(axis=0)]
        if cfg.disagreement:
            cols.append(end.std(axis=0))
        return np.concatenate([np.asarray(data.features, dtype=np.float32),
                               np.stack(cols, axis=1).astype(np.float32)], axis=1)

    def output_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        return (*names, *column_names(self.config))

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state) if self.state is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the partners from a saved state; one that does not match the config (other
        series, window or sizes) or is damaged is refused."""
        import torch

        from himari_builtin.preprocessing.conversational_ae.network import build

        cfg = self.config
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{NAME} state version {state.get('version')!r}, expected {STATE_VERSION}")
        if list(state["series"]) != list(cfg.series) or list(state["architecture"]) != [cfg.window, cfg.hidden,
                                                                                         cfg.latent]:
            raise ValueError(f"{NAME} state is for series {state['series']} and window/hidden/latent "
                             f"{state['architecture']}, the config says {list(cfg.series)} and "
                             f"{[cfg.window, cfg.hidden, cfg.latent]}")
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.shape != (len(cfg.series),) or std.shape != mean.shape or not (
                np.isfinite(mean).all() and (std > 0).all()):
            raise ValueError(f"{NAME} state: mean and std must be finite, one per series, std > 0")
        model = build(cfg, 0)
        model.load_state_dict({k: torch.as_tensor(v) for k, v in state["weights"].items()}, strict=True)
        self.model = model
        self.state = {**state, "mean": mean, "std": std, "input_names": list(state["input_names"]),
                      "series": list(state["series"]), "architecture": list(state["architecture"])}
