"""block-bootstrap: the naive generator every deep one is measured against.

A moving-block bootstrap (Kuensch 1989) of the train rows: each synthetic window is made of
``ceil(window / block)`` blocks of ``block`` consecutive train rows, each block drawn uniformly
from the train segments (a block never crosses a gap), laid end to end and cut to ``window``.
Every channel and the label of a row travel together, so the cross-section of a bar is exactly
a real one; only the time dependence across block joins is broken. It costs nothing to fit,
creates no new market states (every row is a train row), and is the bar a deep generator has to
clear to be worth its fitting time (``himari data augment --report`` shows both side by side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from himari.plugin.api import GeneratorSpec, hookimpl


@dataclass(frozen=True)
class BlockBootstrapConfig:
    window: int = 24
    """Steps of each synthetic window."""
    block: int = 6
    """Consecutive train rows per block; block = window replays whole train windows."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.block < 1:
            raise ValueError(f"window and block must be >= 1, got {self.window} and {self.block}")


class BlockBootstrap:
    """The generator instance (``himari.plugin.api.Generator``)."""

    def __init__(self, config: BlockBootstrapConfig) -> None:
        self.config = config
        self.window = config.window
        self.features: Any = None
        self.labels: Any = None
        self.starts: Any = None

    def fit(self, data: Any) -> None:
        """Keep the train rows and where a block may start (the state is the train rows)."""
        import numpy as np

        from himari.plugin.api import check_finite, require_windows

        check_finite("block-bootstrap", np.asarray(data.features), "the train features")
        starts = require_windows("block-bootstrap", data.segments, min(self.config.block, self.config.window))
        self.features = np.ascontiguousarray(data.features, dtype=np.float32)
        self.labels = np.ascontiguousarray(data.labels, dtype=np.int8)
        self.starts = starts

    def sample(self, n: int, *, seed: int = 0) -> Any:
        import numpy as np

        from himari.plugin.api import SyntheticSample

        if self.starts is None:
            raise RuntimeError("block-bootstrap: sample before fit")
        block = min(self.config.block, self.window)
        per = -(-self.window // block)
        rng = np.random.default_rng(seed)
        first = self.starts[rng.integers(0, len(self.starts), size=(n, per))]  # [n, per]
        idx = (first[:, :, None] + np.arange(block)[None, None, :]).reshape(n, per * block)[:, :self.window]
        return SyntheticSample(windows=self.features[idx], labels=self.labels[idx])

    def state_dict(self) -> dict[str, Any]:
        return {"features": self.features, "labels": self.labels, "starts": self.starts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import numpy as np

        features = np.asarray(state["features"], dtype=np.float32)
        labels = np.asarray(state["labels"], dtype=np.int8)
        starts = np.asarray(state["starts"], dtype=np.int64)
        block = min(self.config.block, self.window)
        if features.ndim != 2 or labels.shape != (len(features),) or starts.ndim != 1 or \
                (len(starts) and (starts.min() < 0 or starts.max() + block > len(features))):
            raise ValueError("block-bootstrap state: rows, labels and block starts do not fit together")
        self.features, self.labels, self.starts = features, labels, starts


@hookimpl
def himari_register_generators(registry: Any) -> None:
    registry.add(GeneratorSpec(name="block-bootstrap",
                               summary="moving-block bootstrap of train rows: the naive baseline of the generators",
                               config=BlockBootstrapConfig, factory=BlockBootstrap))
