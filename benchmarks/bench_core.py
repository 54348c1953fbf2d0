#!/usr/bin/env python
"""By-hand benchmark of the himari native core against the tools a user would otherwise use.

NOT a test: run it by hand, on an otherwise idle machine, and read the table.

    python benchmarks/bench_core.py            # full sizes (a few minutes)
    python benchmarks/bench_core.py --quick    # smoke run with small sizes (well under a minute)
    python benchmarks/bench_core.py --json out.json --only env ekf

Everything runs in one process pinned to one core, with BLAS/OpenMP/numba threads set to 1
before numpy is imported. Each number is the median of several warm repeats; JIT / compile
time (numba, vectorbt) is measured separately and reported, never mixed into a throughput.

Peers that are not installed are reported as skipped. When `himari.engine` does not import
(no native build yet) the peers still run and the himari column reads n/a.

See benchmarks/README.md for what exactly is measured and how the NumPy peer env implements the
execution contract of docs/semantics.md.
"""

from __future__ import annotations

import os
import sys

# --- single core, single thread: must happen before numpy (or anything importing it) loads ---
for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ[_var] = "1"


def _early_cpu_arg(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == "--cpu" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--cpu="):
            return int(a.split("=", 1)[1])
    return 0


_PIN_CPU = _early_cpu_arg(sys.argv[1:])
try:
    _ALL_CPUS = os.sched_getaffinity(0)  # the backtest's threads=0 row runs on these
except AttributeError:
    _ALL_CPUS = None
try:
    os.sched_setaffinity(0, {_PIN_CPU})
    _PINNED = sorted(os.sched_getaffinity(0))
except (AttributeError, OSError) as _exc:  # not Linux, or the cpu is not available
    _PINNED = f"not pinned ({_exc})"

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SELL, HOLD, BUY = 0, 1, 2
FEE = 1e-3
SLIPPAGE = 5e-4
BANKRUPT_EQUITY = 1e-12

# docs/ekf.md defaults (used when himari is absent; checked against EKFParams() when present)
EKF_DEFAULTS = dict(
    q_level=1e-6,
    q_velocity=1e-10,
    q_acceleration=1e-14,
    q_log_variance=0.05,
    r_level=2.5e-7,
    r_log_square=math.pi**2 / 2,
    square_floor=1e-10,
    phi=0.99,
    mu=-13.0,
    p0_level=1e-4,
    p0_velocity=1e-8,
    p0_acceleration=1e-12,
    p0_log_variance=1.0,
)


# ============================================================================================
# small utilities
# ============================================================================================


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def time_calls(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of `repeats` calls of fn() after `warmup` untimed calls (gc off while timing)."""
    for _ in range(warmup):
        fn()
    times = []
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    return times


def time_interleaved(fns: dict, repeats: dict | int, warmup: int = 1) -> dict:
    """Round-robin timing of several callables: round r times every fn that still needs a repeat.
    On a machine with background load this spreads the noise over all contenders instead of
    letting one of them take a quiet or a busy stretch alone. Returns {name: [seconds, ...]}."""
    if isinstance(repeats, int):
        repeats = {k: repeats for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    gc_was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(max(repeats.values())):
            for k, fn in fns.items():
                if r < repeats[k]:
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    return times


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def median(xs):
    return float(np.median(np.asarray(xs, dtype=float)))


def si(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf} {unit}".strip()
    return f"{x:.3g} {unit}".strip()


def try_import(name: str):
    """(module, version, seconds) or (None, reason, seconds)."""
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install raising something else
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    ver = getattr(mod, "__version__", None)
    if ver is None:
        try:
            from importlib.metadata import version

            ver = version(name.replace("_", "-"))
        except Exception:
            ver = "?"
    return mod, ver, time.perf_counter() - t0


def machine_info() -> dict:
    cpu_model, mhz, flags = "unknown", None, []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu_model == "unknown":
                    cpu_model = val.strip()
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(val)
                elif key == "flags" and not flags:
                    flags = val.split()
    except OSError:
        cpu_model = platform.processor() or "unknown"
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl", "avx512_bf16") if f in flags]
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        )
    except Exception:
        commit, dirty = None, None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model,
        "cpu_mhz": mhz,
        "simd_flags": simd,
        "logical_cores": os.cpu_count(),
        "pinned_to_cpus": _PINNED,
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "loadavg_at_start": load,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "numpy": np.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }


# ============================================================================================
# synthetic data
# ============================================================================================


def make_market(n_bars: int, n_features: int = 8, seed: int = 0):
    """5-minute-crypto-like GBM bars: open near the previous close, float32 causal features."""
    rng = np.random.default_rng(seed)
    logret = 0.0015 * rng.standard_normal(n_bars)
    close = 100.0 * np.exp(np.cumsum(logret))
    gap = np.exp(0.0003 * rng.standard_normal(n_bars))
    open_ = np.empty(n_bars)
    open_[0] = 100.0 * gap[0]
    open_[1:] = close[:-1] * gap[1:]
    # features: log returns at lags 0..F-1 scaled (bar t uses bars <= t only)
    lr = np.zeros(n_bars)
    lr[1:] = np.diff(np.log(close))
    feats = np.zeros((n_bars, n_features), dtype=np.float32)
    for k in range(n_features):
        feats[k:, k] = (lr[: n_bars - k] / 0.0015).astype(np.float32)
    return open_, close, feats


def ma_crossover_signals(close: np.ndarray, n_strats: int) -> np.ndarray:
    """[T, M] int8 moving-average crossover signals: BUY while fast MA > slow MA, SELL while below,
    HOLD during the slow window's warm-up. Slow-switching (a trade every few hundred bars)."""
    T = len(close)
    n_fast = max(1, int(round(math.sqrt(n_strats / 10))))
    n_slow = int(math.ceil(n_strats / n_fast))
    fast_w = np.unique(np.linspace(5, 60, n_fast).astype(int))
    slow_w = np.linspace(80, 1000, n_slow).astype(int)
    pairs = [(f, s) for f in fast_w for s in slow_w][:n_strats]
    cs = np.concatenate([[0.0], np.cumsum(close)])

    def ma(w):
        out = np.full(T, np.nan)
        out[w - 1 :] = (cs[w:] - cs[:-w]) / w
        return out

    cache = {}
    sig = np.empty((T, len(pairs)), dtype=np.int8)
    for j, (f, s) in enumerate(pairs):
        a = cache.setdefault(f, ma(f))
        b = cache.setdefault(s, ma(s))
        col = np.where(a > b, BUY, SELL).astype(np.int8)
        col[: s - 1] = HOLD
        sig[:, j] = col
    return sig


def make_sv_prices(n_series: int, n_bars: int, seed: int = 1, mu: float = -13.0, phi: float = 0.99):
    """Stochastic-volatility log prices matching the EKF's model, [B, T] float64 prices."""
    rng = np.random.default_rng(seed)
    lv = np.empty((n_series, n_bars))
    lv[:, 0] = mu
    eps = 0.2 * rng.standard_normal((n_series, n_bars))
    for t in range(1, n_bars):
        lv[:, t] = mu + phi * (lv[:, t - 1] - mu) + eps[:, t]
    r = np.exp(lv / 2) * rng.standard_normal((n_series, n_bars))
    r[:, 0] = 0.0
    y = np.log(100.0) + np.cumsum(r, axis=1) + 0.0005 * rng.standard_normal((n_series, n_bars))
    return np.exp(y)


# ============================================================================================
# the NumPy peer env: docs/semantics.md written the way a user would, vectorised over envs
# ============================================================================================

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_STREAM_MUL = _U64(0xD1B54A32D192ED03)
_COUNTER_MUL = _U64(0x8CB92BA72F3D8DD7)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> _U64(30))) * _M1
    x = (x ^ (x >> _U64(27))) * _M2
    return x ^ (x >> _U64(31))


