"""The baseline (SSE2) and AVX2 builds of the CPU kernels must give the same results.

Each build runs in its own process (HIMARI_CPU_KERNEL is read once per process); the env and the
backtester must agree bit for bit (every lane type uses the same vectorisable log), the EKF to a
few ulps (tests/cpp/test_ekf.cpp says why).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import himari.engine as he

    rng = np.random.default_rng(5)
    T = 3000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, T)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.001, T))
    feats = rng.normal(size=(T, 3)).astype(np.float32)
    out = {}
    sig = rng.integers(0, 3, size=(T, 37)).astype(np.int8)
    for mode in ("long_flat", "long_short"):
        res = he.backtest_signals(open_, close, sig, mode=mode, return_equity=True)
        out[f"bt_{mode}"] = np.concatenate([res.equity.ravel(), res.sharpe, res.max_drawdown])
    env = he.VecTradingEnv(he.Market(open_, close, feats), n_envs=11, episode_length=300, window=2,
                           mode="long_short", reward=he.RewardConfig(0.5, 0.001, 0.1, 0.05), seed=3)
    env.reset(seed=3)
    rows = []
    for i in range(900):
        obs, rew, term, trunc, info = env.step(rng.integers(0, 3, size=11))
        rows.append(np.concatenate([obs.ravel().astype(np.float64), rew.astype(np.float64), info["equity"],
                                    info["dsr"]]))
    out["env"] = np.concatenate(rows)
    out["ekf"] = he.ekf(np.stack([close] * 6), return_innovations=True)[0].ravel()
    np.savez(sys.argv[1], build=he.build_info()["build"], **out)
    """
)


def _run(kernel: str, path: Path) -> dict:
    env = dict(os.environ, HIMARI_CPU_KERNEL=kernel)
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, check=True, cwd="/")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_baseline_and_best_kernels_agree(tmp_path: Path) -> None:
    base = _run("baseline", tmp_path / "base.npz")
    best = _run("best", tmp_path / "best.npz")
    assert "baseline" in str(base["build"])
    for key in ("bt_long_flat", "bt_long_short", "env"):
        assert np.array_equal(base[key], best[key]), key
    np.testing.assert_allclose(best["ekf"], base["ekf"], rtol=1e-12, atol=1e-14)
