"""The report's plotly figures, drawn from the targets' per-bar series.

Every line of a figure is a strategy's per-bar table: the equity after costs (log scale, so equal
percentage moves look equal in a bull and a bear market), its drawdown below the running peak,
its rolling annualised Sharpe ratio, and, per target, the position it held over the price with
the decisions that changed it. Buy-and-hold is drawn once for each distinct market (several
targets scored on the same bars share one line); the other baselines of an evaluation are in the
legend, hidden until clicked.

A year of 5-minute bars is 105,120 points per line; lines longer than ``max_points`` keep the
first and last bar and the lowest and highest point of every bucket of bars, so each drawdown
and each peak stays visible at a fraction of the page's weight. Times are numbers (milliseconds
since the epoch on a date axis): plotly embeds them as binary arrays rather than date strings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from himari.data.intervals import bars_per_year
from himari.errors import ConfigError
from himari.evaluation.html_report.target import BUY_AND_HOLD, ReportTarget, bar_seconds, strategy_label, timestamps_ms

MAX_POINTS = 4000
"""Most points drawn per line; longer series are decimated (``decimate``)."""

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
BASELINE_COLOUR = "#555555"
FIGURE_HEIGHT = 420


@dataclass
class Line:
    """One strategy's series, named and coloured for every figure it appears in."""

    name: str
    target: ReportTarget
    strategy: str
    table: Any
    colour: str
    baseline: bool
    visible: bool | str = True


