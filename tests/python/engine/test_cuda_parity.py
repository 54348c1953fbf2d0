"""CPU and CUDA backends agree (marker ``cuda``: skipped without a CUDA build and device).

Positions, trades, flags and episode starts must be identical; rewards, equity, observations
and metrics agree within 1e-5 relative (float32 outputs) — the kernels run the same *_math.h
code, and only the C library's log/log1p differ by an ulp between host and device.
Also: zero-copy views, actions read in place from torch, and clean errors for wrong devices,
dtypes, shapes, layouts and pointers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from himari.engine import Market, RewardConfig, VecTradingEnv, backtest_signals, cuda_available, ekf
from himari.errors import DeviceError, InvalidArgumentError, ShapeError

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not cuda_available(), reason="needs a CUDA build of himari and a CUDA device")]

torch = pytest.importorskip("torch")

SHARED = Path(os.environ.get("HIMARI_SHARED_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def random_market(t: int, f: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, t)))
    open_ = close * np.exp(rng.normal(0, 0.002, t))
    feats = rng.normal(size=(t, f)).astype(np.float32)
    return open_, close, feats


def btc_market() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from himari.data import compute_features, read_source
    from himari.data.frame import ts_ns

    path = SHARED / "btcusdt_5m.csv.gz"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    df, _ = read_source(path)
    cols = [df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]
    ts = ts_ns(df["timestamp"])  # tz-aware timestamps: numpy's datetime64 cast warns on some versions
    feats = compute_features(*cols, ts)
    warm = int(np.argmax(np.isfinite(feats).all(axis=1)))
    return cols[0][warm:], cols[3][warm:], np.ascontiguousarray(feats[warm:], dtype=np.float32)


ENV_KW = dict(episode_length=64, fee=1e-3, slippage=5e-4,
              reward=RewardConfig(drawdown_penalty=0.5, turnover_penalty=1e-4, dsr_weight=0.1))


def pair(open_, close, feats, n, **kw):
    cpu = VecTradingEnv(Market(open_, close, feats), n_envs=n, seed=11, **{**ENV_KW, **kw})
    gpu = VecTradingEnv(Market(open_, close, feats, device="cuda"), n_envs=n, seed=11, **{**ENV_KW, **kw})
    return cpu, gpu


def assert_same_state(cpu, gpu, obs_c, obs_g, step: int) -> None:
    where = f"after step {step}"
    for name in ("position", "trades", "bar"):
        np.testing.assert_array_equal(cpu._info[name], gpu._info[name].cpu().numpy(), err_msg=f"{name} {where}")
    for name in ("terminated", "truncated"):
        got = (gpu._terminated if name == "terminated" else gpu._truncated).cpu().numpy()
        want = cpu._terminated if name == "terminated" else cpu._truncated
        np.testing.assert_array_equal(want, got, err_msg=f"{name} {where}")
    np.testing.assert_allclose(gpu._reward.cpu().numpy(), cpu._reward, rtol=1e-5, atol=1e-7, err_msg=where)
    np.testing.assert_allclose(gpu._info["equity"].cpu().numpy(), cpu._info["equity"], rtol=1e-5, err_msg=where)
    np.testing.assert_allclose(obs_g.cpu().numpy(), obs_c, rtol=1e-5, atol=1e-6, err_msg=f"obs {where}")


def assert_same_final_obs(info_c, info_g, step: int) -> int:
    """The final observations of the envs whose episode ended at this step agree; returns how many."""
    done = np.asarray(info_c["_final_obs"])
    np.testing.assert_array_equal(info_g["_final_obs"].cpu().numpy(), done, err_msg=f"_final_obs after step {step}")
    np.testing.assert_allclose(info_g["final_obs"].cpu().numpy()[done], np.asarray(info_c["final_obs"])[done],
                               rtol=1e-5, atol=1e-6, err_msg=f"final_obs after step {step}")
    return int(done.sum())


def run_parity(open_, close, feats, n, steps, seed=0, **kw) -> int:
    """Steps both envs with the same random actions; returns how many episodes ended."""
    cpu, gpu = pair(open_, close, feats, n, **kw)
    obs_c, _ = cpu.reset(seed=5)
    obs_g, _ = gpu.reset(seed=5)
    assert_same_state(cpu, gpu, obs_c, obs_g, 0)
    rng = np.random.default_rng(seed)
    ended = 0
    for t in range(steps):
        acts = rng.integers(0, 3, n).astype(np.int64)
        obs_c, *_, info_c = cpu.step(acts)
        obs_g, *_, info_g = gpu.step(torch.from_numpy(acts).cuda())
        assert_same_state(cpu, gpu, obs_c, obs_g, t + 1)
        ended += assert_same_final_obs(info_c, info_g, t + 1)
    np.testing.assert_allclose(gpu._info["episode_return"].cpu().numpy(), cpu._info["episode_return"], rtol=1e-9)
    gpu.check_actions()
    return ended


@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 257, 1000])
def test_env_parity_random_data(n: int) -> None:
    # 8 features: the row observation path (window 1, F % 4 == 0); 9: the warp path.
    o, c, f = random_market(600, 8 if n % 2 else 9, n)
    run_parity(o, c, f, n, steps=150, seed=n, mode="long_short")


@pytest.mark.parametrize("window", [2, 5, 40])
def test_env_parity_windowed_observations(window: int) -> None:
    o, c, f = random_market(800, 5, window)
    run_parity(o, c, f, 45, steps=120, seed=window, window=window)


@pytest.mark.parametrize(("window", "features"), [(1, 8), (1, 5), (3, 6), (40, 2)])
def test_final_obs_parity(window: int, features: int) -> None:
    """Final observations on the row path (window 1, F % 4 == 0), the warp path at window 1,
    and the warp path with account history; short episodes so every env ends several."""
    o, c, f = random_market(500, features, window)
    ended = run_parity(o, c, f, 70, steps=90, seed=window, window=window, episode_length=20, mode="long_short")
    assert ended >= 70 * 3


def test_final_obs_parity_forced_warp_path() -> None:
    """HIMARI_CUDA_OBS=warp sends window 1 with F % 4 == 0 through the warp path too (read once
    per process: run in a subprocess so it applies)."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, %r); import test_cuda_parity as t; "
            "o, c, f = t.random_market(300, 8, 3); "
            "assert t.run_parity(o, c, f, 40, steps=60, seed=3, episode_length=15) >= 40 * 3") % str(Path(__file__).parent)
    env = dict(os.environ, HIMARI_CUDA_OBS="warp")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_env_parity_bankruptcy_and_long_flat() -> None:
    o, c, f = random_market(400, 3, 1)
    c = c * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.2, 400)))  # wild moves: some envs go broke
    run_parity(o, c, f, 64, steps=200, seed=3, mode="long_short")