def counter_hash_np(seed, stream, counter) -> np.ndarray:
    """Port of cpp/include/himari/common/rng.h counter_hash (uint64 arithmetic wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        seed = np.atleast_1d(np.asarray(seed, dtype=_U64))
        stream = np.atleast_1d(np.asarray(stream, dtype=_U64))
        counter = np.atleast_1d(np.asarray(counter, dtype=_U64))
        h = _mix64(seed)
        h = _mix64(h ^ (stream * _STREAM_MUL))
        h = _mix64(h ^ (counter * _COUNTER_MUL))
    return h


class NumpyAccounts:
    """M accounts stepped together with docs/semantics.md's account step (np.where for fills)."""

    def __init__(self, n: int, fee: float, slippage: float, long_short: bool = False):
        self.n, self.fee, self.slip = n, fee, slippage
        self.sell_target = -1.0 if long_short else 0.0
        self.reset_all()

    def reset_all(self):
        n = self.n
        self.cash = np.ones(n)
        self.units = np.zeros(n)
        self.position = np.zeros(n)
        self.equity = np.ones(n)
        self.peak = np.ones(n)
        self.entry_equity = np.ones(n)
        self.bars_in_position = np.zeros(n)
        self.trades = np.zeros(n)
        self.turnover = np.zeros(n)
        self.closed_trades = np.zeros(n)
        self.wins = np.zeros(n)
        self.bankrupt = np.zeros(n, dtype=bool)

    def reset_rows(self, idx: np.ndarray):
        for name, v in (
            ("cash", 1.0),
            ("units", 0.0),
            ("position", 0.0),
            ("equity", 1.0),
            ("peak", 1.0),
            ("entry_equity", 1.0),
            ("bars_in_position", 0.0),
            ("trades", 0.0),
            ("turnover", 0.0),
            ("closed_trades", 0.0),
            ("wins", 0.0),
            ("bankrupt", False),
        ):
            getattr(self, name)[idx] = v

    def step(self, action: np.ndarray, o: np.ndarray, c: np.ndarray):
        """Fill at o (next open), mark at c (next close). Returns (prev_equity, traded, bankrupt_now)."""
        fee, slip = self.fee, self.slip
        pos, units, cash = self.position, self.units, self.cash
        target = np.where(action == BUY, 1.0, np.where(action == SELL, self.sell_target, pos))
        target[self.bankrupt] = 0.0
        change = target - pos
        trade = change != 0.0
        traded = np.abs(change)

        # close the old position in full
        closing = trade & (units != 0.0)
        side = np.where(units > 0.0, 1.0, -1.0)
        close_px = o * (1.0 - slip * side)
        cash_after_close = cash + units * close_px - fee * np.abs(units) * close_px
        self.closed_trades += closing
        self.wins += closing & (cash_after_close > self.entry_equity)
        cash = np.where(closing, cash_after_close, cash)
        units = np.where(closing, 0.0, units)

        # open the new one with all the cash
        opening = trade & (target != 0.0)
        open_px = o * (1.0 + slip * target)
        qty = cash / (open_px * (1.0 + fee))
        notional = qty * open_px
        self.entry_equity = np.where(opening, cash, self.entry_equity)
        cash = np.where(opening, cash - target * notional - fee * notional, cash)
        units = np.where(opening, target * qty, units)

        self.trades += trade
        self.turnover += traded
        self.bars_in_position = np.where(target == 0.0, 0.0, np.where(opening, 1.0, self.bars_in_position + 1.0))

        prev_equity = self.equity
        equity = cash + units * c
        bankrupt_now = (~(equity > BANKRUPT_EQUITY)) & ~self.bankrupt
        if bankrupt_now.any():  # only a short whose price more than doubled
            cash = np.where(bankrupt_now, BANKRUPT_EQUITY, cash)
            units = np.where(bankrupt_now, 0.0, units)
            target = np.where(bankrupt_now, 0.0, target)
            self.bars_in_position = np.where(bankrupt_now, 0.0, self.bars_in_position)
            equity = np.where(bankrupt_now, BANKRUPT_EQUITY, equity)
            self.bankrupt = self.bankrupt | bankrupt_now
        self.cash, self.units, self.position, self.equity = cash, units, target, equity
        self.peak = np.maximum(self.peak, equity)
        return prev_equity, traded, bankrupt_now


class NumpyVecEnv:
    """Vectorised env with VecTradingEnv's semantics: window 1, default (plain log-return) reward,
    SAME_STEP autoreset, counter-hash random starts. Outputs reuse persistent buffers, like the
    native env's views."""

    def __init__(
        self,
        open_,
        close,
        features,
        n_envs: int,
        episode_length: int = 2048,
        fee: float = FEE,
        slippage: float = SLIPPAGE,
        seed: int = 0,
        random_start: bool = True,
        warmup: int = 0,
        long_short: bool = False,
    ):
        self.open = np.ascontiguousarray(open_, dtype=np.float64)
        self.close = np.ascontiguousarray(close, dtype=np.float64)
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.T, self.F = self.features.shape
        self.num_envs = n_envs
        self.L = episode_length
        self.seed = seed
        self.random_start = random_start
        self.start_min = max(warmup, 0)  # window 1: window - 1 = 0
        self.start_max = max(self.start_min, self.T - 1 - self.L)
        self.acc = NumpyAccounts(n_envs, fee, slippage, long_short)
        self.env_ids = np.arange(n_envs, dtype=np.uint64)
        self.bar = np.zeros(n_envs, dtype=np.int64)
        self.steps = np.zeros(n_envs, dtype=np.int64)
        self.n_steps = np.zeros(n_envs, dtype=np.int64)
        self.episode_index = np.zeros(n_envs, dtype=np.uint64)
        self.episode_return = np.zeros(n_envs)
        self.episode_length = np.zeros(n_envs, dtype=np.int64)
        self.obs = np.zeros((n_envs, 1, self.F + 4), dtype=np.float32)
        self.reset(seed=seed)  # like the native env, construction leaves valid buffers
        self.pristine = True  # ... and its first reset() still starts at episode 0

    def _starts(self, idx: np.ndarray) -> np.ndarray:
        if not self.random_start:
            return np.full(len(idx), self.start_min, dtype=np.int64)
        span = _U64(self.start_max - self.start_min + 1)
        h = counter_hash_np(self.seed, self.env_ids[idx], self.episode_index[idx])
        return (self.start_min + (h % span)).astype(np.int64)

    def _begin(self, idx: np.ndarray):
        s = self._starts(idx)
        self.bar[idx] = s
        self.steps[idx] = 0
        self.n_steps[idx] = np.minimum(self.L, self.T - 1 - s)
        self.acc.reset_rows(idx)
        self.obs[idx, 0, : self.F] = self.features[s]
        self.obs[idx, 0, self.F :] = 0.0
        self.episode_index[idx] += _U64(1)  # counts the episodes begun since the last reseed

    def reset(self, seed=None, options=None):
        """reset(seed=s) and the first reset() of a new env restart the episode counters; a later
        reset() continues them."""
        if seed is not None:
            self.seed = int(seed)
        if seed is not None or self.pristine:
            self.episode_index[:] = 0
        self._begin(np.arange(self.num_envs))
        return self.obs, self._info(np.zeros(self.num_envs, dtype=bool))

    def _info(self, done):
        a = self.acc
        return {
            "equity": a.equity,
            "position": a.position,
            "drawdown": 1.0 - a.equity / a.peak,
            "trades": a.trades,
            "turnover": a.turnover,
            "bar": self.bar,
            "episode_done": done,
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
        }

    def step(self, actions):
        self.pristine = False
        a = self.acc
        t = self.bar
        prev_equity, traded, bankrupt_now = a.step(actions, self.open[t + 1], self.close[t + 1])
        reward = np.log(a.equity / prev_equity).astype(np.float32)
        self.bar = t = t + 1
        self.steps += 1
        terminated = bankrupt_now
        truncated = (self.steps >= self.n_steps) & ~terminated
        F, obs = self.F, self.obs
        obs[:, 0, :F] = self.features[t]
        obs[:, 0, F] = a.position
        obs[:, 0, F + 1] = np.where(a.position != 0.0, a.equity / a.entry_equity - 1.0, 0.0)
        obs[:, 0, F + 2] = a.equity / a.peak - 1.0
        obs[:, 0, F + 3] = np.log1p(a.bars_in_position)
        done = terminated | truncated
        if done.any():  # SAME_STEP autoreset; info then shows the fresh accounts of the new episodes
            idx = np.flatnonzero(done)
            self.episode_return[idx] = np.log(a.equity[idx])
            self.episode_length[idx] = self.steps[idx]
            self._begin(idx)
        return obs, reward, terminated, truncated, self._info(done)


