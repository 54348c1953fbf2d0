#!/usr/bin/env python
"""A small CPU-vs-CUDA parity run of every kernel (env reset/step with windows and episode
ends, backtest (both kernels, the scan also in shared-memory tiles), EKF), sized to run under
``compute-sanitizer --tool memcheck`` in a minute; ``--tiles-only`` runs only the tiled scan (for
``--tool racecheck``).
Exits non-zero on any mismatch; the sanitizer reports out-of-bounds and misaligned accesses."""

from __future__ import annotations

import sys

import numpy as np
import torch

from himari.engine import (
    BARS_PER_YEAR_5M,
    Market,
    RewardConfig,
    VecTradingEnv,
    backtest_signals,
    ekf,
)


def main() -> int:
    rng = np.random.default_rng(0)
    t = 300
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, t)))
    open_ = close * np.exp(rng.normal(0, 0.003, t))
    bad = 0
    # Both observation paths: windowed (warp path) and window 1 with 8 features (row path).
    for n_feat, window in ((5, 4), (8, 1)):
        feats = rng.normal(size=(t, n_feat)).astype(np.float32)
        kw = dict(n_envs=37, episode_length=25, window=window, mode="long_short", seed=2,
                  reward=RewardConfig(drawdown_penalty=0.2, dsr_weight=0.1))
        cpu = VecTradingEnv(Market(open_, close, feats), **kw)
        gpu = VecTradingEnv(Market(open_, close, feats, device="cuda"), **kw)
        cpu.reset(seed=1)
        gpu.reset(seed=1)
        for _ in range(60):
            a = rng.integers(0, 3, 37)
            oc, rc, *_ = cpu.step(a)
            og, rg, *_ = gpu.step(torch.from_numpy(a).cuda())
            bad += not np.allclose(og.cpu().numpy(), oc, rtol=1e-5, atol=1e-6)
            bad += not np.allclose(rg.cpu().numpy(), rc, rtol=1e-5, atol=1e-7)
            bad += not np.array_equal(gpu._info["position"].cpu().numpy(), cpu._info["position"])
    sig = rng.integers(0, 3, (t, 45)).astype(np.int8)
    ref = backtest_signals(open_, close, sig, return_equity=True)
    got = backtest_signals(open_, close, torch.from_numpy(sig).cuda(), return_equity=True, device="cuda")
    bad += not np.allclose(got.equity.cpu().numpy(), ref.equity, rtol=1e-9)
    bad += not np.array_equal(got.n_trades, ref.n_trades)
    # The chunked-scan kernel: small chunks, and heavy fees that send strategies to the
    # bankruptcy floor (the warp re-run of a chunk near the floor).
    from himari import _core

    for fee, chunk in ((1e-3, 7), (0.3, 5), (0.3, 64)):
        ref = backtest_signals(open_, close, sig, fee=fee, mode="long_short")
        met, _ = _core.backtest_signals_cuda(open_, close, torch.from_numpy(sig).cuda(), fee, 5e-4, "long_short",
                                             float(BARS_PER_YEAR_5M), False, 0, 0, kernel="scan", chunk=chunk)
        bad += not np.array_equal(met[:, 7], ref.n_trades)
        bad += not np.allclose(met[:, 0], ref.total_return, rtol=1e-9, atol=1e-12)
    bad += scan_in_tiles(open_, close, rng)
    prices = np.stack([close, open_, close[::-1].copy()])
    bad += not np.allclose(ekf(prices, device="cuda").cpu().numpy(), ekf(prices), rtol=1e-6, atol=1e-9)
    torch.cuda.synchronize()
    print(f"sanitizer parity run: {'OK' if bad == 0 else f'{bad} mismatches'}")
    return 1 if bad else 0


def scan_in_tiles(open_: np.ndarray, close: np.ndarray, rng: np.random.Generator) -> int:
    """The scan with signals staged in shared-memory tiles (rows of 132 int8 actions: a last
    block of 4 strategies; chunks that cut tiles short), both summaries; mismatches found."""
    from himari import _core

    t = len(close)
    sig = np.ones((t, 132), dtype=np.int8)
    act = rng.random((t, 132)) < np.linspace(0.005, 1.0, 132)
    sig[act] = rng.integers(0, 3, int(act.sum()))
    ref = backtest_signals(open_, close, sig, fee=1e-3, mode="long_flat")
    bad = 0
    for kernel, chunk in (("scan", 70), ("held_runs", 70), ("scan", 0)):
        met, _ = _core.backtest_signals_cuda(open_, close, torch.from_numpy(sig).cuda(), 1e-3, 5e-4, "long_flat",
                                             float(BARS_PER_YEAR_5M), False, 0, 0, kernel=kernel, chunk=chunk)
        bad += not np.array_equal(met[:, 7], ref.n_trades)
        bad += not np.allclose(met[:, 0], ref.total_return, rtol=1e-9, atol=1e-12)
    return bad


def tiles_only() -> int:
    """Only the tiled scan (for ``--tool racecheck``: its shared-memory stages)."""
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 300)))
    bad = scan_in_tiles(close * np.exp(rng.normal(0, 0.003, 300)), close, rng)
    torch.cuda.synchronize()
    print(f"sanitizer tiled-scan run: {'OK' if bad == 0 else f'{bad} mismatches'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(tiles_only() if "--tiles-only" in sys.argv else main())
