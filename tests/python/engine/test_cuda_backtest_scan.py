"""The chunked-scan CUDA backtester against the CPU kernel (marker ``cuda``: skipped without a
CUDA build and device).

Positions and counts (trades, turnover, exposure, win rate) must be identical; equity-derived
metrics agree to 1e-9 relative. The chunk size is forced small so that every chunk edge, the
sub-chunk re-run of a chunk near the bankruptcy floor and floors hit at chunk edges are
exercised; chunk 0 is the automatic size the default path uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from himari import _core
from himari.engine import backtest_signals, cuda_available
from himari.errors import InvalidArgumentError

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not cuda_available(), reason="needs a CUDA build of himari and a CUDA device")]

torch = pytest.importorskip("torch")

COUNTS = ("n_trades", "turnover", "exposure", "win_rate")


def prices(t: int, seed: int, vol: float = 0.01, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, t)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.2 * vol, t))
    return open_, close


def signals(t: int, m: int, seed: int) -> np.ndarray:
    """Strategies with different habits: uniform, sticky, rare actions, all HOLD, buy once, sell once."""
    rng = np.random.default_rng(seed)
    sig = np.ones((t, m), dtype=np.int8)
    for j in range(m):
        habit = j % 6
        p_act = (1.0, 0.1, 0.02, 0.0, 0.0, 0.0)[habit]
        act = rng.random(t) < p_act
        sig[act, j] = rng.integers(0, 3, int(act.sum()))
        if habit == 4:
            sig[0, j] = 2
        if habit == 5:
            sig[0, j] = 0
    return sig


def scan(open_, close, sig, *, fee: float, slippage: float, mode: str, chunk: int,
         kernel: str = "scan", tiles: bool = True) -> dict[str, np.ndarray]:
    device_sig = sig if isinstance(sig, torch.Tensor) else torch.from_numpy(sig).cuda()
    metrics, _ = _core.backtest_signals_cuda(open_, close, device_sig, fee, slippage, mode, 252.0,
                                             False, 0, 0, kernel=kernel, chunk=chunk, tiles=tiles)
    from himari.engine.backtest import BacktestResult

    return {n: metrics[:, i] for i, n in enumerate(BacktestResult.metric_names())}


def expect_parity(open_, close, sig, *, fee: float, slippage: float, mode: str, chunk: int,
                  kernel: str = "scan", tiles: bool = True) -> dict[str, np.ndarray]:
    """The CUDA metrics, checked against the CPU backtester's."""
    ref = backtest_signals(open_, close, sig, fee=fee, slippage=slippage, mode=mode, bars_per_year=252.0)
    got = scan(open_, close, sig, fee=fee, slippage=slippage, mode=mode, chunk=chunk, kernel=kernel, tiles=tiles)
    where = f"T={len(close)} M={sig.shape[1]} {mode} fee={fee} chunk={chunk} kernel={kernel} tiles={tiles}"
    for name in ref.metric_names():
        if name in COUNTS:
            np.testing.assert_array_equal(got[name], getattr(ref, name), err_msg=f"{name} {where}")
        else:
            np.testing.assert_allclose(got[name], getattr(ref, name), rtol=1e-9, atol=1e-12, err_msg=f"{name} {where}")
    return got


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
@pytest.mark.parametrize("t", [2, 3, 66, 1001])
def test_scan_matches_cpu_for_chunk_sizes(mode: str, t: int) -> None:
    o, c = prices(t, t)
    for m in (1, 37, 130):
        sig = signals(t, m, t + m)
        for chunk in (1, 2, 7, 64, 0):
            expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode=mode, chunk=chunk)
    expect_parity(o, c, signals(t, 37, 1), fee=0.0, slippage=0.0, mode=mode, chunk=5)


def test_scan_matches_cpu_over_a_long_series() -> None:
    o, c = prices(20001, 3, vol=0.004)
    sig = signals(20001, 300, 4)
    for mode in ("long_flat", "long_short"):
        for chunk in (0, 257, 4096):
            expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode=mode, chunk=chunk)


