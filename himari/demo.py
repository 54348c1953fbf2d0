"""The first job a new user runs: the native core on the built-in synthetic market, offline.

It backtests buy-and-hold, never-trade and many random policies in one fused pass, steps the
vectorised env with a random policy, and filters the price with the EKF, timing each part. It
is a smoke test of the install as much as a demo: every number comes from the native core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DemoResult:
    bars: int
    table: list[dict[str, float | str]]
    """One row per strategy: name and its backtest metrics."""
    random_strategies: int
    backtest_seconds: float
    env_envs: int
    env_steps_per_second: float
    ekf_samples_per_second: float
    ekf_final_volatility: float
    """Per-bar volatility estimate at the last bar (exp(log_variance / 2))."""


def run_demo(bars: int = 20_000, seed: int = 0, random_strategies: int = 256, n_envs: int = 64) -> DemoResult:
    """Run the demo on ``bars`` synthetic 5-minute bars generated from ``seed``."""
    from himari.data.synthetic import SynthConfig, synthesize
    from himari.engine import Market, VecTradingEnv, backtest_signals, ekf
    from himari.evaluation.baselines import buy_and_hold, never_trade, random_policy

    frame = synthesize(SynthConfig(bars=bars, seed=seed))
    open_ = frame["open"].to_numpy(np.float64)
    close = frame["close"].to_numpy(np.float64)

    signals = np.concatenate(
        [
            buy_and_hold(bars)[:, None],
            never_trade(bars)[:, None],
            random_policy(bars, random_strategies, seed=seed),
        ],
        axis=1,
    )
    start = time.perf_counter()
    result = backtest_signals(open_, close, signals)
    backtest_seconds = time.perf_counter() - start
    table: list[dict[str, float | str]] = [
        {"strategy": "buy-and-hold", **result.to_dict(0)},
        {"strategy": "never-trade", **result.to_dict(1)},
    ]
    rand = result.to_frame().iloc[2:]
    table.append({"strategy": f"random x{random_strategies} (median)", **rand.median().to_dict()})
    table.append({"strategy": f"random x{random_strategies} (best)", **rand.loc[rand["sharpe"].idxmax()].to_dict()})

    log_close = np.log(close)
    features = np.stack([np.r_[0.0, np.diff(log_close)]], axis=1).astype(np.float32)
    env = VecTradingEnv(Market(open_, close, features), n_envs=n_envs, episode_length=1024, seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 3, size=(256, n_envs))
    steps = 2_000
    start = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % 256])
    env_rate = steps * n_envs / (time.perf_counter() - start)

    start = time.perf_counter()
    states = ekf(close)
    ekf_rate = bars / (time.perf_counter() - start)
    return DemoResult(
        bars=bars,
        table=table,
        random_strategies=random_strategies,
        backtest_seconds=backtest_seconds,
        env_envs=n_envs,
        env_steps_per_second=env_rate,
        ekf_samples_per_second=ekf_rate,
        ekf_final_volatility=float(np.exp(states[-1, 3] / 2.0)),
    )
