"""Throughput of himari's own native core (env steps, backtests, EKF), for ``himari bench``.

A quick health check of an install, not the peer comparison: benchmarks/bench_core.py pits
the same kernels against NumPy, numba, gym-anytrading, vectorbt and filterpy on one pinned core.
Each number is the median of ``repeats`` warm runs; rates are "higher is better".
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SUITES = ("env", "backtest", "ekf")

SIZES = {
    "full": {"env_envs": 1024, "env_steps": 400, "bt_bars": 200_000, "bt_strategies": 64, "ekf_bars": 1_000_000,
             "ekf_batch": 16},
    "quick": {"env_envs": 128, "env_steps": 100, "bt_bars": 20_000, "bt_strategies": 16, "ekf_bars": 50_000,
              "ekf_batch": 4},
}


def _median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def _prices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[100.0, close[:-1]]
    return open_, close


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import himari
    from himari.engine import build_info

    return {"hostname": socket.gethostname(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "himari": himari.__version__,
            "build": build_info(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def run_bench(suites: tuple[str, ...] = SUITES, *, device: str = "cpu", quick: bool = False,
              repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    from himari.engine import Market, VecTradingEnv, backtest_plan, backtest_signals, ekf

    size = SIZES["quick" if quick else "full"]
    results = []
    on_gpu = device != "cpu"
    if on_gpu:  # a CUDA env takes device actions, and GPU work is timed to its completion
        import torch

        sync = torch.cuda.synchronize
    else:
        def sync() -> None:
            return None
    if "env" in suites:
        n_envs, steps = size["env_envs"], size["env_steps"]
        open_, close = _prices(20_000, seed)
        feats = np.random.default_rng(seed).normal(size=(20_000, 60)).astype(np.float32)
        env = VecTradingEnv(Market(open_, close, feats, device=device), n_envs=n_envs, episode_length=2048, seed=seed)
        env.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(0, 3, size=(64, n_envs)).astype(np.int8)
        if on_gpu:
            actions = torch.from_numpy(actions).to(device)

        def run_env() -> None:
            for i in range(steps):
                env.step(actions[i % 64])
            sync()

        med, times = _median_seconds(run_env, repeats)
        results.append({"suite": "env", "what": f"VecTradingEnv step, {n_envs} envs, 60 features",
                        "rate": steps * n_envs / med, "unit": "env steps/s", "seconds": times})
    if "backtest" in suites:
        n, m = size["bt_bars"], size["bt_strategies"]
        open_, close = _prices(n, seed + 1)
        sig = np.random.default_rng(seed).integers(0, 3, size=(n, m)).astype(np.int8)
        if on_gpu:
            sig = torch.from_numpy(sig).to(device)
        med, times = _median_seconds(lambda: backtest_signals(open_, close, sig, device=device), repeats)
        results.append({"suite": "backtest", "what": f"backtest_signals, {n:,} bars x {m} strategies",
                        "rate": n * m / med, "unit": "bar-strategies/s", "seconds": times})
        if not on_gpu:  # signals that act on ~2% of bars: the per-bar kernel against held runs
            sticky = np.ones((n, m), dtype=np.int8)
            acts = np.random.default_rng(seed + 2).random((n, m)) < 0.02
            sticky[acts] = np.where(np.random.default_rng(seed + 3).random(int(acts.sum())) < 0.5, 0, 2)
            for method in ("per_bar", "held_runs"):
                med, times = _median_seconds(
                    lambda method=method: backtest_signals(open_, close, sticky, method=method), repeats)
                results.append({"suite": "backtest",
                                "what": f"backtest_signals(method='{method}'), {n:,} bars x {m} strategies acting "
                                        "on 2% of bars",
                                "rate": n * m / med, "unit": "bar-strategies/s", "seconds": times})
        split, workers = backtest_plan(n, m, threads=0)
        if not on_gpu and workers > 1:  # the same call spread over the CPUs (the same numbers)
            med, times = _median_seconds(lambda: backtest_signals(open_, close, sig, threads=0), repeats)
            results.append({"suite": "backtest",
                            "what": f"backtest_signals, {n:,} bars x {m} strategies, threads=0 ({workers} threads, "
                                    f"split by {split.replace('_', ' ')})",
                            "rate": n * m / med, "unit": "bar-strategies/s", "seconds": times})
    if "ekf" in suites:
        n, b = size["ekf_bars"], size["ekf_batch"]
        prices = np.stack([_prices(n // b, seed + i)[1] for i in range(b)])
        if on_gpu:
            prices = torch.from_numpy(prices).to(device)
        med, times = _median_seconds(lambda: (ekf(prices, device=device), sync()), repeats)
        results.append({"suite": "ekf", "what": f"ekf, {b} series x {n // b:,} bars",
                        "rate": b * (n // b) / med, "unit": "bars/s", "seconds": times})
    return {"machine": machine(), "device": device, "quick": quick, "repeats": repeats, "sizes": size,
            "results": results}
