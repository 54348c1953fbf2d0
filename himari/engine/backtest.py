"""Fused many-strategy backtests and replays of fixed action sequences on the native core."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from himari.engine import args
from himari.engine._native import _core
from himari.engine.arrays import as_host_array, check_mode, is_device_array
from himari.engine.reward import RewardConfig, native_reward
from himari.errors import InvalidArgumentError

BARS_PER_YEAR_5M = 105_120
"""5-minute bars in a 365-day year of 24/7 trading."""

HELD_RUNS_MIN_STRATEGIES = 64
"""From this many strategies ``backtest_signals(method="auto")`` backtests long-flat metrics on the
CPU by held runs: their shared tables then cost a few percent of the per-bar kernel's time at
worst (signals that act on every bar, which go back to the per-bar kernel) and save 3-17x when
positions change on 10% down to 0.2% of the bars (docs/engine-api.md)."""


def _strategies(signals: Any) -> int:
    """M of signals ``[T, M]`` (1 for ``[T]``), without converting them; 0 when the shape is not
    one the backtester takes (it then says why)."""
    shape = getattr(signals, "shape", None)
    if shape is None:
        shape = np.shape(signals)
    return 1 if len(shape) == 1 else int(shape[1]) if len(shape) == 2 else 0


@dataclass(frozen=True)
class BacktestResult:
    """Per-strategy metrics, float64 arrays ``[M]``; definitions in docs/semantics.md."""

    total_return: np.ndarray
    annual_return: np.ndarray
    sharpe: np.ndarray
    sortino: np.ndarray
    max_drawdown: np.ndarray
    calmar: np.ndarray
    turnover: np.ndarray
    n_trades: np.ndarray
    win_rate: np.ndarray
    exposure: np.ndarray
    equity: np.ndarray | None = None
    """Equity at each close ``[T, M]`` (starts at 1) when requested."""

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "equity")

    @property
    def n_strategies(self) -> int:
        return int(self.total_return.shape[0])

    def to_dict(self, i: int = 0) -> dict[str, float]:
        """Metrics of strategy ``i`` as plain floats (JSON-ready)."""
        return {name: float(getattr(self, name)[i]) for name in self.metric_names()}

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per strategy."""
        import pandas as pd

        return pd.DataFrame({name: getattr(self, name) for name in self.metric_names()})


def hardware_threads() -> int:
    """CPUs this process may run on (its affinity on Linux; at least 1): what
    ``backtest_signals(threads=0)`` uses."""
    return int(_core.hardware_threads())


def _checked_threads(threads: Any) -> int:
    """0 (every hardware thread) or a count >= 1, within the native int."""
    try:
        return args.integer("threads", threads, maximum=args.INT32_MAX)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"threads: expected 0 (every hardware thread) or a count in [1, {args.INT32_MAX}], got {threads!r}") from None


def backtest_plan(n_bars: int, n_strategies: int, *, threads: int = 0,
                  return_equity: bool = False) -> tuple[str, int]:
    """How ``backtest_signals`` on the CPU would share this work between ``threads`` threads:
    ``("sequential" | "strategies" | "time_scan", threads used)`` (docs/engine-api.md)."""
    # backtest_signals refuses these sizes; a plan for them would describe a call that cannot run
    n_bars = args.integer("n_bars", n_bars, minimum=2)
    n_strategies = args.integer("n_strategies", n_strategies, minimum=1)
    threads = _checked_threads(threads)
    split, workers = _core.backtest_plan(n_bars, n_strategies, args.flag("return_equity", return_equity), threads)
    return str(split), int(workers)


def _as_columns(actions: Any) -> tuple[Any, bool]:
    """Actions ``[T]`` as one column ``[T, 1]`` (and whether to squeeze results back); ``[T, M]``
    and anything the binding must reject pass through unchanged."""
    arr = as_host_array(actions)
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        return arr.reshape(-1, 1), True
    return arr, False


def _host_prices(x: Any) -> Any:
    """Prices are small: a CUDA tensor of them is copied to the host for validation."""
    if is_device_array(x) and hasattr(x, "cpu"):
        return x.cpu().numpy()
    return as_host_array(x)