@pytest.mark.parametrize("mode", ["long_flat", "long_short"])
def test_scan_floor_inside_and_at_chunk_edges(mode: str) -> None:
    # Heavy fees drain frequent traders to the floor; a rally liquidates the shorts.
    o, c = prices(700, 5, drift=0.002)
    sig = signals(700, 96, 6)
    ref = backtest_signals(o, c, sig, fee=0.3, slippage=0.01, mode=mode, bars_per_year=252.0, return_equity=True)
    broke = (ref.equity <= 1e-12).any(axis=0)
    assert broke.sum() >= 10, "the case must drive strategies to the floor"
    first = np.argmax(ref.equity <= 1e-12, axis=0)[broke] - 1  # the step that hit the floor
    at_start = at_end = 0
    for chunk in (1, 2, 3, 5, 7, 13, 40, 97, 699):
        at_start += int((first % chunk == 0).sum()) if chunk > 1 else 0
        at_end += int((first % chunk == chunk - 1).sum()) if chunk > 1 else 0
        expect_parity(o, c, sig, fee=0.3, slippage=0.01, mode=mode, chunk=chunk)
    assert at_start > 0 and at_end > 0


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_default_cuda_path_matches_cpu_for_every_dtype(dtype) -> None:
    o, c = prices(3000, 9)
    sig = signals(3000, 70, 10).astype(dtype)
    ref = backtest_signals(o, c, sig, mode="long_short")
    got = backtest_signals(o, c, torch.from_numpy(sig).cuda(), mode="long_short", device="cuda")
    for name in ref.metric_names():
        if name in COUNTS:
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        else:
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kernel,mode", [("scan", "long_flat"), ("scan", "long_short"), ("held_runs", "long_flat")])
@pytest.mark.parametrize("t", [66, 1001])
def test_tiled_signals_match_cpu_and_the_untiled_kernel_to_the_bit(kernel: str, mode: str, t: int) -> None:
    # Rows of 4, 132 (a last block of 4 strategies) and 256 int8 actions are staged in shared
    # memory, 64 bars a tile: chunks of 1, 7, 64, 65 and 100 bars cut tiles short or split them.
    # The untiled kernel feeds the same walks one action at a time, so the two agree to the bit.
    o, c = prices(t, t + 5)
    for m in (4, 132, 256):
        sig = signals(t, m, t + m + 5)
        for chunk in (1, 7, 64, 65, 100, 0):
            tiled = expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode=mode, chunk=chunk, kernel=kernel)
            untiled = scan(o, c, sig, fee=1e-3, slippage=5e-4, mode=mode, chunk=chunk, kernel=kernel, tiles=False)
            for name, values in tiled.items():
                np.testing.assert_array_equal(values, untiled[name], err_msg=f"{name} M={m} chunk={chunk}")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_tiles_for_every_dtype_and_a_misaligned_start(dtype) -> None:
    # Rows of 72 actions fit 4-byte copies for every width; a view starting one element into its
    # buffer does not (for 1- and 2-byte actions) and must fall back, not fault or misread.
    o, c = prices(700, 13)
    sig = signals(700, 72, 14).astype(dtype)
    want = expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode="long_short", chunk=0)
    flat = torch.empty(sig.size + 1, dtype=torch.from_numpy(sig).dtype, device="cuda")
    shifted = flat[1:].view(sig.shape)
    shifted.copy_(torch.from_numpy(sig))
    got = scan(o, c, shifted, fee=1e-3, slippage=5e-4, mode="long_short", chunk=0)
    for name, values in got.items():
        np.testing.assert_array_equal(values, want[name], err_msg=name)


@pytest.mark.parametrize("tiles", [True, False])
@pytest.mark.parametrize("kernel", ["scan", "held_runs"])
def test_first_invalid_action_is_reported_with_and_without_tiles(kernel: str, tiles: bool) -> None:
    o, c = prices(300, 3)
    bad = np.ones((300, 136), dtype=np.int8)
    bad[::17, :] = 2
    bad[200, 133] = 9  # in the last block, after a tile edge
    bad[250, 5] = -1
    with pytest.raises(InvalidArgumentError, match=r"\[200, 133\]"):
        scan(o, c, bad, fee=1e-3, slippage=5e-4, mode="long_flat", chunk=70, kernel=kernel, tiles=tiles)


def test_scan_reports_the_first_invalid_action() -> None:
    o, c = prices(100, 1)
    sig = np.ones((100, 8), dtype=np.int8)
    sig[70, 2] = 9
    sig[5, 3] = 7
    with pytest.raises(InvalidArgumentError, match=r"\[5, 3\]"):
        scan(o, c, sig, fee=1e-3, slippage=5e-4, mode="long_flat", chunk=3)


@pytest.mark.parametrize("t", [2, 3, 66, 1001])
def test_held_run_summaries_match_cpu_for_chunk_sizes(t: int) -> None:
    # Long-flat chunks summarised by held runs (a compare per bar, account maths at fills, runs
    # from the shared tables on the device) against the CPU's per-bar kernel.
    o, c = prices(t, t)
    for m in (1, 37, 130):
        sig = signals(t, m, t + m)
        for chunk in (1, 2, 7, 64, 0):
            expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode="long_flat", chunk=chunk, kernel="held_runs")


def test_held_run_summaries_over_a_long_series_and_at_the_floor() -> None:
    o, c = prices(20001, 3, vol=0.004)
    sig = signals(20001, 300, 4)
    for chunk in (0, 257, 4096):
        expect_parity(o, c, sig, fee=1e-3, slippage=5e-4, mode="long_flat", chunk=chunk, kernel="held_runs")
    o, c = prices(700, 5, drift=0.002)
    for chunk in (1, 3, 40, 699):
        expect_parity(o, c, signals(700, 96, 6), fee=0.3, slippage=0.01, mode="long_flat", chunk=chunk,
                      kernel="held_runs")
    o, c = prices(100, 1)
    bad = np.ones((100, 8), dtype=np.int8)
    bad[5, 3] = 7
    with pytest.raises(InvalidArgumentError, match=r"\[5, 3\]"):
        scan(o, c, bad, fee=1e-3, slippage=5e-4, mode="long_flat", chunk=3, kernel="held_runs")


def test_kernel_and_chunk_are_checked() -> None:
    o, c = prices(10, 1)
    sig = torch.ones((10, 2), dtype=torch.int8, device="cuda")
    args = (o, c, sig, 1e-3, 5e-4, "long_flat", 252.0)
    with pytest.raises(InvalidArgumentError, match="kernel"):
        _core.backtest_signals_cuda(*args, False, 0, 0, kernel="fast")
    with pytest.raises(InvalidArgumentError, match="metrics only"):
        _core.backtest_signals_cuda(*args, True, 0, 0, kernel="scan")
    with pytest.raises(InvalidArgumentError, match="chunk"):
        _core.backtest_signals_cuda(*args, False, 0, 0, kernel="scan", chunk=-1)
    with pytest.raises(InvalidArgumentError, match="long_flat signals only"):
        _core.backtest_signals_cuda(o, c, sig, 1e-3, 5e-4, "long_short", 252.0, False, 0, 0, kernel="held_runs")
    with pytest.raises(InvalidArgumentError, match="metrics only"):
        _core.backtest_signals_cuda(*args, True, 0, 0, kernel="held_runs")