def decimate(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of the points of ``y`` to draw: all of them when there are at most ``max_points``,
    else the first and last point and, in each of ``max_points // 2`` buckets of consecutive
    points, the lowest and the highest (in order), so no peak or trough disappears."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(max_points // 2, 1)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep = [0, n - 1]
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            part = y[a:b]
            keep.append(a + int(np.nanargmin(part)) if np.isfinite(part).any() else a)
            keep.append(a + int(np.nanargmax(part)) if np.isfinite(part).any() else b - 1)
    return np.unique(np.asarray(keep, dtype=np.int64))


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak of ``equity`` at every bar (0 at a new high, -0.25 a
    quarter below it)."""
    equity = np.asarray(equity, dtype=np.float64)
    return equity / np.maximum.accumulate(equity) - 1.0


def rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """Annualised Sharpe ratio of the last ``window`` per-bar returns at every bar: their mean
    over their sample standard deviation times sqrt(bars per year), the definition of the
    metrics. NaN before ``window`` bars and where the returns do not vary (flat: no ratio)."""
    import pandas as pd

    r = pd.Series(np.asarray(returns, dtype=np.float64))
    mean = r.rolling(window).mean().to_numpy()
    sd = r.rolling(window).std(ddof=1).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = mean / sd * math.sqrt(periods_per_year)
    out[~(sd > 1e-12)] = np.nan
    return out


def default_window(targets: Sequence[ReportTarget]) -> int:
    """Bars in 30 days at the first target's bar interval, at most a fifth of the shortest model
    series (so the line has room to move), at least 2."""
    first = next(iter(targets[0].models.values()))
    month = int(round(30 * 86400 / bar_seconds(first)))
    shortest = min(len(t) for target in targets for t in target.models.values())
    return max(2, min(month, shortest // 5))


def _market_key(table: Any) -> str:
    h = hashlib.sha256(timestamps_ms(table).tobytes())
    h.update(np.ascontiguousarray(table["equity"].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


def lines(targets: Sequence[ReportTarget]) -> list[Line]:
    """Every line to draw: each target's model series, then buy-and-hold once per distinct series
    (identical bars and equity), then the other baselines (hidden until clicked in the legend)."""
    out: list[Line] = []
    colour = 0
    for target in targets:
        for strategy, table in target.models.items():
            name = target.label if len(target.models) == 1 else f"{target.label} · {strategy_label(strategy)}"
            out.append(Line(name, target, strategy, table, PALETTE[colour % len(PALETTE)], False))
            colour += 1
    seen: set[str] = set()
    for target in targets:
        for strategy, table in sorted(target.baselines.items(), key=lambda kv: kv[0] != BUY_AND_HOLD):
            key = f"{strategy}:{_market_key(table)}"
            if key in seen:
                continue
            first = not any(line.strategy == strategy for line in out if line.baseline)
            seen.add(key)
            name = strategy if first else f"{strategy} ({target.label})"
            hidden = strategy != BUY_AND_HOLD
            out.append(Line(name, target, strategy, table, BASELINE_COLOUR if not hidden else "#999999", True,
                            "legendonly" if hidden else True))
    return out


def _layout(fig: Any, title: str, yaxis: dict[str, Any], height: int = FIGURE_HEIGHT) -> Any:
    fig.update_layout(title=title, template="plotly_white", height=height, hovermode="x unified",
                      margin={"l": 60, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -50 / height, "x": 0})
    fig.update_xaxes(type="date")
    fig.update_yaxes(**yaxis)
    return fig


def _trace(line: Line, y: np.ndarray, max_points: int, **kwargs: Any) -> Any:
    import plotly.graph_objects as go

    x = timestamps_ms(line.table)
    keep = decimate(y, max_points)
    style = {"color": line.colour, "width": 1.2 if line.baseline else 1.6}
    if line.baseline:
        style["dash"] = "dash"
    return go.Scatter(x=x[keep], y=np.asarray(y, dtype=np.float64)[keep], name=line.name, mode="lines",
                      line=style, visible=line.visible, legendgroup=line.name, **kwargs)


def log_ticks(lo: float, hi: float) -> list[float] | None:
    """Tick values for a log axis from ``lo`` to ``hi``: 1, 2 and 5 times the powers of ten in
    that span (every digit when that gives fewer than four), or None (plotly's own ticks) for
    a span too narrow for either. plotly's default labels the minor digits of every decade of
    a wide span, which crowds the axis into illegible stacks."""
    if not (lo > 0 and hi > lo and math.isfinite(hi)):
        return None
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [float(f"{m}e{d}") for d in decades for m in mantissas if lo <= float(f"{m}e{d}") <= hi]
        if len(ticks) >= 4:
            return ticks
    return None


def equity_figure(all_lines: Sequence[Line], max_points: int = MAX_POINTS) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure([_trace(line, line.table["equity"].to_numpy(), max_points) for line in all_lines])
    shown = [line.table["equity"].to_numpy() for line in all_lines if line.visible is True]
    values = np.concatenate(shown) if shown else np.ones(1)
    values = values[np.isfinite(values) & (values > 0)]
    ticks = log_ticks(float(values.min()), float(values.max())) if len(values) else None
    axis: dict[str, Any] = {"type": "log", "title": "equity (start = 1)"}
    if ticks:
        axis.update(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return _layout(fig, "Equity after costs against buy-and-hold (log scale)", axis)


def drawdown_figure(all_lines: Sequence[Line], max_points: int = MAX_POINTS) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure([_trace(line, drawdown(line.table["equity"].to_numpy()), max_points)
                     for line in all_lines])
    return _layout(fig, "Drawdown below the running peak (underwater)",
                   {"tickformat": ".0%", "title": "drawdown", "rangemode": "tozero"})


def rolling_sharpe_figure(all_lines: Sequence[Line], window: int, max_points: int = MAX_POINTS) -> Any:
    import plotly.graph_objects as go

    traces = []
    for line in all_lines:
        bpy = bars_per_year(max(int(round(bar_seconds(line.table))), 1))
        traces.append(_trace(line, rolling_sharpe(line.table["return"].to_numpy(), window, bpy), max_points,
                             connectgaps=False))
    fig = go.Figure(traces)
    fig.add_hline(y=0.0, line={"color": "#999999", "width": 1})
    days = window * bar_seconds(next(iter(all_lines)).table) / 86400
    return _layout(fig, f"Rolling Sharpe ratio, annualised ({window:,} bars, about {days:.3g} days)",
                   {"title": "Sharpe"})


def position_changes(table: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the decisions that raised (BUY) and lowered (SELL) the position: the position
    over bar i+1 differs from the one over bar i, within a range (every range starts flat, so
    the step between two ranges is no decision)."""
    pos = table["position"].to_numpy(dtype=np.int64)
    rng = table["range"].to_numpy()
    step = np.diff(pos)
    same = rng[1:] == rng[:-1]
    return np.flatnonzero(same & (step > 0)), np.flatnonzero(same & (step < 0))


def positions_figure(targets: Sequence[ReportTarget], max_points: int = MAX_POINTS) -> Any:
    """Per target (its first model series), the close price with the position held over it
    (shaded, right axis: -1 short, 0 flat, 1 long) and a marker on each decision that changed it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = [f"{t.label} · {strategy_label(next(iter(t.models)))}" if len(t.models) > 1 else t.label
              for t in targets]
    height = max(FIGURE_HEIGHT, 320 * len(targets) + 100)
    fig = make_subplots(rows=len(targets), cols=1, subplot_titles=titles, vertical_spacing=90 / height,
                        specs=[[{"secondary_y": True}] for _ in targets])
    for row, target in enumerate(targets, start=1):
        table = next(iter(target.models.values()))
        x = timestamps_ms(table)
        close = table["close"].to_numpy(dtype=np.float64)
        pos = table["position"].to_numpy(dtype=np.float64)
        first = row == 1
        keep = decimate(close, max_points)
        fig.add_trace(go.Scatter(x=x[keep], y=close[keep], name="close", mode="lines", legendgroup="close",
                                 showlegend=first, line={"color": "#444444", "width": 1}), row=row, col=1)
        # the position is a step function: its change points draw it exactly, however long the series
        change = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1], True][:len(pos)])
        change = np.unique(np.r_[change, len(pos) - 1])
        fig.add_trace(go.Scatter(x=x[change], y=pos[change], name="position", mode="lines", line_shape="hv",
                                 legendgroup="position", showlegend=first, fill="tozeroy",
                                 line={"color": "rgba(31,119,180,0.6)", "width": 1},
                                 fillcolor="rgba(31,119,180,0.15)"), row=row, col=1, secondary_y=True)
        buys, sells = position_changes(table)
        for rows, name, symbol, colour in ((buys, "BUY", "triangle-up", "#2ca02c"),
                                           (sells, "SELL", "triangle-down", "#d62728")):
            fig.add_trace(go.Scatter(x=x[rows], y=close[rows], name=name, mode="markers", legendgroup=name,
                                     showlegend=first, marker={"symbol": symbol, "color": colour, "size": 8}),
                          row=row, col=1)
        fig.update_yaxes(title_text="close", row=row, col=1, secondary_y=False)
        fig.update_yaxes(title_text="position", range=[-1.1, 1.1], tickvals=[-1, 0, 1], row=row, col=1,
                         secondary_y=True, showgrid=False)
    return _layout(fig, "Position and trades over the price (markers: decisions that changed the position)", {},
                   height=height)


def action_mix_figure(targets: Sequence[ReportTarget]) -> Any:
    """Stacked shares of SELL/HOLD/BUY decisions per fold (an evaluation: the mean over seeds;
    a run: per range of its split)."""
    import plotly.graph_objects as go

    many = len(targets) > 1
    cats: list[list[str]] = [[], []]
    shares: dict[str, list[float]] = {"SELL": [], "HOLD": [], "BUY": []}
    for target in targets:
        for fold, mix in target.fold_actions:
            cats[0].append(target.label)
            cats[1].append(fold)
            for action in shares:
                shares[action].append(float(mix.get(action, 0.0)))
    x = cats if many else cats[1]
    colours = {"SELL": "#d62728", "HOLD": "#bbbbbb", "BUY": "#2ca02c"}
    fig = go.Figure([go.Bar(x=x, y=shares[a], name=a, marker_color=colours[a],
                            hovertemplate="%{y:.1%}") for a in shares])
    fig.update_layout(barmode="stack", title="Action mix per fold (share of decisions)", template="plotly_white",
                      height=FIGURE_HEIGHT, margin={"l": 60, "r": 20, "t": 60, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15 if not many else -0.25, "x": 0})
    fig.update_yaxes(tickformat=".0%", range=[0, 1], title="share of decisions")
    return fig


def build_figures(targets: Sequence[ReportTarget], window: int | None = None,
                  max_points: int = MAX_POINTS) -> list[tuple[str, Any]]:
    """(section id, figure) of every figure of the report, in page order."""
    if not targets:
        raise ConfigError("nothing to report: give at least one target")
    if window is not None and window < 2:
        raise ConfigError(f"--window: a rolling Sharpe ratio needs at least 2 bars, got {window}")
    shortest = min(len(t) for target in targets for t in target.models.values())
    if window is not None and window > shortest:
        raise ConfigError(f"--window {window}: longer than the shortest series ({shortest:,} bars), whose rolling "
                          f"Sharpe ratio would be empty; give at most {shortest:,}")
    all_lines = lines(targets)
    w = window or default_window(targets)
    return [("equity", equity_figure(all_lines, max_points)),
            ("drawdown", drawdown_figure(all_lines, max_points)),
            ("rolling-sharpe", rolling_sharpe_figure(all_lines, w, max_points)),
            ("positions", positions_figure(targets, max_points)),
            ("action-mix", action_mix_figure(targets))]