def backtest_signals(
    open: Any,
    close: Any,
    signals: Any,
    *,
    fee: float = 1e-3,
    slippage: float = 5e-4,
    mode: str = "long_flat",
    bars_per_year: float = BARS_PER_YEAR_5M,
    return_equity: bool = False,
    device: str = "cpu",
    threads: int = 1,
    method: str = "auto",
) -> BacktestResult:
    """Backtest M action sequences over one price series in a single native pass.

    ``signals`` is an integer array ``[T, M]`` (or ``[T]`` for one strategy) of actions
    (0 SELL, 1 HOLD, 2 BUY) decided at each close and filled at the next open, of a dtype in
    ``ACTION_DTYPES``. Fills, costs and marking are exactly those of VecTradingEnv.

    ``device="cuda"`` runs a scan over time (chunks of bars x strategies in parallel; the same
    positions and counts as the CPU, equity-derived metrics to rounding), or one GPU thread
    per strategy when ``return_equity`` asks for the curve (docs/cuda.md). ``signals`` may then
    be a CUDA array (torch tensor, CuPy array: read in place) or a host array (copied over
    once). Metrics come back as numpy; ``equity`` as a torch tensor on the GPU (a
    ``DeviceArray`` without torch).

    ``threads`` (CPU only): 1, the default, runs on the calling thread, so that callers that
    already run many backtests side by side (sweeps, walk-forward folds) do not oversubscribe the
    cores; 0 uses every hardware thread; n > 1 up to n. Many strategies are split between the
    threads (the same numbers as one thread, bit for bit); a few strategies over many bars,
    metrics only, run as a scan over time (the same positions and counts, equity-derived metrics
    to rounding, ~1e-12 relative); small backtests stay on one thread (docs/engine-api.md).

    ``method``: ``"auto"`` (the default) takes ``"held_runs"`` for long-flat metrics of at least
    ``HELD_RUNS_MIN_STRATEGIES`` strategies on the CPU, else ``"per_bar"``, the kernel every
    path is pinned to. ``"held_runs"`` (CPU, ``long_flat``, metrics only) does account maths only at each
    strategy's fills: per bar it checks whether the action changes the position, and a held run
    is summed through prefix sums and a range tree over the closes that every strategy shares.
    Trades, fills and total returns come out bit for bit as ``"per_bar"``'s, Sharpe, Sortino and
    drawdown to rounding (~1e-12 relative); it pays for strategies that change position on a
    small share of the bars (several times faster at one change in 50 bars; blocks that trade
    on more than an eighth of their bars go back to the per-bar kernel). Its tables (about 50
    bytes a bar) cost what three or four strategies do per bar: for a handful, ``"per_bar"``.
    """
    from himari.engine.device import as_framework_array, check_device, current_stream, device_index

    mode = check_mode(mode)
    if method not in ("auto", "per_bar", "held_runs"):
        raise InvalidArgumentError(f"method: expected 'auto', 'per_bar' or 'held_runs', got {method!r}")
    if method == "auto":
        method = "held_runs" if (device == "cpu" and mode == "long_flat" and not return_equity
                                 and _strategies(signals) >= HELD_RUNS_MIN_STRATEGIES) else "per_bar"
    if method == "held_runs" and (device != "cpu" or return_equity or mode != "long_flat"):
        raise InvalidArgumentError(
            "method='held_runs' computes the metrics of long_flat signals on the CPU: it needs device='cpu', "
            f"mode='long_flat' and return_equity=False (got device={device!r}, mode={mode!r}, "
            f"return_equity={return_equity!r})")
    device = check_device(device)
    on_gpu = device != "cpu"
    threads = _checked_threads(threads)
    if on_gpu and threads != 1:
        raise InvalidArgumentError(f"threads: applies to device='cpu' only (the GPU runs its own threads), got "
                                   f"{threads!r} with device={device!r}")
    fee, slippage = args.real("fee", fee), args.real("slippage", slippage)
    bars_per_year = args.real("bars_per_year", bars_per_year)
    return_equity = args.flag("return_equity", return_equity)
    if method == "held_runs":
        metrics = _core.backtest_signals_held_runs(
            as_host_array(open), as_host_array(close), _as_columns(signals)[0], fee, slippage, mode, bars_per_year,
            threads,
        )
        names = BacktestResult.metric_names()
        return BacktestResult(**{n: np.ascontiguousarray(metrics[:, i]) for i, n in enumerate(names)}, equity=None)
    if on_gpu and is_device_array(signals):
        sig = signals.reshape(-1, 1) if len(signals.shape) == 1 else signals
    else:
        sig = _as_columns(signals)[0]
    if on_gpu:
        index = device_index(device)
        metrics, equity = _core.backtest_signals_cuda(
            _host_prices(open), _host_prices(close), sig, fee, slippage, mode, bars_per_year, return_equity,
            index, current_stream(index),
        )
        equity = None if equity is None else as_framework_array(equity)
    else:
        metrics, equity = _core.backtest_signals(
            as_host_array(open), as_host_array(close), sig, fee, slippage, mode, bars_per_year, return_equity,
            device, threads,
        )
    names = BacktestResult.metric_names()
    return BacktestResult(**{n: np.ascontiguousarray(metrics[:, i]) for i, n in enumerate(names)}, equity=equity)


@dataclass(frozen=True)
class ReplayResult:
    """What the env would have produced for fixed action sequences (docs/engine-api.md)."""

    reward: np.ndarray
    """Shaped reward of the decision at bar t, ``[T-1, M]``."""
    equity: np.ndarray
    """Equity at each close, ``[T, M]``."""
    position: np.ndarray
    """Position held after the decision at t-1, ``[T, M]`` (row 0 is 0)."""
    account: np.ndarray
    """The env's 4 account columns seen at decision t, ``[T, M, 4]`` float32."""


def replay_actions(
    open: Any,
    close: Any,
    actions: Any,
    *,
    fee: float = 1e-3,
    slippage: float = 5e-4,
    mode: str = "long_flat",
    reward: RewardConfig | None = None,
) -> ReplayResult:
    """Run the env's reward function over fixed action sequences ``[T]`` or ``[T, M]`` (integers
    of a dtype in ``ACTION_DTYPES``).

    Offline datasets use this so their rewards are exactly what the online env would pay.
    """
    mode = check_mode(mode)
    acts, squeeze = _as_columns(actions)
    cfg = reward if reward is not None else RewardConfig()
    r, e, p, a = _core.replay_actions(
        as_host_array(open), as_host_array(close), acts, args.real("fee", fee), args.real("slippage", slippage), mode,
        native_reward(cfg),
    )
    if squeeze:
        r, e, p, a = r[:, 0], e[:, 0], p[:, 0], a[:, 0, :]
    return ReplayResult(reward=r, equity=e, position=p, account=a)
