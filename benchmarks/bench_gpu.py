#!/usr/bin/env python
"""By-hand benchmark of the CUDA backend on one GPU: prints a table and writes JSON.

NOT a test. Needs a CUDA build (``HIMARI_ENABLE_CUDA=ON pip install .``) and torch with CUDA.

    python benchmarks/bench_gpu.py --out gpu.json            # everything, about 3-4 minutes on an H100
    python benchmarks/bench_gpu.py --only env,backtest --quick

What it measures (medians of CUDA-event timings after warm-up):

1. Ceilings: device-to-device copy bandwidth (bytes read + written), and a bf16 matmul rate.
2. Env steps/s at N = 1,024, 65,536, 1,048,576 (60 features, window 1: observation writes
   included), eager and captured in a CUDA graph, against a torch-vectorised reference env
   written here (elementwise torch ops per step with the same account maths, reward terms and
   observation writes; float64 state like himari). The reference is first checked against the
   himari env on the same actions. Bytes per env step are counted (BYTES_PER_ENV_STEP) and the
   achieved bandwidth is reported against the measured copy bandwidth.
3. backtest_signals over 100,000 bars x 10,000 strategies (int8 signals on the GPU): time,
   bar-strategies/s and bandwidth counting the signals read once.
4. ekf over 10,000 series x 100,000 bars (float32 prices on the GPU; float64 states written):
   time and samples/s, against the CPU core on the same machine (measured on a slice).
5. PPO-LSTM end to end at N = 4,096 envs (rollout on the GPU + PPO updates): env steps/s,
   against the same on the CPU (all cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
N_FEATURES = 60


def bytes_per_env_step(n_features: int, action_bytes: int = 1) -> int:
    """Fewest bytes one env step moves through device memory (window 1, no episode end):
    action read; 13 account fields and 2 DSR accumulators read and written (double);
    4 reward terms written (double); reward (float) and 3 flags written; bar and step counter
    read and written, episode length read (int64); open and close of the next bar read
    (double); the feature row read and the observation row (features + 4 account columns)
    written (float)."""
    return (action_bytes + 13 * 8 * 2 + 2 * 8 * 2 + 4 * 8 + 4 + 3 + 8 * 2 + 8 * 2 + 8 + 2 * 8
            + 4 * n_features + 4 * (n_features + 4))


BYTES_PER_ENV_STEP = bytes_per_env_step(N_FEATURES)


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, sms=p.multi_processor_count, gpu_memory_gib=round(p.total_memory / 2**30, 1))
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                                             "--format=csv,noheader"], capture_output=True, text=True,
                                            timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def time_cuda(fn, iters: int, repeats: int = 7, warmup: int = 3) -> float:
    """Median seconds per call of ``fn`` (CUDA events around ``iters`` calls, ``repeats`` times)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / iters)
    return statistics.median(samples)


# ----------------------------------------------------------------------------- ceilings

def ceilings(quick: bool) -> dict:
    import torch

    n = (1 << 28) if not quick else (1 << 24)  # 1 GiB of float32 per buffer
    x = torch.rand(n, device="cuda")
    y = torch.empty_like(x)
    t = time_cuda(lambda: y.copy_(x), iters=10)
    copy_bw = 2 * x.numel() * 4 / t
    m = 8192 if not quick else 2048
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    tm = time_cuda(lambda: a @ b, iters=10)
    return {"copy_bandwidth_bytes_per_s": copy_bw, "bf16_matmul_flops": 2 * m**3 / tm}


# ----------------------------------------------------------------------------- env

def market_arrays(bars: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.003, bars)))
    open_ = close * np.exp(rng.normal(0, 0.0005, bars))
    return open_, close, rng.normal(size=(bars, N_FEATURES)).astype(np.float32)


