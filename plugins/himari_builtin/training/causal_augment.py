"""causal-augment (K3): train on counterfactual price paths of the train period, with every
feature and label recomputed from the counterfactual bars by the prepare pipeline.

Augmenting the features directly (noise, scaling) produces rows no market could have produced:
a 288-bar volatility that disagrees with the 12-bar one, a label that does not follow from the
prices. This method augments the price path instead and lets the causal pipeline compute what a
model would have seen on that path (``counterfactual_context``), so no feature ever uses
information its bar could not have had.

Each epoch, for each range of the train split, a new path is drawn:

- **regime-preserving block bootstrap** (Kunsch 1989, "The jackknife and the bootstrap for general
  stationary observations"; regime-conditioned resampling as in Politis & Romano's stationary
  bootstrap literature): the range is cut into consecutive blocks of ``block_length`` bars (a
  shorter remainder at the end stays real). Each block's volatility regime is the quantile bin
  (``regimes`` bins, over the range's blocks) of its realised volatility (the standard deviation
  of its close-to-close log returns). With probability ``rate`` a block is replaced by a block
  drawn uniformly from the blocks of the same regime (itself included). A whole bar moves with its
  block: its open, high, low and close as log offsets from the previous close, and its volume;
  the path is then re-chained from the real close before the range. The sequence of regimes over
  time and the returns inside each block are kept; the order of blocks within a regime changes.
- **volatility rescaling**: every bar's log offsets are multiplied by one factor per range and
  epoch, log-uniform in ``[1 / (1 + vol_scale), 1 + vol_scale]`` (0: off).

Calendar features keep the real bar times. Rows outside the train split, and the features of
rows before it, are never changed; the last ``lookahead`` train rows lose their label when the
counterfactual path ends away from the real close (``counterfactual_data``).

Supported models: every paradigm. Dataset-trained models (baseline-mlp, cql, cgdt) get the
epoch's train data rebuilt from the counterfactual rows by their own ``dataset`` (offline-RL
rewards come from the counterfactual prices; cgdt's return-to-go statistics follow the epoch's
data); online-RL models (ppo-lstm, flag-trader) get an env source on the counterfactual market.
List it first in ``--method`` (it replaces the epoch's train data it is handed).

Cost per epoch: one feature computation over each symbol's series up to the end of its train
range and one pass of the run's preprocessors (about a second per 100k rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import CounterfactualMethod, TrainingMethodSpec, hookimpl

NAME = "causal-augment"


@dataclass(frozen=True)
class CausalAugmentConfig:
    rate: float = 0.5
    """Probability in [0, 1] that each block is replaced by a bootstrap draw of its own regime."""
    block_length: int = 48
    """Bars per bootstrap block (48 = 4 hours at 5m)."""
    regimes: int = 3
    """Volatility regimes: quantile bins of the blocks' realised volatility (1: plain block bootstrap)."""
    vol_scale: float = 0.25
    """Volatility rescaling: each path's log offsets times a factor log-uniform in [1/(1+v), 1+v] (0: off)."""

    def __post_init__(self) -> None:
        """Refused values name the field (the run config adds the method: ``plugins.causal-augment``)."""
        if not (isinstance(self.rate, (int, float)) and 0.0 <= self.rate <= 1.0):
            raise ValueError(f"rate must be in [0, 1], got {self.rate!r}")
        if not (isinstance(self.block_length, int) and self.block_length >= 2):
            raise ValueError(f"block_length must be an integer >= 2, got {self.block_length!r}")
        if not (isinstance(self.regimes, int) and self.regimes >= 1):
            raise ValueError(f"regimes must be an integer >= 1, got {self.regimes!r}")
        if not (isinstance(self.vol_scale, (int, float)) and math.isfinite(self.vol_scale) and self.vol_scale >= 0):
            raise ValueError(f"vol_scale must be a finite number >= 0, got {self.vol_scale!r}")


def block_regimes(offsets: Any, block_length: int, regimes: int) -> Any:
    """Regime (0 .. regimes-1, calm to wild) of each whole block of ``offsets [n, 4]``: the
    quantile bin of its realised volatility among the blocks."""
    import numpy as np

    n_blocks = len(offsets) // block_length
    vol = offsets[: n_blocks * block_length, 3].reshape(n_blocks, block_length).std(axis=1)
    if regimes <= 1 or n_blocks == 0:
        return np.zeros(n_blocks, dtype=np.int64)
    edges = np.quantile(vol, np.linspace(0, 1, regimes + 1)[1:-1])
    return np.searchsorted(edges, vol, side="right").astype(np.int64)


def bootstrap_blocks(regime: Any, rate: float, rng: Any) -> Any:
    """The source block of each block: itself, or with probability ``rate`` a block drawn
    uniformly among those of the same regime."""
    import numpy as np

    source = np.arange(len(regime), dtype=np.int64)
    replace = rng.random(len(regime)) < rate
    pools = {int(r): np.flatnonzero(regime == r) for r in np.unique(regime)}
    draws = rng.random(len(regime))
    for k in np.flatnonzero(replace):
        pool = pools[int(regime[k])]
        source[k] = pool[min(int(draws[k] * len(pool)), len(pool) - 1)]
    return source


def resample(offsets: Any, volume: Any, source: Any, block_length: int, scale: float) -> tuple[Any, Any]:
    """New offsets and volume: block k copied from block ``source[k]`` (the remainder after the
    whole blocks stays), all offsets times ``scale``."""
    import numpy as np

    n_whole = len(source) * block_length
    idx = np.arange(len(offsets))
    if len(source):
        idx[:n_whole] = (source[:, None] * block_length + np.arange(block_length)[None, :]).ravel()
    return offsets[idx] * scale, np.asarray(volume)[idx]


class CausalAugment(CounterfactualMethod):
    name = NAME
    stream = 3

    def __init__(self, config: CausalAugmentConfig) -> None:
        super().__init__()
        self.config = config

    def paths(self, ctx: Any, rng: Any) -> dict[tuple[int, int], Any]:
        import numpy as np

        from himari.plugin.api import bar_offsets, bars_from_offsets

        c, data, out = self.config, ctx.data, {}
        for a, b in sorted(ctx.splits["train"]):
            a = int(a) + (1 if int(a) == 0 else 0)  # the first bar of the data has no previous close
            b = int(b)
            if b - a < 2 * c.block_length:
                continue
            prev = float(data.close[a - 1])
            offsets = bar_offsets(data.open[a:b], data.high[a:b], data.low[a:b], data.close[a:b], prev)
            regime = block_regimes(offsets, c.block_length, c.regimes)
            source = bootstrap_blocks(regime, c.rate, rng)
            scale = float(np.exp(rng.uniform(-1, 1) * math.log1p(c.vol_scale))) if c.vol_scale > 0 else 1.0
            if scale == 1.0 and np.array_equal(source, np.arange(len(source))):
                continue
            new, volume = resample(offsets, data.volume[a:b], source, c.block_length, scale)
            out[(a, b)] = {**bars_from_offsets(new, prev), "volume": np.asarray(volume, dtype=np.float64)}
        return out


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(
        name=NAME, code="K3", config=CausalAugmentConfig, factory=CausalAugment,
        summary="counterfactual train paths (regime block bootstrap, volatility rescaling), features recomputed"))