def numpy_backtest_total_return(open_, close, signals, fee=FEE, slippage=SLIPPAGE):
    """Reference backtest (loop over bars, vectorised over strategies) with the same account step."""
    T, M = signals.shape
    acc = NumpyAccounts(M, fee, slippage)
    for t in range(T - 1):
        acc.step(signals[t], open_[t + 1], close[t + 1])
    return acc.equity - 1.0


# ============================================================================================
# EKF peers (docs/ekf.md)
# ============================================================================================

# E[log z^2] for z ~ N(0, 1): -(Euler's gamma) - log 2
MEAN_LOG_CHI2 = -0.57721566490153286061 - math.log(2.0)

_EKF_ORDER = ("q_level", "q_velocity", "q_acceleration", "q_log_variance", "r_level", "r_log_square",
              "square_floor", "phi", "mu", "p0_level", "p0_velocity", "p0_acceleration", "p0_log_variance")


def ekf_params_array(p: dict) -> np.ndarray:
    return np.array([p[k] for k in _EKF_ORDER], dtype=np.float64)


def ekf_filterpy(prices_1d: np.ndarray, p: dict, ExtendedKalmanFilter) -> np.ndarray:
    """The docs/ekf.md model with filterpy's ExtendedKalmanFilter ([T] prices -> [T, 4] states).
    filterpy updates P in Joseph form; for this optimal gain that equals docs/ekf.md's P - K S K'."""
    y = np.log(np.asarray(prices_1d, dtype=np.float64))
    T = len(y)
    phi, mu, c = p["phi"], p["mu"], p["square_floor"]
    f = ExtendedKalmanFilter(dim_x=4, dim_z=2)
    f.F = np.array([[1.0, 1.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, phi]])
    f.B = np.array([[0.0], [0.0], [0.0], [(1.0 - phi) * mu]])  # affine part of the AR(1), u = 1
    f.Q = np.diag([p["q_level"], p["q_velocity"], p["q_acceleration"], p["q_log_variance"]])
    f.x = np.array([[y[0]], [0.0], [0.0], [mu]])
    f.P = np.diag([p["p0_level"], p["p0_velocity"], p["p0_acceleration"], p["p0_log_variance"]])
    R1 = np.array([[p["r_level"]]])
    R2 = np.diag([p["r_level"], p["r_log_square"]])
    H1 = np.array([[1.0, 0.0, 0.0, 0.0]])

    def hj1(x):
        return H1

    def hx1(x):
        return x[0:1]

    def hj2(x):
        e = math.exp(x[3, 0] + MEAN_LOG_CHI2)
        return np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, e / (e + c)]])

    def hx2(x):
        return np.array([[x[0, 0]], [math.log(math.exp(x[3, 0] + MEAN_LOG_CHI2) + c)]])

    out = np.empty((T, 4))
    f.update(np.array([[y[0]]]), hj1, hx1, R=R1)
    out[0] = f.x[:, 0]
    for t in range(1, T):
        f.predict(u=1.0)
        r = y[t] - y[t - 1]
        f.update(np.array([[y[t]], [math.log(r * r + c)]]), hj2, hx2, R=R2)
        out[t] = f.x[:, 0]
    return out