class TorchReferenceEnv:
    """The env a user would write with elementwise torch ops: the same account maths as
    account_math.h (fill at the next open with slippage and fee, all-in positions, long/short,
    bankruptcy floor), drawdown and turnover reward terms, and the observation (feature row of
    the bar + 4 account columns) written every step. float64 state like himari's."""

    def __init__(self, open_, close, feats, n: int, episode_length: int, fee: float, slippage: float,
                 dd_penalty: float, turnover_penalty: float, seed: int = 0, device: str = "cuda") -> None:
        import torch

        dev = self.device = device
        self.open = torch.tensor(open_, device=dev)
        self.close = torch.tensor(close, device=dev)
        self.feats = torch.tensor(feats, device=dev)
        self.n, self.L, self.fee, self.slip = n, episode_length, fee, slippage
        self.ddp, self.tp = dd_penalty, turnover_penalty
        # The default generator of the device: a CUDA graph captures it without registration.
        self.gen = torch.Generator(device=dev).manual_seed(seed) if dev == "cpu" else None
        f64 = dict(dtype=torch.float64, device=dev)
        self.cash = torch.ones(n, **f64)
        self.units = torch.zeros(n, **f64)
        self.equity = torch.ones(n, **f64)
        self.peak = torch.ones(n, **f64)
        self.entry = torch.ones(n, **f64)
        self.pos = torch.zeros(n, **f64)
        self.bars_in = torch.zeros(n, **f64)
        self.drawdown = torch.zeros(n, **f64)
        self.bar = torch.zeros(n, dtype=torch.int64, device=dev)
        self.step_count = torch.zeros(n, dtype=torch.int64, device=dev)
        self.obs = torch.zeros(n, feats.shape[1] + 4, device=dev)
        self.reward = torch.zeros(n, device=dev)
        self.done = torch.zeros(n, dtype=torch.bool, device=dev)

    def reset_all(self, starts) -> None:
        self.bar.copy_(starts)
        self.step_count.zero_()
        self._write_obs()

    def _write_obs(self) -> None:
        import torch

        f = self.feats.shape[1]
        self.obs[:, :f] = self.feats[self.bar]
        self.obs[:, f] = self.pos.float()
        self.obs[:, f + 1] = (self.pos.abs() * (self.equity / self.entry - 1.0)).float()
        self.obs[:, f + 2] = (-self.drawdown).float()
        self.obs[:, f + 3] = torch.log1p(self.bars_in).float()

    def step(self, actions) -> None:
        import torch

        a = actions.to(torch.float64)
        nxt = self.bar + 1
        no, nc = self.open[nxt], self.close[nxt]
        prev_eq, prev_dd = self.equity, self.drawdown
        target = torch.where(a > 1.5, 1.0, torch.where(a < 0.5, -1.0, self.pos))
        traded = (target - self.pos).abs()
        trade = traded.clamp(max=1.0)
        closing = trade * self.pos.abs()
        close_px = no * (1 - self.slip * self.pos)
        cash_after = self.cash + self.units * close_px - self.fee * self.units.abs() * close_px
        cash = torch.where(closing > 0.5, cash_after, self.cash)
        units = torch.where(closing > 0.5, 0.0, self.units)
        opening = trade * target.abs()
        open_px = no * (1 + self.slip * target)
        qty = cash / (open_px * (1 + self.fee))
        notional = qty * open_px
        self.entry = torch.where(opening > 0.5, cash, self.entry)
        cash = torch.where(opening > 0.5, cash - target * notional - self.fee * notional, cash)
        units = torch.where(opening > 0.5, target * qty, units)
        self.bars_in = torch.where(target.abs() < 0.5, 0.0, torch.where(opening > 0.5, 1.0, self.bars_in + 1))
        marked = cash + units * nc
        broke = marked <= 1e-12
        self.cash = torch.where(broke, 1e-12, cash)
        self.units = torch.where(broke, 0.0, units)
        self.pos = torch.where(broke, 0.0, target)
        self.equity = torch.where(broke, 1e-12, marked)
        self.peak = torch.maximum(self.peak, self.equity)
        self.drawdown = 1 - self.equity / self.peak
        r = torch.log(self.equity / prev_eq) - self.ddp * (self.drawdown - prev_dd).clamp(min=0) - self.tp * traded
        self.reward.copy_(r)
        self.bar = nxt
        self.step_count += 1
        self.done = broke | (self.step_count >= self.L)
        # Same-step autoreset of finished envs: a new random start and a fresh account.
        starts = torch.randint(0, self.open.numel() - self.L - 1, (self.n,), device=self.device, generator=self.gen)
        d = self.done
        self.bar = torch.where(d, starts, self.bar)
        self.step_count = torch.where(d, 0, self.step_count)
        for name in ("cash", "equity", "peak", "entry"):
            setattr(self, name, torch.where(d, 1.0, getattr(self, name)))
        for name in ("units", "pos", "bars_in", "drawdown"):
            setattr(self, name, torch.where(d, 0.0, getattr(self, name)))
        self._write_obs()


