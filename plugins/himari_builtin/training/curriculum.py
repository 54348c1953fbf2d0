"""curriculum (K1): train on easy market windows first, then mixed ones, then the whole train
split (Bengio et al. 2009, "Curriculum Learning").

Difficulty is measured on the train split only, on fixed windows: consecutive, non-overlapping
blocks of ``window_bars`` rows from the start of each train range (a range's tail shorter than a
window belongs to no window). For a window of closes ``c_0 .. c_{n-1}`` with log returns
``x_i = log(c_i / c_{i-1})`` (n - 1 of them):

- realised volatility ``vol = std(x)`` (population, ddof 0);
- trend strength ``trend = |sum(x)| / (vol * sqrt(n - 1))``: the net move in units of what a
  random walk of that volatility would drift (0 when ``vol`` is 0).

Stages: 1 (easy) = windows with ``vol <= quantile(vol, easy_vol_quantile)`` and
``trend >= quantile(trend, easy_trend_quantile)`` (calm and trending); 2 (medium) = the easy
windows and every window with ``vol <= quantile(vol, medium_vol_quantile)`` (mixed, without the
most volatile and crash windows); 3 (hard) = the whole train split. Quantiles are NumPy's linear
ones over all windows. Stage boundaries are by epoch: ``easy_epochs`` epochs of stage 1, then
``medium_epochs`` of stage 2, then stage 3 to the end.

Supervised models: the ``epoch_dataset`` hook keeps the examples whose row (the dataset's
``example_rows``) lies in the stage's windows, so the epoch's batches (the sampler's length)
follow the stage. Online RL: the ``env_source`` hook gives the training envs one run of
consecutive stage windows per epoch (drawn from ``(seed, epoch)``, weighted by length, among the
runs long enough for the model's ``observation_window``), and the envs draw their episode starts
inside it; stage 3 keeps the default source. Preprocessing is fitted
once on the whole train split, so its statistics carry across stages. A stage that would be empty
is refused before training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl

STAGES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class CurriculumConfig:
    window_bars: int = 288
    """Bars per difficulty window (288 five-minute bars: one day); >= 3."""
    easy_vol_quantile: float = 0.5
    """Stage 1 windows have a volatility at most this quantile of the windows' volatilities, in [0, 1]."""
    easy_trend_quantile: float = 0.5
    """... and a trend strength at least this quantile of the windows' trend strengths, in [0, 1]."""
    medium_vol_quantile: float = 0.8
    """Stage 2 adds every window whose volatility is at most this quantile, in [0, 1]."""
    easy_epochs: int = 1
    """Epochs of stage 1 (from the first); >= 0."""
    medium_epochs: int = 1
    """Epochs of stage 2 after them; >= 0. Later epochs train on the whole train split."""

    def __post_init__(self) -> None:
        if self.window_bars < 3:
            raise ValueError(f"window_bars must be >= 3, got {self.window_bars}")
        for name in ("easy_vol_quantile", "easy_trend_quantile", "medium_vol_quantile"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        for name in ("easy_epochs", "medium_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def window_difficulty(close: Any, ranges: Any, window_bars: int) -> list[tuple[int, int, float, float]]:
    """``(a, b, vol, trend)`` of each window ``[a, b)`` of ``ranges`` (definitions in the module
    docstring)."""
    import numpy as np

    out = []
    for a0, b0 in ranges:
        for a in range(int(a0), int(b0) - window_bars + 1, window_bars):
            x = np.diff(np.log(np.asarray(close[a:a + window_bars], dtype=np.float64)))
            vol = float(x.std())
            trend = abs(float(x.sum())) / (vol * math.sqrt(len(x))) if vol > 0 else 0.0
            out.append((a, a + window_bars, vol, trend))
    return out


def stage_windows(windows: list[tuple[int, int, float, float]], cfg: CurriculumConfig) -> dict[int, list[tuple[int, int]]]:
    """The windows ``[a, b)`` of stages 1 and 2."""
    import numpy as np

    if not windows:
        return {1: [], 2: []}
    vol = np.array([w[2] for w in windows])
    trend = np.array([w[3] for w in windows])
    easy = (vol <= np.quantile(vol, cfg.easy_vol_quantile)) & (trend >= np.quantile(trend, cfg.easy_trend_quantile))
    medium = easy | (vol <= np.quantile(vol, cfg.medium_vol_quantile))
    return {s: [(w[0], w[1]) for w, keep in zip(windows, mask) if keep] for s, mask in ((1, easy), (2, medium))}


def runs_of(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent windows merged into runs of consecutive bars."""
    runs: list[tuple[int, int]] = []
    for a, b in sorted(windows):
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


class Curriculum:
    def __init__(self, config: CurriculumConfig) -> None:
        self.config = config
        self.windows: list[tuple[int, int, float, float]] = []
        self.stages: dict[int, list[tuple[int, int]]] = {1: [], 2: []}
        self.log: list[dict[str, int]] = []
        """One record per epoch started: epoch, stage, and the examples (or bars) it trained on."""
        self.min_run = 3
        """Bars an online model's training market needs: its observation window + 2 (a window
        ending at the first decision, and a next bar to fill at)."""

    def stage(self, epoch: int) -> int:
        """1, 2 or 3: the stage of ``epoch`` (0-based)."""
        c = self.config
        return 1 if epoch < c.easy_epochs else 2 if epoch < c.easy_epochs + c.medium_epochs else 3

    # -- set-up: measure the windows, refuse an empty stage ---------------------------------------
    def env_config(self, env: Any, ctx: Any) -> Any:
        from himari.plugin.api import ConfigError

        c = self.config
        self.windows = window_difficulty(ctx.data.close, ctx.splits["train"], c.window_bars)
        self.stages = stage_windows(self.windows, c)
        for s, epochs in ((1, c.easy_epochs), (2, c.medium_epochs)):
            if epochs and not self.stages[s]:
                raise ConfigError(
                    f"curriculum: stage {s} ({STAGES[s - 1]}) would be empty: the train split has "
                    f"{len(self.windows)} window(s) of window_bars={c.window_bars} and none passes "
                    f"easy_vol_quantile={c.easy_vol_quantile}, easy_trend_quantile={c.easy_trend_quantile}"
                    + (f", medium_vol_quantile={c.medium_vol_quantile}" if s == 2 else "")
                    + "; lower window_bars or set that stage's epochs to 0")
        return env

    def model_built(self, model: Any, ctx: Any) -> None:
        """An online model reads windows of ``observation_window`` bars (flag-trader: its
        ``context_length``): refuse up front a stage with no run of consecutive stage windows long
        enough for them, rather than fail in the epoch that draws one, after checkpoints."""
        from himari.plugin.api import ConfigError

        if not callable(getattr(model, "rollout", None)) or not self.windows:
            return
        window = int(getattr(model, "observation_window", 1))
        self.min_run = window + 2
        c = self.config
        for s, epochs in ((1, c.easy_epochs), (2, c.medium_epochs)):
            runs = runs_of(self.stages[s])
            if epochs and not any(b - a >= self.min_run for a, b in runs):
                longest = max((b - a for a, b in runs), default=0)
                raise ConfigError(
                    f"curriculum: stage {s} ({STAGES[s - 1]}) has no run of consecutive stage windows of at least "
                    f"{self.min_run} bars, which the model's observation window of {window} bars needs (its longest "
                    f"run is {longest} bars, window_bars={c.window_bars}); raise curriculum.window_bars, shorten "
                    f"the model's window, or set that stage's epochs to 0")

    def dataset(self, dataset: Any, ctx: Any, split: str) -> Any:
        """Refuse up front a train dataset whose stages would have no example."""
        if split == "train":
            for s, epochs in ((1, self.config.easy_epochs), (2, self.config.medium_epochs)):
                if epochs and len(self._keep(dataset, s)) == 0:
                    from himari.plugin.api import ConfigError

                    raise ConfigError(f"curriculum: stage {s} ({STAGES[s - 1]}) would have no training example "
                                      f"(window_bars={self.config.window_bars})")
        return dataset

    def _keep(self, dataset: Any, stage: int) -> Any:
        """Indices of ``dataset``'s examples whose row lies in the windows of ``stage``."""
        import numpy as np

        from himari.plugin.api import ConfigError

        rows = getattr(dataset, "example_rows", None)
        if rows is None:
            raise ConfigError("curriculum: the model's train dataset does not say which row each example is "
                              "(example_rows), so its examples cannot be put into stages")
        rows = np.asarray(rows)
        inside = np.zeros(len(rows), dtype=bool)
        for a, b in self.stages[stage]:
            inside |= (rows >= a) & (rows < b)
        return np.flatnonzero(inside)

    # -- per epoch -----------------------------------------------------------------------------
    def epoch_dataset(self, dataset: Any, ctx: Any) -> Any:
        stage = self.stage(ctx.epoch)
        out = dataset if stage == 3 else _Subset(dataset, self._keep(dataset, stage))
        self._record(ctx.epoch, stage, len(out))
        return out

    def env_source(self, source: Any, ctx: Any) -> Any:
        import numpy as np

        from himari.plugin.api import EnvSource

        stage = self.stage(ctx.epoch)
        if stage == 3:
            self._record(ctx.epoch, stage, len(source.close))
            return source
        runs = [(a, b) for a, b in runs_of(self.stages[stage]) if b - a >= self.min_run]  # model_built: not empty
        lengths = np.array([b - a for a, b in runs], dtype=np.float64)
        rng = np.random.default_rng([int(ctx.seed), int(ctx.epoch), 0x4B31])
        a, b = runs[int(rng.choice(len(runs), p=lengths / lengths.sum()))]
        data = ctx.data
        self._record(ctx.epoch, stage, b - a)
        open_ = np.array(data.open[a:b], dtype=np.float64)
        close = np.array(data.close[a:b], dtype=np.float64)
        features = np.array(ctx.features[a:b], dtype=np.float32)
        if source.rows is not None:  # the market it was handed (a method before it may have changed bars)
            rows = np.asarray(source.rows, dtype=np.int64)
            inside = (rows >= a) & (rows < b)
            at = rows[inside] - a
            open_[at], close[at], features[at] = source.open[inside], source.close[inside], source.features[inside]
        return EnvSource(open=open_, close=close, features=features, config=source.config,
                         rows=np.arange(a, b, dtype=np.int64), warmup=0)

    def _record(self, epoch: int, stage: int, size: int) -> None:
        self.log = [r for r in self.log if r["epoch"] != epoch]  # a resumed epoch is recorded once
        self.log.append({"epoch": epoch, "stage": stage, "size": int(size)})

    def after_training(self, policy: Any, ctx: Any) -> dict[str, Any]:
        return {"windows": len(self.windows), "easy_windows": len(self.stages[1]),
                "medium_windows": len(self.stages[2]), "epochs": list(self.log)}

    def state_dict(self) -> dict[str, Any]:
        return {"log": [dict(r) for r in self.log]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log = [dict(r) for r in state.get("log", [])]


class _Subset:
    """The examples ``index`` of ``inner`` (batches are fetched by a LongTensor of positions)."""

    def __init__(self, inner: Any, index: Any) -> None:
        import torch

        self.inner = inner
        self.index = torch.as_tensor(index, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: Any) -> Any:
        return self.inner[self.index[idx]]


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(
        name="curriculum", code="K1",
        summary="easy (calm, trending) windows first, then mixed ones, then the whole train split",
        config=CurriculumConfig, factory=Curriculum, paradigms=("supervised", "online-rl")))