def build_numba_ekfs(numba):
    """Two numba @njit versions of the same EKF: generic fixed-size loops over small preallocated
    matrices (what a performance-minded user writes from the textbook formulas) and a line-by-line
    translation of the matrix maths (np.dot / np.linalg.inv)."""
    njit = numba.njit

    @njit(cache=False)
    def ekf_loops(prices, prm, out):
        B, T = prices.shape
        r_level, r_ls, c, phi, mu = prm[4], prm[5], prm[6], prm[7], prm[8]
        m_chi = -0.57721566490153286061 - math.log(2.0)
        F = np.zeros((4, 4))
        F[0, 0] = 1.0
        F[0, 1] = 1.0
        F[0, 2] = 0.5
        F[1, 1] = 1.0
        F[1, 2] = 1.0
        F[2, 2] = 1.0
        F[3, 3] = phi
        x = np.empty(4)
        xp = np.empty(4)
        P = np.empty((4, 4))
        FP = np.empty((4, 4))
        Pp = np.empty((4, 4))
        H = np.zeros((2, 4))
        PHt = np.empty((4, 2))
        S = np.empty((2, 2))
        Si = np.empty((2, 2))
        K = np.empty((4, 2))
        KS = np.empty((4, 2))
        R = np.zeros((2, 2))
        R[0, 0] = r_level
        R[1, 1] = r_ls
        v = np.empty(2)
        k = np.empty(4)
        for b in range(B):
            y_prev = math.log(prices[b, 0])
            x[0] = y_prev
            x[1] = 0.0
            x[2] = 0.0
            x[3] = mu
            for i in range(4):
                for j in range(4):
                    P[i, j] = 0.0
            for i in range(4):
                P[i, i] = prm[9 + i]
            # t = 0: scalar update with z1 = y0 (h = e0): P -= k s k'
            s = P[0, 0] + r_level
            for i in range(4):
                k[i] = P[i, 0] / s
            e0 = y_prev - x[0]
            for i in range(4):
                x[i] += k[i] * e0
            for i in range(4):
                for j in range(4):
                    Pp[i, j] = P[i, j] - k[i] * s * k[j]
            for i in range(4):
                for j in range(4):
                    P[i, j] = Pp[i, j]
            for i in range(4):
                out[b, 0, i] = x[i]
            for t in range(1, T):
                y = math.log(prices[b, t])
                r = y - y_prev
                y_prev = y
                # predict: xp = F x + [0, 0, 0, (1 - phi) mu],  P = F P F' + Q
                for i in range(4):
                    acc = 0.0
                    for m in range(4):
                        acc += F[i, m] * x[m]
                    xp[i] = acc
                xp[3] += (1.0 - phi) * mu
                for i in range(4):
                    for j in range(4):
                        acc = 0.0
                        for m in range(4):
                            acc += F[i, m] * P[m, j]
                        FP[i, j] = acc
                for i in range(4):
                    for j in range(4):
                        acc = 0.0
                        for m in range(4):
                            acc += FP[i, m] * F[j, m]
                        Pp[i, j] = acc
                    Pp[i, i] += prm[i]
                # measurement at the predicted state
                e = math.exp(xp[3] + m_chi)
                H[0, 0] = 1.0
                H[1, 3] = e / (e + c)
                v[0] = y - xp[0]
                v[1] = math.log(r * r + c) - math.log(e + c)
                for i in range(4):
                    for j in range(2):
                        acc = 0.0
                        for m in range(4):
                            acc += Pp[i, m] * H[j, m]
                        PHt[i, j] = acc
                for i in range(2):
                    for j in range(2):
                        acc = 0.0
                        for m in range(4):
                            acc += H[i, m] * PHt[m, j]
                        S[i, j] = acc + R[i, j]
                det = S[0, 0] * S[1, 1] - S[0, 1] * S[1, 0]
                Si[0, 0] = S[1, 1] / det
                Si[1, 1] = S[0, 0] / det
                Si[0, 1] = -S[0, 1] / det
                Si[1, 0] = -S[1, 0] / det
                for i in range(4):
                    for j in range(2):
                        K[i, j] = PHt[i, 0] * Si[0, j] + PHt[i, 1] * Si[1, j]
                for i in range(4):
                    x[i] = xp[i] + K[i, 0] * v[0] + K[i, 1] * v[1]
                # P = Pp - K S K'
                for i in range(4):
                    for j in range(2):
                        KS[i, j] = K[i, 0] * S[0, j] + K[i, 1] * S[1, j]
                for i in range(4):
                    for j in range(4):
                        P[i, j] = Pp[i, j] - (KS[i, 0] * K[j, 0] + KS[i, 1] * K[j, 1])
                for i in range(4):
                    out[b, t, i] = x[i]
        return out

    @njit(cache=False)
    def ekf_dot(prices, prm, out):
        B, T = prices.shape
        r_level, r_ls, c, phi, mu = prm[4], prm[5], prm[6], prm[7], prm[8]
        m_chi = -0.57721566490153286061 - math.log(2.0)
        F = np.array([[1.0, 1.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, phi]])
        Bu = np.array([0.0, 0.0, 0.0, (1.0 - phi) * mu])
        Q = np.diag(prm[0:4].copy())
        R = np.array([[r_level, 0.0], [0.0, r_ls]])
        for b in range(B):
            y_prev = math.log(prices[b, 0])
            x = np.array([y_prev, 0.0, 0.0, mu])
            P = np.diag(prm[9:13].copy())
            H1 = np.array([[1.0, 0.0, 0.0, 0.0]])
            R1 = np.array([[r_level]])
            S = np.dot(H1, np.dot(P, H1.T)) + R1
            K = np.dot(np.dot(P, H1.T), np.linalg.inv(S))
            x = x + np.dot(K, np.array([y_prev - x[0]]))
            P = P - np.dot(np.dot(K, S), K.T)
            out[b, 0, :] = x
            for t in range(1, T):
                y = math.log(prices[b, t])
                r = y - y_prev
                y_prev = y
                x = np.dot(F, x) + Bu
                P = np.dot(np.dot(F, P), F.T) + Q
                e = math.exp(x[3] + m_chi)
                H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, e / (e + c)]])
                z = np.array([y, math.log(r * r + c)])
                hx = np.array([x[0], math.log(e + c)])
                PHt = np.dot(P, H.T)
                S = np.dot(H, PHt) + R
                K = np.dot(PHt, np.linalg.inv(S))
                x = x + np.dot(K, z - hx)
                P = P - np.dot(np.dot(K, S), K.T)
                out[b, t, :] = x
        return out

    return ekf_loops, ekf_dot


# ============================================================================================
# result bookkeeping
# ============================================================================================


class Results:
    def __init__(self):
        self.rows: list[dict] = []
        self.checks: dict = {}
        self.compile_times: dict = {}
        self.notes: list[str] = []
        self.skipped: dict = {}

    def add(self, benchmark, unit, himari, peer, peer_value, goal=None, himari_times=None, peer_times=None,
            work=None, note=None):
        ratio = himari / peer_value if (himari is not None and peer_value) else None
        met = None if (goal is None or ratio is None) else bool(ratio >= goal)
        self.rows.append(
            dict(
                benchmark=benchmark,
                unit=unit,
                himari=himari,
                peer=peer,
                peer_value=peer_value,
                ratio=ratio,
                goal=goal,
                met=met,
                work=work,
                himari_times_s=himari_times,
                peer_times_s=peer_times,
                note=note,
            )
        )


def print_table(res: Results, title: str):
    header = ["benchmark", "himari", "peer", "peer value", "ratio", "goal", "met?"]
    body = []
    for r in res.rows:
        body.append(
            [
                r["benchmark"],
                si(r["himari"], r["unit"]),
                r["peer"],
                si(r["peer_value"], r["unit"]) if r["peer_value"] is not None else "skipped",
                f"{r['ratio']:.2f}x" if r["ratio"] is not None else "n/a",
                f">={r['goal']:g}x" if r["goal"] is not None else "-",
                {True: "yes", False: "NO", None: "-"}[r["met"]],
            ]
        )
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for h in header:
            table.add_column(h, justify="left" if h in ("benchmark", "peer") else "right")
        for row in body:
            table.add_row(*row)
        Console(width=200).print(table)
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("  ".join("-" * w for w in widths))
        for row in body:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


# ============================================================================================
# benchmark 1: the env
# ============================================================================================


def import_himari():
    t0 = time.perf_counter()
    try:
        import himari.engine as he  # noqa: F401
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    return he, None, time.perf_counter() - t0


def native_env(he, open_, close, feats, n_envs, **kw):
    market = he.Market(open_, close, feats)
    return he.VecTradingEnv(market, n_envs=n_envs, fee=FEE, slippage=SLIPPAGE, **kw)


