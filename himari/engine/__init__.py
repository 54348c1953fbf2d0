"""The thin Python face of the native core: the only package that imports ``himari._core``.

Public surface (DESIGN.md): Market, VecTradingEnv, RewardConfig, backtest_signals, ekf, plus
fan_residuals, replay_actions, backtest_plan, hardware_threads, EKFParams, BacktestResult,
ACTION_DTYPES and the device helpers. Importing it registers ``himari/Trading-v0``
(``himari.gym_env.TradingEnv``, one account as a single gymnasium env) with gymnasium.
"""

from __future__ import annotations

from himari.engine._native import _core
from himari.engine.arrays import ACTION_DTYPES
from himari.engine.backtest import (
    BARS_PER_YEAR_5M,
    BacktestResult,
    ReplayResult,
    backtest_plan,
    backtest_signals,
    hardware_threads,
    replay_actions,
)
from himari.engine.device import build_info, cuda_available, cuda_compiled, cuda_unavailable_reason
from himari.engine.ekf import STATE_NAMES, EKFParams, ekf
from himari.engine.fan import fan_residuals
from himari.engine.env import VecTradingEnv
from himari.engine.market import Market
from himari.engine.reward import RewardConfig

from himari._gym import TRADING_ENV_ID, register_envs

register_envs()  # gymnasium.make("himari/Trading-v0") / make_vec

SELL, HOLD, BUY = 0, 1, 2
ACTION_NAMES = ("SELL", "HOLD", "BUY")


def counter_hash(seed: int, stream: int, counter: int) -> int:
    """The counter-based hash behind episode starts (cpp/include/himari/common/rng.h)."""
    from himari.engine import args

    return int(_core.counter_hash(args.integer("seed", seed, maximum=args.UINT64_MAX),
                                  args.integer("stream", stream, maximum=args.UINT64_MAX),
                                  args.integer("counter", counter, maximum=args.UINT64_MAX)))


__all__ = [
    "ACTION_DTYPES",
    "ACTION_NAMES",
    "BARS_PER_YEAR_5M",
    "BUY",
    "HOLD",
    "SELL",
    "STATE_NAMES",
    "TRADING_ENV_ID",
    "BacktestResult",
    "EKFParams",
    "Market",
    "ReplayResult",
    "RewardConfig",
    "VecTradingEnv",
    "backtest_plan",
    "backtest_signals",
    "build_info",
    "counter_hash",
    "cuda_available",
    "cuda_compiled",
    "cuda_unavailable_reason",
    "hardware_threads",
    "ekf",
    "fan_residuals",
    "replay_actions",
]