@pytest.mark.slow
def test_env_parity_one_million_envs() -> None:
    o, c, f = random_market(3000, 4, 7)
    run_parity(o, c, f, 1_000_000, steps=6, seed=7)


@pytest.mark.shared_data
def test_env_parity_on_btc() -> None:
    o, c, f = btc_market()
    run_parity(o, c, f, 4099, steps=100, seed=9, mode="long_short", warmup=0)


def test_outputs_are_persistent_zero_copy_views_and_actions_are_read_in_place() -> None:
    o, c, f = random_market(300, 4, 0)
    env = VecTradingEnv(Market(o, c, f, device="cuda"), n_envs=16, episode_length=50)
    obs, _ = env.reset(seed=1)
    ptr = obs.data_ptr()
    actions = torch.full((16,), 2, dtype=torch.int8, device="cuda")
    for _ in range(3):
        obs2, *_ = env.step(actions)
        assert obs2.data_ptr() == ptr and obs2.is_cuda
    assert (env._info["position"] == 1).all()
    actions.fill_(0)  # the policy writes into the same tensor; the env reads it in place
    env.step(actions)
    assert (env._info["position"] == 0).all()


def test_backtest_parity_random_and_btc() -> None:
    o, c, _ = random_market(3000, 1, 4)
    rng = np.random.default_rng(4)
    for m in (1, 33, 1000):
        sig = rng.integers(0, 3, (3000, m)).astype(np.int8)
        ref = backtest_signals(o, c, sig, mode="long_short", return_equity=True)
        got = backtest_signals(o, c, torch.from_numpy(sig).cuda(), mode="long_short", return_equity=True,
                               device="cuda")
        np.testing.assert_array_equal(got.n_trades, ref.n_trades)
        for name in ref.metric_names():
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(got.equity.cpu().numpy(), ref.equity, rtol=1e-9)
    bo, bc, _ = btc_market()
    sig = np.random.default_rng(5).integers(0, 3, (len(bc), 64)).astype(np.int64)
    ref = backtest_signals(bo, bc, sig)
    got = backtest_signals(bo, bc, sig, device="cuda")  # host signals are copied over
    np.testing.assert_array_equal(got.n_trades, ref.n_trades)
    np.testing.assert_allclose(got.total_return, ref.total_return, rtol=1e-5)
    np.testing.assert_allclose(got.sharpe, ref.sharpe, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ekf_parity(dtype) -> None:
    rng = np.random.default_rng(0)
    prices = (100 * np.exp(np.cumsum(rng.normal(0, 0.01, (37, 700)), axis=1))).astype(dtype)
    ref, ref_inn = ekf(prices, return_innovations=True)
    got, got_inn = ekf(torch.from_numpy(prices).cuda(), return_innovations=True, device="cuda")
    np.testing.assert_allclose(got.cpu().numpy(), ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got_inn.cpu().numpy(), ref_inn, rtol=1e-6, atol=1e-9)


# ---- bad input ------------------------------------------------------------------------------

def small_gpu_env(n: int = 8) -> VecTradingEnv:
    o, c, f = random_market(200, 3, 0)
    return VecTradingEnv(Market(o, c, f, device="cuda"), n_envs=n, episode_length=20)


def test_host_actions_wrong_dtype_shape_and_layout_raise_clean_errors() -> None:
    env = small_gpu_env()
    env.reset()
    with pytest.raises(DeviceError, match="actions"):
        env.step(np.ones(8, dtype=np.int64))
    with pytest.raises(DeviceError, match="actions"):
        env.step(torch.ones(8, dtype=torch.int64))
    with pytest.raises(ShapeError, match="actions"):
        env.step(torch.ones(8, dtype=torch.float32, device="cuda"))
    with pytest.raises(ShapeError, match="actions"):
        env.step(torch.ones(9, dtype=torch.int64, device="cuda"))
    with pytest.raises(ShapeError, match="C-contiguous"):
        env.step(torch.ones(16, dtype=torch.int64, device="cuda")[::2])


def test_invalid_action_values_are_reported() -> None:
    env = small_gpu_env()
    env.reset()
    env.step(torch.tensor([1, 1, 1, 7, 1, 1, 1, 1], device="cuda"))
    with pytest.raises(InvalidArgumentError, match="env 3"):
        env.check_actions()
    env.check_actions()  # reported once


def test_bad_pointer_is_rejected() -> None:
    env = small_gpu_env()

    class Bogus:
        __cuda_array_interface__ = {"shape": (8,), "typestr": "<i8", "data": (0xDEAD0000, False), "version": 3}

    with pytest.raises(DeviceError, match="not CUDA device memory"):
        env.step(Bogus())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_wrong_device_is_rejected() -> None:
    env = small_gpu_env()
    with pytest.raises(DeviceError, match="cuda:0"):
        env.step(torch.ones(8, dtype=torch.int64, device="cuda:1"))


def test_device_inputs_with_bad_values_raise() -> None:
    prices = torch.ones(3, 50, dtype=torch.float64, device="cuda")
    prices[1, 20] = float("nan")
    with pytest.raises(InvalidArgumentError, match="series 1, bar 20"):
        ekf(prices, device="cuda")
    sig = torch.ones(50, 4, dtype=torch.int8, device="cuda")
    sig[10, 2] = 5
    with pytest.raises(InvalidArgumentError, match=r"\[10, 2\]"):
        backtest_signals(np.ones(50), np.ones(50), sig, device="cuda")


def test_cupy_arrays_are_accepted() -> None:
    cupy = pytest.importorskip("cupy")
    env = small_gpu_env()
    env.reset()
    env.step(cupy.full(8, 2, dtype=cupy.int32))
    assert (env._info["position"] == 1).all()


def test_a_seeded_reset_makes_a_used_cuda_env_start_the_episodes_a_fresh_cpu_env_starts():
    """reset(seed=s) on the GPU, as on the CPU: a CUDA env stepped through several episodes
    starts, after it, the episodes a fresh CPU env starts with that seed, before a step (the same
    first episode again) and after one (the next)."""
    c = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 100)))
    fresh = VecTradingEnv(Market(c, c), n_envs=2, episode_length=5, seed=3)
    used = VecTradingEnv(Market(c, c, device="cuda"), n_envs=2, episode_length=5, seed=3)

    def start(env, **kw):  # host copies: info holds views of buffers the next call rewrites
        bar = env.reset(**kw)[1]["bar"]
        return bar.cpu().numpy().copy() if hasattr(bar, "cpu") else np.array(bar)

    used.reset()
    for _ in range(7):
        used.step(torch.ones(2, dtype=torch.int8, device="cuda"))
    first = start(fresh, seed=3)
    np.testing.assert_array_equal(start(used, seed=3), first)
    for _ in range(2):
        np.testing.assert_array_equal(start(used), first)
        np.testing.assert_array_equal(start(fresh), first)
    fresh.step(np.ones(2, dtype=np.int8))
    used.step(torch.ones(2, dtype=torch.int8, device="cuda"))
    after = [start(fresh), start(fresh)]
    np.testing.assert_array_equal([start(used), start(used)], after)
    assert not np.array_equal(after[0], first) and not np.array_equal(after[1], after[0])