def verify_env(he, res: Results, open_, close, feats, n_envs=64, n_steps=400, episode_length=97):
    """Same actions into both envs; compare rewards, flags, observations, equity, episode returns,
    through the first reset(), a later reset() and a reset(seed=...)."""
    out = {}
    rng = np.random.default_rng(123)
    actions = rng.integers(0, 3, size=(n_steps, n_envs)).astype(np.int32)
    for random_start, mode in ((False, "long_flat"), (True, "long_flat"), (True, "long_short")):
        key = f"random_start={random_start},mode={mode}"
        try:
            ne = native_env(he, open_, close, feats, n_envs, episode_length=episode_length, seed=7,
                            random_start=random_start, mode=mode)
            pe = NumpyVecEnv(open_, close, feats, n_envs, episode_length=episode_length, seed=7,
                             random_start=random_start, long_short=mode == "long_short")
            worst = dict(obs=0.0, reward=0.0, equity_rel=0.0, episode_return=0.0)
            bar_mismatch = 0
            flag_mismatch = 0
            n_done = 0
            # phases: first reset(), n_steps steps; reset() (counters continue), n_steps // 4 steps;
            # reset(seed=3) (counters restart), n_steps // 4 steps
            phases = [(dict(), 0, n_steps), (dict(), n_steps // 2, n_steps // 4),
                      (dict(seed=3), n_steps // 4, n_steps // 4)]
            schedule = []
            for kw, first, count in phases:
                schedule.append(("reset", kw))
                schedule.extend(("step", first + j) for j in range(count))
            for kind, arg in schedule:
                if kind == "reset":
                    o1, i1 = ne.reset(**arg)
                    o2, i2 = pe.reset(**arg)
                    worst["obs"] = max(worst["obs"], float(np.max(np.abs(np.asarray(o1) - o2))))
                    bar_mismatch += int(np.sum(np.asarray(i1["bar"]) != i2["bar"]))
                    continue
                k = arg
                o1, r1, te1, tr1, i1 = ne.step(actions[k])
                o2, r2, te2, tr2, i2 = pe.step(actions[k])
                flag_mismatch += int(np.sum(np.asarray(te1) != te2) + np.sum(np.asarray(tr1) != tr2))
                worst["obs"] = max(worst["obs"], float(np.max(np.abs(np.asarray(o1) - o2))))
                worst["reward"] = max(worst["reward"], float(np.max(np.abs(np.asarray(r1, np.float64) - r2))))
                done = i2["episode_done"]
                e1 = np.asarray(i1["equity"], dtype=np.float64)
                worst["equity_rel"] = max(worst["equity_rel"], float(np.max(np.abs(e1 / i2["equity"] - 1))))
                if "episode_done" in i1:
                    flag_mismatch += int(np.sum(np.asarray(i1["episode_done"]) != done))
                if done.any():
                    n_done += int(done.sum())
                    er1 = np.asarray(i1["episode_return"], dtype=np.float64)[done]
                    worst["episode_return"] = max(
                        worst["episode_return"], float(np.max(np.abs(er1 - i2["episode_return"][done])))
                    )
                bar_mismatch += int(np.sum(np.asarray(i1["bar"]) != i2["bar"]))
            ok = (
                flag_mismatch == 0
                and worst["obs"] < 1e-5
                and worst["reward"] < 1e-6
                and worst["equity_rel"] < 1e-9
                and worst["episode_return"] < 1e-9
                and not bar_mismatch
            )
            out[key] = dict(ok=ok, n_envs=n_envs, n_steps=len(schedule) - 3, episode_length=episode_length,
                            episodes_finished=n_done, flag_mismatches=flag_mismatch, bar_mismatches=bar_mismatch,
                            max_abs_diff=worst)
        except Exception as exc:
            out[key] = dict(ok=False, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=3))
    # the counter hash itself
    try:
        hs = [(s, e, c) for s in (0, 1, 7, 2**40 + 3) for e in (0, 1, 63, 1000) for c in (0, 1, 5, 12345)]
        nat = np.array([he.counter_hash(s, e, c) for s, e, c in hs], dtype=np.uint64)
        mine = np.concatenate([counter_hash_np(s, e, c) for s, e, c in hs])
        out["counter_hash"] = dict(ok=bool(np.all(nat == mine)), n=len(hs))
    except Exception as exc:
        out["counter_hash"] = dict(ok=False, error=f"{type(exc).__name__}: {exc}")
    res.checks["env_native_vs_numpy"] = out
    return out


def env_runner(make_env, actions_rows, target_s, gym_style=False):
    """A callable running `calls` warm steps (calibrated to ~target_s), and `calls`."""
    env = make_env()
    env.reset(seed=0)
    step = env.step
    n_rows = len(actions_rows)

    if gym_style:
        reset = env.reset

        def run(k):
            for i in range(k):
                _, _, te, tr, _ = step(actions_rows[i % n_rows])
                if te or tr:
                    reset()
    else:

        def run(k):
            for i in range(k):
                step(actions_rows[i % n_rows])

    # warm-up + calibration
    k = 8
    while True:
        t0 = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t0
        if dt > 0.05 or k >= 1 << 22:
            break
        k *= 4
    calls = max(5, int(k * target_s / max(dt, 1e-9)))
    return (lambda: run(calls)), calls


def bench_env(he, res: Results, cfg):
    log("[env] building market ...")
    open_, close, feats = make_market(cfg["env_bars"], 8, seed=0)
    if he is not None:
        v = verify_env(he, res, open_, close, feats)
        for k, r in v.items():
            log(f"[env] verify {k}: {'OK' if r.get('ok') else 'MISMATCH'} {r}")
    rng = np.random.default_rng(42)
    native_rates = {}
    for n in cfg["env_sizes"]:
        rows_n = max(16, min(4096, cfg["env_action_elems"] // n))
        actions = rng.integers(0, 3, size=(rows_n, n)).astype(np.int32)
        rows = list(actions)  # pre-made row views: no indexing cost inside the timed loop
        runners = {}
        if he is not None:
            try:
                runners["himari"] = env_runner(lambda: native_env(he, open_, close, feats, n), rows,
                                               cfg["env_target_s"])
            except Exception as exc:
                res.notes.append(f"env N={n}: native failed: {type(exc).__name__}: {exc}")
                log(traceback.format_exc())
        runners["numpy"] = env_runner(lambda: NumpyVecEnv(open_, close, feats, n), rows, cfg["env_target_s"])
        times = time_interleaved({k: v[0] for k, v in runners.items()}, cfg["repeats"], warmup=0)
        rate = {k: runners[k][1] * n / median(times[k]) for k in runners}
        for k in runners:
            log(f"[env] {k:6s} N={n}: {si(rate[k], 'steps/s')} ({runners[k][1]} calls/repeat)")
        nat = rate.get("himari")
        if nat is not None:
            native_rates[n] = nat
        res.add(f"env steps/s N={n}", "steps/s", nat, "NumPy vectorised env", rate["numpy"],
                goal=10.0 if n == 1024 else None, himari_times=times.get("himari"), peer_times=times["numpy"],
                work=dict(n_envs=n, bars=cfg["env_bars"], features=8, window=1,
                          calls_per_repeat={k: v[1] for k, v in runners.items()}))

    # gym-anytrading at N = 1
    mod, ver, _ = try_import("gym_anytrading")
    if mod is None:
        res.skipped["gym-anytrading"] = ver
        res.add("env steps/s N=1", "steps/s", native_rates.get(1), "gym-anytrading StocksEnv", None, goal=3.0,
                note="skipped: " + ver)
        return
    import pandas as pd
    from gym_anytrading.envs import StocksEnv

    df = pd.DataFrame({"Close": close, "Open": open_})
    T = len(close)
    acts = [int(a) for a in rng.integers(0, 2, size=4096)]  # its actions: 0 = Sell, 1 = Buy
    runners = {"gym": env_runner(lambda: StocksEnv(df, window_size=1, frame_bound=(1, T)), acts,
                                 cfg["env_target_s"], gym_style=True)}
    if he is not None and 1 in native_rates:
        rows1 = list(rng.integers(0, 3, size=(4096, 1)).astype(np.int32))
        runners["himari"] = env_runner(lambda: native_env(he, open_, close, feats, 1), rows1, cfg["env_target_s"])
    times = time_interleaved({k: v[0] for k, v in runners.items()}, cfg["repeats"], warmup=0)
    peer, peer_times = runners["gym"][1] / median(times["gym"]), times["gym"]
    if "himari" in times:  # re-timed side by side with the peer
        native_rates[1] = runners["himari"][1] / median(times["himari"])
    log(f"[env] gym-anytrading N=1: {si(peer, 'steps/s')}")
    res.add("env steps/s N=1", "steps/s", native_rates.get(1), f"gym-anytrading {ver} StocksEnv", peer, goal=3.0,
            peer_times=peer_times, himari_times=times.get("himari"), work=dict(n_envs=1, bars=T),
            note="StocksEnv used unwrapped (no gymnasium.make checker wrappers), observation = 2 features")


# ============================================================================================
# benchmark 2: the backtester
# ============================================================================================


def himari_backtest(he, open_, close, signals, threads=1, method="per_bar"):
    kwargs = {} if method == "per_bar" else {"method": method}  # builds without `method` run per bar
    return he.backtest_signals(open_, close, signals, fee=FEE, slippage=SLIPPAGE, mode="long_flat", threads=threads,
                               **kwargs)


def held_runs_available(he) -> bool:
    """Whether this build has backtest_signals(method="held_runs")."""
    import inspect

    return "method" in inspect.signature(he.backtest_signals).parameters


def himari_backtest_all_cores(he, open_, close, signals):
    """The same call with threads=0, the process unpinned for its duration (threads inherit it)."""
    os.sched_setaffinity(0, _ALL_CPUS)
    try:
        return himari_backtest(he, open_, close, signals, threads=0)
    finally:
        os.sched_setaffinity(0, {_PIN_CPU})


def vbt_inputs(open_, close, signals):
    """BUY -> entries, SELL -> exits (long only). Our fill of the decision at t is open[t+1]: give
    vectorbt price[t] = open[t+1]; the last row takes no decision. vectorbt marks at close."""
    entries = signals == BUY
    exits = signals == SELL
    entries[-1] = False
    exits[-1] = False
    price = np.empty_like(close)
    price[:-1] = open_[1:]
    price[-1] = close[-1]
    return entries, exits, price


def vbt_run(vbt, close, entries, exits, price):
    return vbt.Portfolio.from_signals(
        close[:, None], entries, exits, price=price[:, None], fees=FEE, slippage=SLIPPAGE, init_cash=1.0, direction="longonly",
        freq="5min",
    )


def bench_backtest(he, res: Results, cfg):
    T, M = cfg["bt_bars"], cfg["bt_strats"]
    open_, close, _ = make_market(T, 1, seed=3)
    rng = np.random.default_rng(5)
    sets = {}
    log(f"[backtest] signals {T} x {M} ...")
    sets["random"] = rng.integers(0, 3, size=(T, M), dtype=np.int8)
    sets["MA-cross"] = ma_crossover_signals(close, M)
    vbt, vbt_ver, vbt_import_s = try_import("vectorbt")
    if vbt is None:
        res.skipped["vectorbt"] = vbt_ver
    else:
        # compile (numba JIT; vectorbt caches some kernels on disk) on a tiny problem
        t0 = time.perf_counter()
        e, x, p = vbt_inputs(open_[:50], close[:50], sets["random"][:50, :3])
        vbt_run(vbt, close[:50], e, x, p).total_return()
        res.compile_times["vectorbt_first_call_s"] = time.perf_counter() - t0
        res.compile_times["vectorbt_import_s"] = vbt_import_s

    sig_dtype = None
    for name, sig in sets.items():
        work = T * M
        mean_switch = float(np.mean(sig[1:] != sig[:-1]))
        fns, reps = {}, {}
        arr = None
        if he is not None:
            # small exactness check against the NumPy account step
            sub = np.ascontiguousarray(sig[:3000, :64])
            try:
                r = himari_backtest(he, open_[:3000], close[:3000], sub)
                ref = numpy_backtest_total_return(open_[:3000], close[:3000], sub)
                d = float(np.max(np.abs(np.asarray(r.total_return) - ref)))
                res.checks[f"backtest_{name}_native_vs_numpy_max_abs_total_return"] = d
                log(f"[backtest] {name}: native vs NumPy account step on 3000x64: max |dTR| = {d:.3g}")
            except Exception as exc:
                res.checks[f"backtest_{name}_native_vs_numpy"] = f"{type(exc).__name__}: {exc}"
            # the native input dtype: int8 if accepted, else int32
            arr = sig
            try:
                himari_backtest(he, open_[:10], close[:10], np.ascontiguousarray(arr[:10, :2]))
                sig_dtype = "int8"
            except Exception:
                arr = sig.astype(np.int32)
                sig_dtype = "int32"
            fns["himari"] = lambda: himari_backtest(he, open_, close, arr)
            reps["himari"] = cfg["repeats"]
            if held_runs_available(he):  # account maths at fills only, one thread like "himari"
                fns["himari_held_runs"] = lambda: himari_backtest(he, open_, close, arr, method="held_runs")
                reps["himari_held_runs"] = cfg["repeats"]
            if _ALL_CPUS is not None and len(_ALL_CPUS) > 1:  # the same call on every core, same numbers
                fns["himari_all_threads"] = lambda: himari_backtest_all_cores(he, open_, close, arr)
                reps["himari_all_threads"] = cfg["repeats"]
        if vbt is not None:
            # the mapping itself, checked against the NumPy account step (independent of himari)
            sub = np.ascontiguousarray(sig[:3000, :64])
            e, x, p = vbt_inputs(open_[:3000], close[:3000], sub)
            sub_vbt = np.asarray(vbt_run(vbt, close[:3000], e, x, p).total_return(), dtype=np.float64)
            sub_ref = numpy_backtest_total_return(open_[:3000], close[:3000], sub)
            d = float(np.max(np.abs(sub_vbt - sub_ref)))
            res.checks[f"backtest_{name}_vectorbt_vs_numpy_max_abs_total_return"] = d
            log(f"[backtest] {name}: vectorbt vs NumPy account step on 3000x64: max |dTR| = {d:.3g}")
            entries, exits, price = vbt_inputs(open_, close, sig)
            fns["vectorbt"] = lambda: vbt_run(vbt, close, entries, exits, price)
            reps["vectorbt"] = cfg["vbt_repeats"]
        times = {}
        try:
            # warm-up: himari once; vectorbt is already compiled (first call above), so none
            if "himari" in fns:
                fns["himari"]()
            times = time_interleaved(fns, reps, warmup=0)
        except Exception as exc:
            res.notes.append(f"backtest {name}: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
        nat = work / median(times["himari"]) if times.get("himari") else None
        peer = work / median(times["vectorbt"]) if times.get("vectorbt") else None
        extra = dict(bars=T, strategies=M, signal_dtype=sig_dtype, mean_signal_change_rate=mean_switch)
        if times.get("himari_all_threads"):
            extra.update(himari_all_threads_s=median(times["himari_all_threads"]), threads=len(_ALL_CPUS),
                         himari_all_threads_speedup=median(times["himari"]) / median(times["himari_all_threads"]))
            if times.get("vectorbt"):
                peer_s, ours_s = median(times["vectorbt"]), median(times["himari_all_threads"])
                extra["himari_all_threads_vs_vectorbt"] = peer_s / ours_s
            log(f"[backtest] himari on {len(_ALL_CPUS)} threads {name}: {extra['himari_all_threads_speedup']:.2f}x "
                "one thread")
        if times.get("himari_held_runs"):
            per_bar, held = fns["himari"](), fns["himari_held_runs"]()
            same = bool(np.array_equal(per_bar.total_return, held.total_return)
                        and np.array_equal(per_bar.n_trades, held.n_trades))
            rel = float(np.max(np.abs(held.sharpe - per_bar.sharpe) / np.maximum(np.abs(per_bar.sharpe), 1e-12)))
            res.checks[f"backtest_{name}_held_runs_vs_per_bar"] = {
                "total_return_and_trades_bit_equal": same, "max_rel_sharpe": rel}
            extra.update(himari_held_runs_s=median(times["himari_held_runs"]),
                         held_runs_vs_per_bar=median(times["himari"]) / median(times["himari_held_runs"]))
            if times.get("vectorbt"):
                extra["held_runs_vs_vectorbt"] = median(times["vectorbt"]) / median(times["himari_held_runs"])
            log(f"[backtest] held runs {name}: {extra['held_runs_vs_per_bar']:.2f}x the per-bar kernel; total "
                f"returns and trades bit-equal {same}, max rel Sharpe {rel:.2g}")
        for k, v in times.items():
            log(f"[backtest] {k} {name}: {median(v):.3f} s")
        if nat is not None and peer is not None:
            nat_res = fns["himari"]()
            pf = fns["vectorbt"]()
            t0 = time.perf_counter()
            vbt_tr = np.asarray(pf.total_return(), dtype=np.float64)
            extra["vectorbt_total_return_s"] = time.perf_counter() - t0
            del pf
            ours = np.asarray(nat_res.total_return, dtype=np.float64)
            dabs = float(np.max(np.abs(ours - vbt_tr)))
            # Final equities that fees ground down to ~0 are not comparable: ours floors at 1e-12
            # (bankruptcy, docs/semantics.md) and vectorbt stops filling orders whose size is
            # within its tolerance of 0. Relative agreement is measured on the others.
            alive = ((1 + ours) > 1e-9) & ((1 + vbt_tr) > 1e-9)
            drel = float(np.max(np.abs((1 + ours[alive]) / (1 + vbt_tr[alive]) - 1))) if alive.any() else None
            res.checks[f"backtest_{name}_vs_vectorbt"] = dict(
                max_abs_total_return=dabs, max_rel_final_equity=drel, n_compared_rel=int(alive.sum()),
                n_equity_below_1e_9=int((~alive).sum()))
            log(f"[backtest] {name}: himari vs vectorbt total_return: max abs {dabs:.3g}; max rel final equity "
                f"{drel if drel is None else f'{drel:.3g}'} over {int(alive.sum())} strategies whose equity "
                f"stayed above 1e-9 ({int((~alive).sum())} did not)")
        label = f"backtest {name} {T // 1000}k x {M}"
        if vbt is None:
            res.add(label, "bar-strats/s", nat, "vectorbt from_signals", None, goal=20.0,
                    himari_times=times.get("himari"), note="skipped: " + vbt_ver)
        else:
            res.add(label, "bar-strats/s", nat, f"vectorbt {vbt_ver} from_signals", peer, goal=20.0,
                    himari_times=times.get("himari"), peer_times=times.get("vectorbt"), work=extra,
                    note="vectorbt timed for from_signals only (its total_return() time is in work)")
        fns.clear()
        arr = entries = exits = price = None
        gc.collect()


# ============================================================================================
# benchmark 3: the EKF
# ============================================================================================


def bench_ekf(he, res: Results, cfg):
    T, B = cfg["ekf_bars"], cfg["ekf_batch"]
    prices = make_sv_prices(B, T, seed=11)
    p = dict(EKF_DEFAULTS)
    if he is not None:
        try:
            params = he.EKFParams()
            native_p = {k: float(getattr(params, k)) for k in EKF_DEFAULTS}
            if native_p != p:
                res.notes.append(f"EKFParams() defaults differ from docs/ekf.md: {native_p}")
                p = native_p
        except Exception as exc:
            res.notes.append(f"EKFParams(): {type(exc).__name__}: {exc}")
    prm = ekf_params_array(p)

    # --- peers available?
    fp_mod, fp_ver, _ = try_import("filterpy")
    EKF = None
    if fp_mod is not None:
        from filterpy.kalman import ExtendedKalmanFilter as EKF
    else:
        res.skipped["filterpy"] = fp_ver
    nb_mod, nb_ver, _ = try_import("numba")
    ekf_loops = ekf_dot = None
    if nb_mod is not None:
        ekf_loops, ekf_dot = build_numba_ekfs(nb_mod)
        tiny = prices[:1, :20]
        for name, fn in (("numba_loops", ekf_loops), ("numba_dot", ekf_dot)):
            t0 = time.perf_counter()
            fn(tiny, prm, np.empty((1, 20, 4)))
            res.compile_times[f"{name}_compile_s"] = time.perf_counter() - t0
    else:
        res.skipped["numba"] = nb_ver

    native_params = None
    if he is not None:
        try:
            native_params = he.EKFParams(**p)
        except Exception as exc:
            res.notes.append(f"EKFParams(**params): {type(exc).__name__}: {exc}")
            he = None

    def run_native(x):
        return np.asarray(he.ekf(x, native_params))

    # --- agreement before timing
    chk = {}
    n_fp = min(cfg["ekf_check_bars"], T)
    s_nat = s_fp = s_nb = s_dot = None
    if he is not None:
        try:
            s_nat = run_native(prices[:2])
        except Exception as exc:
            res.notes.append(f"ekf native failed: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
            he = None
    if ekf_loops is not None:
        s_nb = ekf_loops(prices[:2], prm, np.empty((2, T, 4)))
        s_dot = ekf_dot(prices[:2], prm, np.empty((2, T, 4)))
    if EKF is not None:
        s_fp = ekf_filterpy(prices[0, :n_fp], p, EKF)

    def cmp(a, b, n):
        d = np.abs(a[:n] - b[:n])
        return dict(bars=int(n), max_abs=float(d.max()), max_abs_per_state=[float(v) for v in d.max(axis=0)])

    if s_nb is not None:
        chk["numba_loops_vs_numba_dot"] = cmp(s_nb[0], s_dot[0], T)
    if s_fp is not None and s_nb is not None:
        chk["filterpy_vs_numba_loops"] = cmp(s_fp, s_nb[0], n_fp)
    if s_nat is not None:
        s_nat = s_nat.reshape(2, T, 4) if s_nat.ndim == 3 else s_nat
        if s_nb is not None:
            chk["himari_vs_numba_loops"] = cmp(s_nat[0], s_nb[0], T)
            chk["himari_vs_numba_loops_series1"] = cmp(s_nat[1], s_nb[1], T)
        if s_fp is not None:
            chk["himari_vs_filterpy"] = cmp(s_nat[0], s_fp, n_fp)
    for k, v in chk.items():
        v["ok"] = v["max_abs"] < 1e-6
        log(f"[ekf] agree {k}: max abs {v['max_abs']:.3g} per state {['%.2g' % z for z in v['max_abs_per_state']]}")
    res.checks["ekf_states"] = chk

    # --- timing: one series and a batch. himari and numba (loops) interleaved; numba np.dot and
    # filterpy (seconds per call) timed on their own.
    for label, X in (("1 series", prices[:1]), (f"{B} series", prices)):
        samples = X.shape[0] * X.shape[1]
        row = f"ekf {label} x {T // 1000}k bars"
        fns, reps = {}, {}
        if he is not None:
            arg = X[0] if X.shape[0] == 1 else X
            fns["himari"] = lambda: he.ekf(arg, native_params)
            reps["himari"] = cfg["repeats"]
        if ekf_loops is not None:
            out = np.empty(X.shape + (4,))
            fns["numba_loops"] = lambda: ekf_loops(X, prm, out)
            reps["numba_loops"] = cfg["repeats"]
        times = time_interleaved(fns, reps, warmup=1)
        if ekf_dot is not None:
            # timed apart: its allocation churn (millions of small arrays) slows the next large
            # allocation of whoever runs after it, which would bias an interleaved himari repeat
            times["numba_dot"] = time_calls(lambda: ekf_dot(X, prm, out), max(1, min(3, cfg["repeats"])), warmup=1)
        for k, v in times.items():
            log(f"[ekf] {k} {label}: {median(v) * 1e3:.2f} ms")
        nat_times = times.get("himari")
        nat = samples / median(nat_times) if nat_times else None
        # filterpy: pure Python, so the batch is timed on fewer bars per series (same per-sample cost)
        if EKF is not None:
            nb_fp = cfg["ekf_fp_bars"] if X.shape[0] == 1 else cfg["ekf_fp_batch_bars"]
            nb_fp = min(nb_fp, T)
            fp_times = time_calls(lambda: [ekf_filterpy(X[b, :nb_fp], p, EKF) for b in range(X.shape[0])],
                                  cfg["fp_repeats"], warmup=0)
            fp = X.shape[0] * nb_fp / median(fp_times)
            log(f"[ekf] filterpy {label} ({nb_fp} bars/series): {median(fp_times):.2f} s")
            res.add(row, "samples/s", nat, f"filterpy {fp_ver} EKF", fp, goal=100.0,
                    himari_times=nat_times, peer_times=fp_times,
                    work=dict(series=X.shape[0], bars=T, filterpy_bars_per_series=nb_fp))
        else:
            res.add(row, "samples/s", nat, "filterpy EKF", None, goal=100.0, himari_times=nat_times,
                    note="skipped: " + fp_ver)
        if ekf_loops is not None:
            for key, name, goal in (("numba_loops", "numba @njit loops", 5.0), ("numba_dot", "numba @njit np.dot/inv", None)):
                rate = samples / median(times[key])
                res.add(row, "samples/s", nat, f"{name} (numba {nb_ver})", rate, goal=goal, himari_times=nat_times,
                        peer_times=times[key], work=dict(series=X.shape[0], bars=T))
        else:
            res.add(row, "samples/s", nat, "numba @njit loops", None, goal=5.0, himari_times=nat_times,
                    note="skipped: " + nb_ver)


# ============================================================================================
# main
# ============================================================================================

FULL = dict(
    env_bars=100_000,
    env_sizes=[1, 64, 1024, 16384],
    env_action_elems=4_000_000,
    env_target_s=0.5,
    bt_bars=100_000,
    bt_strats=1_000,
    ekf_bars=100_000,
    ekf_batch=16,
    ekf_check_bars=20_000,
    ekf_fp_bars=100_000,
    ekf_fp_batch_bars=10_000,
    repeats=5,
    vbt_repeats=3,
    fp_repeats=3,
)
QUICK = dict(
    env_bars=20_000,
    env_sizes=[1, 64, 1024],
    env_action_elems=500_000,
    env_target_s=0.1,
    bt_bars=10_000,
    bt_strats=100,
    ekf_bars=10_000,
    ekf_batch=4,
    ekf_check_bars=2_000,
    ekf_fp_bars=2_000,
    ekf_fp_batch_bars=500,
    repeats=3,
    vbt_repeats=2,
    fp_repeats=1,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a fast smoke run")
    ap.add_argument("--json", metavar="PATH",
                    help="where to write the JSON (default benchmarks/results/core-<host>.json, .quick.json with --quick)")
    ap.add_argument("--only", nargs="+", choices=["env", "backtest", "ekf"], help="run only these benchmarks")
    ap.add_argument("--cpu", type=int, default=0, help="the core to pin to (default 0)")
    ap.add_argument("--repeats", type=int, help="override the number of timed repeats")
    args = ap.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    if args.repeats:
        cfg["repeats"] = args.repeats
    which = args.only or ["env", "backtest", "ekf"]
    info = machine_info()
    log(f"machine: {info['cpu_model']} ({info['logical_cores']} cores, pinned to {info['pinned_to_cpus']}), "
        f"python {info['python']}, numpy {info['numpy']}")

    he, err, imp_s = import_himari()
    res = Results()
    versions = {"numpy": np.__version__}
    if he is None:
        res.skipped["himari.engine"] = err
        log(f"himari.engine does not import ({err}); running the peers only")
    else:
        res.compile_times["himari_engine_import_s"] = imp_s
        try:
            versions["himari_build_info"] = dict(he.build_info())
        except Exception as exc:
            versions["himari_build_info"] = f"{type(exc).__name__}: {exc}"
    for name in ("numba", "filterpy", "vectorbt", "gym_anytrading", "gymnasium", "pandas", "rich"):
        try:
            from importlib.metadata import version

            versions[name] = version(name.replace("_", "-"))
        except Exception:
            versions[name] = None

    if info["loadavg_at_start"] and info["loadavg_at_start"][0] > 0.5:
        res.notes.append(f"load average {[round(x, 2) for x in info['loadavg_at_start']]} at start: other processes were running; "
                         "timings may be noisy (contenders are interleaved to share the noise)")
    t_start = time.perf_counter()
    section_load = {}
    for b in which:
        log(f"=== {b} === (load average {loadavg()})")
        section_load[b] = {"start": loadavg()}
        try:
            {"env": bench_env, "backtest": bench_backtest, "ekf": bench_ekf}[b](he, res, cfg)
        except MemoryError as exc:
            res.notes.append(f"{b}: MemoryError {exc}")
        except Exception as exc:
            res.notes.append(f"{b}: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
        section_load[b]["end"] = loadavg()
    wall = time.perf_counter() - t_start

    title = f"himari core vs peers ({'quick' if args.quick else 'full'}) on {info['cpu_model']}, 1 core"
    print_table(res, title)
    if res.compile_times:
        print("compile / first-call times (not in the throughputs): "
              + ", ".join(f"{k} {v:.2f}s" for k, v in res.compile_times.items()))
    for k, v in res.skipped.items():
        print(f"skipped {k}: {v}")
    for n in res.notes:
        print(f"note: {n}")

    default_name = f"core-{info['hostname']}{'.quick' if args.quick else ''}.json"  # quick never clobbers full
    path = Path(args.json) if args.json else REPO / "benchmarks" / "results" / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(
        machine=info,
        versions=versions,
        mode="quick" if args.quick else "full",
        config=cfg,
        results=res.rows,
        checks=res.checks,
        compile_times_s=res.compile_times,
        skipped=res.skipped,
        notes=res.notes,
        loadavg_per_section=section_load,
        wall_s=wall,
    )
    path.write_text(json.dumps(doc, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