def check_reference(open_, close, feats) -> float:
    """Max relative reward difference between the torch reference and the himari CUDA env over
    50 steps of random actions from the same starts (no episode ends in the window)."""
    import torch

    from himari.engine import Market, RewardConfig, VecTradingEnv

    n = 1024
    env = VecTradingEnv(Market(open_, close, feats, device="cuda"), n_envs=n, episode_length=2048,
                        mode="long_short", reward=RewardConfig(drawdown_penalty=0.5, turnover_penalty=1e-4))
    env.reset(seed=3)
    ref = TorchReferenceEnv(open_, close, feats, n, 2048, 1e-3, 5e-4, 0.5, 1e-4)
    ref.reset_all(env._info["bar"].clone())
    worst = 0.0
    gen = torch.Generator(device="cuda").manual_seed(1)
    for _ in range(50):
        a = torch.randint(0, 3, (n,), device="cuda", generator=gen)
        _, r, *_ = env.step(a)
        ref.step(a)
        worst = max(worst, float(((ref.reward - r).abs() / r.abs().clamp(min=1e-6)).max()))
        obs_diff = float((ref.obs - env._obs[:, -1, :]).abs().max())
        worst = max(worst, obs_diff)
    return worst


GRAPH_STEPS = 10
"""Env steps per captured CUDA graph."""


