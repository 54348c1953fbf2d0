"""rare-events (K8): inject synthetic crashes, flash crashes, squeezes and volatility bursts into
the train period's price path, at a configured rate and a severity calibrated from the largest
moves of the train data, and recompute every feature and label from the modified bars.

Markets spend most of their time calm; a model trained on a year of 5-minute bars sees a handful
of crashes. This method shows it more, of the size the data says is possible, without touching
validation or test (stress testing with synthetic scenarios: e.g. Cont 2001, "Empirical
properties of asset returns: stylized facts and statistical issues"; scenario generation for
trading agents as in Wiese et al. 2020, "Quant GANs", here by hand-shaped events rather than a
generative model).

**Where.** Each epoch, each range of the train split is cut into slots of ``slot_bars`` bars; with
probability ``rate`` a slot gets one event, of a kind drawn uniformly from ``kinds``, at a random
position inside the slot (an event never leaves its slot, so events never overlap).

**Events**, applied to the bars as log offsets from the previous close (``bar_offsets``; a bar's
high and low widen to cover its new close):

- ``crash``: the close falls by ``D_crash`` (log) spread evenly over ``crash_bars`` bars, and the
  path continues from the lower level;
- ``flash-crash``: the close falls by ``D_flash`` over ``flash_bars`` bars and recovers exactly
  over the next ``recover_bars`` bars (the path rejoins the real one: at 5m the defaults are a
  10-minute drop and a 30-minute recovery);
- ``squeeze``: the close rises by ``U`` over ``squeeze_bars`` bars, then gives back half of it over
  ``recover_bars`` bars;
- ``vol-burst``: every offset of ``burst_bars`` bars times ``B`` (returns and ranges B times wider).

Volume is multiplied by ``volume_factor`` during an event.

**Calibration** (from the train split's real closes, once per run; ``q`` = ``quantile``, ``s`` =
``severity``): ``D_crash = s * -Q_q(r_crash_bars)`` and ``D_flash = s * -Q_q(r_flash_bars)``,
where ``r_k`` are the train split's k-bar log returns (``Q_q`` the q-quantile: with the default
q = 0.001 the depth of the 0.1% worst k-bar move); ``U = s * Q_(1-q)(r_squeeze_bars)``;
``B = max(1, s * Q_(1-q)(rv) / median(rv))`` with ``rv`` the rolling ``burst_bars``-bar standard
deviation of 1-bar log returns (the ratio of the wildest to the typical volatility). ``depth`` > 0
overrides ``D_crash``, ``D_flash`` and ``U`` with a fixed log move. The calibration is in the
method's state and in ``summary.json``.

**Stress report** (``after_training``): the best model scored on the validation split as it is
and on a *stress set* built the same way from the validation period (events at ``stress_rate``,
calibrated on the train split, drawn from a fixed generator so every run with the same seed sees
the same stress set): Sharpe, return and max drawdown of each, in ``summary.json`` under
``methods.rare-events``. ``benchmarks/stress_drawdown.py`` compares runs with and without the method.

Train only: validation and test bars, features and labels are never modified during training
(``counterfactual_context``); rows after a train range keep their prepared values. Supported
models: every paradigm (dataset-trained models get the epoch's train data rebuilt from the
modified rows, online-RL models an env source on the modified market); list it first in
``--method``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import CounterfactualMethod, TrainingMethodSpec, hookimpl

NAME = "rare-events"
KINDS = ("crash", "flash-crash", "squeeze", "vol-burst")


@dataclass(frozen=True)
class RareEventsConfig:
    rate: float = 0.1
    """Probability in [0, 1] that a slot of the train path gets an event."""
    slot_bars: int = 288
    """Bars per slot (288 = one day at 5m): at most one event per slot."""
    kinds: str = "crash,flash-crash,squeeze,vol-burst"
    """Comma-separated event kinds to draw from."""
    quantile: float = 0.001
    """q of the calibration: depths from the q-quantile of the train split's k-bar log returns."""
    severity: float = 1.0
    """Multiplier on the calibrated depth, height and burst factor."""
    depth: float = 0.0
    """A fixed log depth of crashes and flash crashes (and height of squeezes); 0: calibrated."""
    crash_bars: int = 12
    """Bars over which a crash falls."""
    flash_bars: int = 2
    """Bars over which a flash crash falls."""
    recover_bars: int = 6
    """Bars over which a flash crash recovers (fully) and a squeeze retraces (half)."""
    squeeze_bars: int = 6
    """Bars over which a squeeze rises."""
    burst_bars: int = 48
    """Bars of a volatility burst (also the calibration's volatility window)."""
    volume_factor: float = 3.0
    """Volume multiplier during an event."""
    stress_rate: float = 0.2
    """Probability in [0, 1] that a slot of the validation stress set gets an event."""

    def __post_init__(self) -> None:
        """Refused values name the field (the run config adds the method: ``plugins.rare-events``)."""
        for name in ("rate", "stress_rate"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not (0.0 < self.quantile < 0.5):
            raise ValueError(f"quantile must be in (0, 0.5), got {self.quantile!r}")
        for name in ("severity", "volume_factor"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(self.depth) and 0 <= self.depth < 5):
            raise ValueError(f"depth must be a log move in [0, 5) (0: calibrated), got {self.depth!r}")
        for name in ("slot_bars", "crash_bars", "flash_bars", "recover_bars", "squeeze_bars", "burst_bars"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        bad = [k for k in self.kind_list() if k not in KINDS]
        if bad or not self.kind_list():
            raise ValueError(f"kinds must be some of {','.join(KINDS)}, got {self.kinds!r}")
        longest = max(self.length(k) for k in self.kind_list())
        if longest > self.slot_bars:
            raise ValueError(f"slot_bars must hold the longest event ({longest} bars), got {self.slot_bars}")

    def kind_list(self) -> list[str]:
        return [k.strip() for k in str(self.kinds).split(",") if k.strip()]

    def length(self, kind: str) -> int:
        """Bars an event of ``kind`` spans."""
        return {"crash": self.crash_bars, "flash-crash": self.flash_bars + self.recover_bars,
                "squeeze": self.squeeze_bars + self.recover_bars, "vol-burst": self.burst_bars}[kind]


def calibrate(closes: list[Any], config: RareEventsConfig) -> dict[str, float]:
    """Event sizes from real closes (one array per train range; module docstring)."""
    import numpy as np
    import pandas as pd

    c = config

    def k_returns(k: int) -> Any:
        parts = [np.log(x[k:]) - np.log(x[:-k]) for x in closes if len(x) > k]
        return np.concatenate(parts) if parts else np.zeros(1)

    rv = np.concatenate([pd.Series(np.diff(np.log(x))).rolling(c.burst_bars).std(ddof=0).dropna().to_numpy()
                         for x in closes if len(x) > c.burst_bars + 1] or [np.ones(1)])
    med = float(np.median(rv))
    out = {
        "crash": c.severity * max(0.0, -float(np.quantile(k_returns(c.crash_bars), c.quantile))),
        "flash-crash": c.severity * max(0.0, -float(np.quantile(k_returns(c.flash_bars), c.quantile))),
        "squeeze": c.severity * max(0.0, float(np.quantile(k_returns(c.squeeze_bars), 1 - c.quantile))),
        "vol-burst": max(1.0, c.severity * float(np.quantile(rv, 1 - c.quantile)) / med) if med > 0 else 1.0,
    }
    if c.depth > 0:
        out.update({"crash": c.depth, "flash-crash": c.depth, "squeeze": c.depth})
    return out


def draw_events(n: int, config: RareEventsConfig, rate: float, rng: Any) -> list[tuple[str, int]]:
    """``(kind, start)`` of the events of an ``n``-bar path: one per slot with probability ``rate``."""
    kinds = config.kind_list()
    slots = n // config.slot_bars
    hit, which, where = rng.random(slots), rng.integers(0, len(kinds), slots), rng.random(slots)
    out = []
    for k in range(slots):
        if hit[k] < rate:
            kind = kinds[int(which[k])]
            room = config.slot_bars - config.length(kind)
            out.append((kind, k * config.slot_bars + min(int(where[k] * (room + 1)), room)))
    return out


def inject(offsets: Any, volume: Any, events: list[tuple[str, int]], sizes: dict[str, float],
           config: RareEventsConfig) -> tuple[Any, Any]:
    """Offsets and volume with ``events`` applied (module docstring)."""
    import numpy as np

    off, vol, c = np.array(offsets, dtype=np.float64), np.array(volume, dtype=np.float64), config
    for kind, s in events:
        size = sizes[kind]
        if kind == "crash":
            off[s:s + c.crash_bars, 3] -= size / c.crash_bars
        elif kind == "flash-crash":
            off[s:s + c.flash_bars, 3] -= size / c.flash_bars
            off[s + c.flash_bars:s + c.flash_bars + c.recover_bars, 3] += size / c.recover_bars
        elif kind == "squeeze":
            off[s:s + c.squeeze_bars, 3] += size / c.squeeze_bars
            off[s + c.squeeze_bars:s + c.squeeze_bars + c.recover_bars, 3] -= 0.5 * size / c.recover_bars
        else:
            off[s:s + c.burst_bars] *= size
        vol[s:s + c.length(kind)] *= c.volume_factor
    return off, vol


def event_paths(data: Any, ranges: list[tuple[int, int]], config: RareEventsConfig, sizes: dict[str, float],
                rate: float, rng: Any) -> tuple[dict[tuple[int, int], Any], int]:
    """Modified bars of each range that got an event, and the number of events."""
    import numpy as np

    from himari.plugin.api import bar_offsets, bars_from_offsets

    out, count = {}, 0
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        a += 1 if a == 0 else 0
        events = draw_events(b - a, config, rate, rng)
        if not events:
            continue
        prev = float(data.close[a - 1])
        off = bar_offsets(data.open[a:b], data.high[a:b], data.low[a:b], data.close[a:b], prev)
        new, vol = inject(off, data.volume[a:b], events, sizes, config)
        out[(a, b)] = {**bars_from_offsets(new, prev), "volume": np.asarray(vol, dtype=np.float64)}
        count += len(events)
    return out, count


class RareEvents(CounterfactualMethod):
    name = NAME
    stream = 8

    def __init__(self, config: RareEventsConfig) -> None:
        super().__init__()
        self.config = config
        self.sizes: dict[str, float] | None = None
        self.events = 0

    def calibration(self, ctx: Any) -> dict[str, float]:
        if self.sizes is None:
            import numpy as np

            closes = [np.asarray(ctx.data.close[int(a):int(b)], dtype=np.float64) for a, b in ctx.splits["train"]]
            self.sizes = calibrate(closes, self.config)
        return self.sizes

    def paths(self, ctx: Any, rng: Any) -> dict[tuple[int, int], Any]:
        paths, self.events = event_paths(ctx.data, list(ctx.splits["train"]), self.config, self.calibration(ctx),
                                         self.config.rate, rng)
        return paths

    def stress_set(self, ctx: Any) -> tuple[Any, Any, int]:
        """The validation period with events at ``stress_rate``: (counterfactual context, ranges, events)."""
        import numpy as np

        from himari.plugin.api import counterfactual_context

        ranges = [(int(a), int(b)) for a, b in ctx.splits["validation"]]
        rng = np.random.default_rng([int(ctx.seed), self.stream, 0x57E55])
        paths, count = event_paths(ctx.data, ranges, self.config, self.calibration(ctx), self.config.stress_rate, rng)
        return counterfactual_context(ctx, paths), ranges, count

    def after_training(self, policy: Any, ctx: Any) -> dict[str, Any]:
        from himari.plugin.api import evaluate_actions

        bpy = float(ctx.data.metadata.get("bars_per_year", 105_120))
        keys = ("sharpe", "total_return", "max_drawdown", "n_trades")
        stress, ranges, count = self.stress_set(ctx)
        real = evaluate_actions(ctx.data.open, ctx.data.close, ranges, policy.actions(ctx.data, ranges), ctx.env, bpy)
        hit = evaluate_actions(stress.data.open, stress.data.close, ranges,
                               policy.actions(stress.data, ranges, features=stress.features), ctx.env, bpy)
        return {"calibration": dict(self.calibration(ctx)), "stress_events": count,
                "validation": {k: real[k] for k in keys}, "stress": {k: hit[k] for k in keys}}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "calibration": self.sizes, "events": int(self.events)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sizes = dict(state["calibration"]) if state.get("calibration") else None
        self.events = int(state.get("events", 0))


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(
        name=NAME, code="K8", config=RareEventsConfig, factory=RareEvents,
        summary="synthetic crashes, flash crashes, squeezes, volatility bursts in train paths, features recomputed"))