def capture_steps(step, count: int):
    """``count`` calls of ``step`` captured in one CUDA graph, after warm-up calls on a side
    stream (torch's recipe: allocations and lazy initialisation stay out of the capture)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(count):
            step()
    return graph


def bench_env(sizes: list[int], quick: bool, copy_bw: float) -> list[dict]:
    import torch

    from himari.engine import Market, RewardConfig, VecTradingEnv

    open_, close, feats = market_arrays(20_000 if quick else 200_000)
    rows = []
    ref_error = check_reference(open_, close, feats)
    print(f"torch reference vs himari CUDA env, max relative reward / abs obs difference: {ref_error:.2e}")
    market = Market(open_, close, feats, device="cuda")
    for n in sizes:
        env = VecTradingEnv(market, n_envs=n, episode_length=2048, mode="long_short",
                            reward=RewardConfig(drawdown_penalty=0.5, turnover_penalty=1e-4))
        env.reset(seed=0)
        acts = [torch.randint(0, 3, (n,), device="cuda", dtype=torch.int8) for _ in range(4)]
        k = {"i": 0}

        def step() -> None:
            env.step(acts[k["i"] & 3])
            k["i"] += 1

        iters = 50 if n >= 1 << 20 else 200
        t_eager = time_cuda(step, iters)
        graph = capture_steps(step, GRAPH_STEPS)
        t_graph = time_cuda(graph.replay, max(1, iters // GRAPH_STEPS)) / GRAPH_STEPS
        ref = TorchReferenceEnv(open_, close, feats, n, 2048, 1e-3, 5e-4, 0.5, 1e-4)
        ref.reset_all(torch.randint(0, len(close) - 2049, (n,), device="cuda"))
        ref_acts = [a.long() for a in acts]
        kr = {"i": 0}

        def ref_step() -> None:
            ref.step(ref_acts[kr["i"] & 3])
            kr["i"] += 1

        t_ref_eager = time_cuda(ref_step, max(5, iters // 4), repeats=5)
        # The reference captured in a CUDA graph too (its best case: no Python or launch gaps).
        # Its state tensors are re-bound by each step, so replays recompute the captured steps from
        # the captured inputs: the same kernels and bytes as stepping on, which is what is timed.
        ref_graph = capture_steps(ref_step, GRAPH_STEPS)
        t_ref_graph = time_cuda(ref_graph.replay, max(1, iters // 40), repeats=5) / GRAPH_STEPS
        t_ref = min(t_ref_eager, t_ref_graph)
        best = min(t_eager, t_graph)
        row = {"n_envs": n, "himari_eager_steps_per_s": n / t_eager, "himari_graph_steps_per_s": n / t_graph,
               "torch_reference_eager_steps_per_s": n / t_ref_eager,
               "torch_reference_graph_steps_per_s": n / t_ref_graph,
               "torch_reference_steps_per_s": n / t_ref, "ratio_vs_torch": t_ref / best,
               "bytes_per_env_step": BYTES_PER_ENV_STEP,
               "bandwidth_fraction": n * BYTES_PER_ENV_STEP / best / copy_bw}
        rows.append(row)
        print(f"env N={n:>9,}: himari {n / t_eager:.3e} (eager) {n / t_graph:.3e} (graph) steps/s; "
              f"torch ref {n / t_ref_eager:.3e} (eager) {n / t_ref_graph:.3e} (graph); x{t_ref / best:.1f}; "
              f"{row['bandwidth_fraction']:.0%} of copy bandwidth")
        del env, ref, graph, ref_graph
        torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------- backtest, ekf

def bench_backtest(quick: bool, copy_bw: float) -> dict:
    import torch

    from himari.engine import backtest_signals

    t_bars, m = (10_000, 1_000) if quick else (100_000, 10_000)
    open_, close, _ = market_arrays(t_bars, seed=1)
    sig = torch.randint(0, 3, (t_bars, m), device="cuda", dtype=torch.int8)
    t = time_cuda(lambda: backtest_signals(open_, close, sig, device="cuda"), iters=1, repeats=5, warmup=1)
    cpu_m = 200
    sig_cpu = sig[:, :cpu_m].cpu().numpy()
    t0 = time.perf_counter()
    backtest_signals(open_, close, sig_cpu)
    t_cpu = time.perf_counter() - t0
    out = {"bars": t_bars, "strategies": m, "seconds": t, "bar_strategies_per_s": t_bars * m / t,
           "bandwidth_fraction_signals_once": t_bars * m / t / copy_bw,
           "cpu_bar_strategies_per_s": t_bars * cpu_m / t_cpu}
    print(f"backtest {t_bars:,} x {m:,}: {t * 1e3:.1f} ms, {out['bar_strategies_per_s']:.3e} bar-strategies/s, "
          f"{out['bandwidth_fraction_signals_once']:.1%} of copy bandwidth; CPU core {out['cpu_bar_strategies_per_s']:.3e}")
    return out


def bench_ekf(quick: bool) -> dict:
    import torch

    from himari.engine import ekf

    b, t_bars = (1_000, 10_000) if quick else (10_000, 100_000)
    prices = (100 * torch.exp(torch.cumsum(torch.randn(b, t_bars, device="cuda") * 0.003, dim=1))).float()
    torch.cuda.empty_cache()  # the 32 GB of states are allocated by the core, outside torch's cache
    holder = {}

    def run() -> None:
        holder["s"] = None
        holder["s"] = ekf(prices, device="cuda")

    t = time_cuda(run, iters=1, repeats=3, warmup=1)
    holder.clear()
    cpu_b = 16
    p_cpu = prices[:cpu_b].cpu().numpy()
    t0 = time.perf_counter()
    ekf(p_cpu)
    t_cpu = time.perf_counter() - t0
    out = {"series": b, "bars": t_bars, "seconds": t, "samples_per_s": b * t_bars / t,
           "cpu_samples_per_s": cpu_b * t_bars / t_cpu, "cpu_series_measured": cpu_b}
    out["ratio_vs_cpu"] = out["samples_per_s"] / out["cpu_samples_per_s"]
    print(f"ekf {b:,} x {t_bars:,}: {t:.3f} s, {out['samples_per_s']:.3e} samples/s; CPU core "
          f"{out['cpu_samples_per_s']:.3e} ({cpu_b} series); x{out['ratio_vs_cpu']:.0f}")
    return out


# ----------------------------------------------------------------------------- PPO-LSTM

def bench_ppo(device: str, n_envs: int, iterations: int, steps: int) -> dict:
    import torch

    from himari.plugin import EnvConfig, ModelContext
    from himari.plugin.api import EnvSource, TrainContext
    from himari_builtin.models.ppo_lstm import PPOLSTM, PPOLSTMConfig

    open_, close, feats = market_arrays(100_000, seed=2)
    cfg = PPOLSTMConfig(n_envs=n_envs, rollout_steps=steps, update_epochs=4, n_minibatches=4, episode_length=2048,
                        cpu_threads=os.cpu_count() or 1)
    model = PPOLSTM(cfg, ModelContext(n_features=feats.shape[1]))
    model.network.to(device)
    # the Trainer's own context type, so every field a rollout reads has its default
    ctx = TrainContext(data=SimpleNamespace(open=open_, close=close), features=feats, labels=None,
                       splits={"train": [(0, len(close))]}, env=EnvConfig(), model=ModelContext(n_features=feats.shape[1]),
                       seed=0)
    ctx.env_source = EnvSource(open=open_, close=close, features=feats, config=ctx.env)  # the whole market
    opt = torch.optim.AdamW(model.network.parameters(), lr=3e-4, weight_decay=1e-4)
    state = {"first": True}

    def iterate() -> None:
        buf = model.rollout(ctx, state["first"])
        state["first"] = False
        model.network.train()
        mb = len(buf) // cfg.n_minibatches
        for _ in range(cfg.update_epochs):
            order = torch.randperm(len(buf), device=buf.obs.device)
            for k in range(cfg.n_minibatches):
                loss, _ = model.loss(buf[order[k * mb:(k + 1) * mb]], ctx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.network.parameters(), 0.5)
                opt.step()

    iterate()  # warm-up (cuDNN plans, allocator)
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iterations):
        iterate()
    if device != "cpu":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    sps = iterations * n_envs * steps / dt
    print(f"ppo-lstm {device}: N={n_envs} x {steps} steps, {iterations} iteration(s): {sps:,.0f} env steps/s "
          "(rollout + 4x4 minibatch updates)")
    return {"device": device, "n_envs": n_envs, "rollout_steps": steps, "iterations": iterations,
            "env_steps_per_s": sps, "seconds": dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="ceilings,env,backtest,ekf,ppo")
    ap.add_argument("--ppo-cpu-iterations", type=int, default=1)
    ap.add_argument("--sizes", default="", help="env sizes, comma-separated (default 1024,65536,1048576)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    import torch

    from himari.engine import build_info, cuda_available

    if not cuda_available():
        sys.exit(f"needs a CUDA build and device: {build_info()}")
    result: dict = {"machine": machine(), "build": build_info(), "bytes_per_env_step": BYTES_PER_ENV_STEP}

    def save() -> None:  # after every part, so a run cut short still leaves its numbers
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))

    result["ceilings"] = ceilings(args.quick)
    copy_bw = result["ceilings"]["copy_bandwidth_bytes_per_s"]
    print(f"copy bandwidth {copy_bw / 1e12:.2f} TB/s; bf16 matmul {result['ceilings']['bf16_matmul_flops'] / 1e12:.0f} TFLOP/s")
    if "env" in parts:
        sizes = [1024, 65_536] if args.quick else [1024, 65_536, 1_048_576]
        if args.sizes:
            sizes = [int(x) for x in args.sizes.split(",")]
        result["obs_path"] = os.environ.get("HIMARI_CUDA_OBS", "auto")
        result["env"] = bench_env(sizes, args.quick, copy_bw)
        save()
    if "backtest" in parts:
        result["backtest"] = bench_backtest(args.quick, copy_bw)
        save()
    if "ekf" in parts:
        result["ekf"] = bench_ekf(args.quick)
        save()
    if "ppo" in parts:
        n = 512 if args.quick else 4096
        gpu = bench_ppo("cuda", n, 2 if args.quick else 3, 128)
        result["ppo_lstm"] = {"cuda": gpu, "cpu": None, "ratio": None}
        save()
        cpu = bench_ppo("cpu", n, args.ppo_cpu_iterations, 128) if not args.quick else None
        result["ppo_lstm"] = {"cuda": gpu, "cpu": cpu,
                              "ratio": None if cpu is None else gpu["env_steps_per_s"] / cpu["env_steps_per_s"]}
    print("\n| benchmark | himari CUDA | peer / ceiling | ratio |\n|---|---|---|---|")
    for row in result.get("env", []):
        print(f"| env steps/s N={row['n_envs']:,} | {max(row['himari_eager_steps_per_s'], row['himari_graph_steps_per_s']):.3e} "
              f"| torch ref {row['torch_reference_steps_per_s']:.3e} | x{row['ratio_vs_torch']:.1f} "
              f"({row['bandwidth_fraction']:.0%} of copy BW) |")
    if "backtest" in result:
        b = result["backtest"]
        print(f"| backtest {b['bars']:,}x{b['strategies']:,} | {b['seconds'] * 1e3:.1f} ms | signals-once BW "
              f"| {b['bandwidth_fraction_signals_once']:.1%} |")
    if "ekf" in result:
        e = result["ekf"]
        print(f"| ekf {e['series']:,}x{e['bars']:,} | {e['samples_per_s']:.3e} samples/s | CPU core "
              f"{e['cpu_samples_per_s']:.3e} | x{e['ratio_vs_cpu']:.0f} |")
    if "ppo_lstm" in result:
        p = result["ppo_lstm"]
        cpu_txt = "-" if p["cpu"] is None else f"{p['cpu']['env_steps_per_s']:,.0f}"
        ratio = "-" if p["ratio"] is None else f"x{p['ratio']:.1f}"
        print(f"| ppo-lstm N={p['cuda']['n_envs']} env steps/s | {p['cuda']['env_steps_per_s']:,.0f} | CPU {cpu_txt} | {ratio} |")
    save()
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
