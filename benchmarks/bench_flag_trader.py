#!/usr/bin/env python
"""By-hand benchmark of FLAG-TRADER (``flag-trader``): PPO-update throughput, model FLOPs
utilisation in bf16, peak GPU memory, and inference latency per decision.

NOT a test: run it by hand on an otherwise idle GPU and read the table.

    python benchmarks/bench_flag_trader.py --out results/flag-trader-h100.json   # CUDA, ~1-2 minutes
    python benchmarks/bench_flag_trader.py --tiny --out /tmp/ft.json              # CPU smoke run, seconds

What is timed (the default config: GPT-2 768-d x 12 layers, context 256, LoRA rank 16):

- **PPO update**: exactly the Trainer's online step on one minibatch: bf16 autocast,
  ``FlagTrader.loss`` (flattened windows -> backbone -> heads -> the clipped PPO objective),
  backward, gradient-norm clipping at 1.0 and AdamW over the network's parameters. The default
  minibatch is the default run's: n_envs 8 / 4 minibatches = 2 env sequences x 128 steps = 256
  windows of 256 bars (65,536 tokens). Measured without and with gradient checkpointing.
- **Throughput**: windows (PPO samples) per second and tokens per second over ``--steps`` timed
  steps after ``--warmup`` steps; CUDA events around the whole loop.
- **MFU**: model FLOPs per update step / step time / peak. Per window of W bars, with width d,
  L blocks, MLP width i, LoRA rank r, input width D and head width h, forward FLOPs are

      frozen matmuls  F_f = 2 W L (3d^2 + d^2 + d i + i d)          (qkv, attention out, MLP in, out)
      LoRA matmuls    F_l = 2 W L r ((d + 3d) + 2d + (d + i) + (i + d))
      attention       F_a = 4 W^2 d L                                (QK^T and AV, full square)
      embedding       F_e = 2 W D d
      heads           F_h = 2 (2 d h + 3 h + h)                     (the last position only)

  and a training step costs ``2 F_f + 3 F_l + 3 F_a + 2 F_e + 3 F_h``: a frozen matrix needs the
  forward product and the gradient with respect to its input (no weight gradient); a trainable
  one (LoRA, heads) also its weight gradient; attention's score and value products have two
  backward products each; the embedding needs no input gradient (the observations are data).
  In parameter terms that is ~4 N_frozen + 6 N_trainable FLOPs per token plus attention.
  Recomputation under gradient checkpointing is not counted (model FLOPs, not hardware FLOPs).
  MFU is given against 989 TFLOP/s (H100 SXM dense bf16) and against a bf16 matmul rate
  measured in the same run (8192^3 ``torch.mm``), which is what the GPU actually sustains.
- **Where the time goes** (``--profile``): ``torch.profiler`` over ``--steps`` plain update steps,
  the GPU kernels grouped by name with their time per step, the top 25 in the JSON and table
  (matmuls, attention, elementwise, optimizer): what to change next.
- **Compiled** (``--compile``): the same update with the GPT-2 backbone compiled in place
  (``nn.Module.compile()``: TorchDynamo + Inductor fuse the LayerNorms, GELUs, residual adds and
  LoRA's scaling into fewer kernels); compile time is reported and not timed.
- **End to end** (``--end-to-end 8,64,256``): env steps per second of PPO training at each number
  of envs, rollouts included: one rollout of ``rollout_steps`` (128) steps of every env in the
  CUDA env over a synthetic market (``EnvRollout``, the model's own ``rollout``), eagerly and
  replaying the captured policy graph (``rollout_cuda_graph``), and the cycle's PPO updates
  (``update_epochs`` x ``n_minibatches`` minibatches of 256 windows: ``n_minibatches`` = envs / 2).
  Updates are timed over ``--e2e-update-steps`` minibatches and scaled to the cycle's count
  (all of them at 8 envs); env steps/s = envs x 128 / (rollout + updates).
- **Memory**: ``torch.cuda.max_memory_allocated`` during each update mode (weights, AdamW state
  of the trainable parameters, activations).
- **Inference latency**: one ``policy`` call (bf16 autocast, no grad) at batch 1 and batch 256
  windows of 256 bars, median of ``--latency-iters`` calls timed with CUDA events; per decision
  = per call / batch. Batch 1 is the sequential evaluation's cost per bar.

Writes the JSON to ``--out`` and the same table as Markdown next to it (``.md``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from bench_common import synchronize

REPO = Path(__file__).resolve().parents[1]
H100_SXM_BF16_DENSE = 989e12
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 16, "lora_rank": 4, "head_hidden": 16}


@dataclass
class Flops:
    """Forward FLOPs of one window by part (see the module docstring)."""

    frozen: float
    lora: float
    attention: float
    embedding: float
    heads: float

    def forward(self) -> float:
        return self.frozen + self.lora + self.attention + self.embedding + self.heads

    def training(self) -> float:
        return 2 * self.frozen + 3 * self.lora + 3 * self.attention + 2 * self.embedding + 3 * self.heads


def window_flops(cfg: Any, obs_dim: int) -> Flops:
    from himari_builtin.models.flag_trader import backbone_shape

    d, layers, inner, _ = backbone_shape(cfg)
    W, r, h = cfg.context_length, cfg.lora_rank, cfg.head_hidden
    heads = 2 * (d * 3 + d * 1) if h == 0 else 2 * (2 * d * h + 3 * h + h)
    return Flops(frozen=2 * W * layers * (3 * d * d + d * d + d * inner + inner * d),
                 lora=2 * W * layers * r * ((d + 3 * d) + 2 * d + (d + inner) + (inner + d)),
                 attention=4 * W * W * d * layers,
                 embedding=2 * W * obs_dim * d,
                 heads=heads)


def machine_info(device: str) -> dict[str, Any]:
    import torch

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001 - not a git checkout
        commit = None
    info = {"hostname": socket.gethostname(), "os": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "device": device}
    for mod in ("transformers", "peft"):
        info[mod] = __import__(mod).__version__
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        info.update(cpu_threads=torch.get_num_threads(), logical_cores=os.cpu_count())
    return info


class Timer:
    """Wall time of a callable: CUDA events on the GPU (no host sync inside the timed loop),
    perf_counter on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def seconds(self, fn: Callable[[], Any], iters: int) -> float:
        import torch

        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return time.perf_counter() - t

    def each(self, fn: Callable[[], Any], iters: int) -> list[float]:
        """Seconds of each of ``iters`` calls (for medians)."""
        return [self.seconds(fn, 1) for _ in range(iters)]


def matmul_rate(device: str, n: int, iters: int) -> float:
    """Sustained FLOP/s of an n^3 ``torch.mm`` (bf16 on CUDA, float32 on the CPU)."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timer = Timer(device)
    timer.seconds(lambda: torch.mm(a, b), 2)
    return 2 * n**3 * iters / timer.seconds(lambda: torch.mm(a, b), iters)


def build(args: argparse.Namespace, device: str) -> tuple[Any, Any]:
    import torch
    from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig

    from himari.plugin import ModelContext

    sizes = dict(TINY) if args.tiny else {}
    if args.context_length:
        sizes["context_length"] = args.context_length
    if args.lora_rank:
        sizes["lora_rank"] = args.lora_rank
    cfg = FlagTraderConfig(**sizes, cpu_threads=0)
    torch.manual_seed(0)
    model = FlagTrader(cfg, ModelContext(n_features=args.n_features))
    model.network.to(device)
    return model, cfg


def ppo_batch(model: Any, cfg: Any, windows: int, device: str) -> dict[str, Any]:
    """A rollout minibatch of whole env sequences ``[T, B, W, D]`` as ``RolloutBuffer`` gives it."""
    import torch

    T = min(128, windows)
    B = max(1, windows // T)
    g = torch.Generator().manual_seed(1)
    shape = (T, B)
    batch = {"obs": torch.randn(T, B, cfg.context_length, model.obs_dim, generator=g),
             "actions": torch.randint(0, 3, shape, generator=g),
             "logprobs": torch.full(shape, -1.0986), "values": torch.randn(shape, generator=g),
             "advantages": torch.randn(shape, generator=g), "returns": torch.randn(shape, generator=g),
             "starts": torch.zeros(shape), "state": ()}
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def update_step(model: Any, batch: dict[str, Any], opt: Any, device: str) -> Callable[[], None]:
    """The Trainer's ``_train_step`` for an online-RL minibatch (bf16 autocast on CUDA)."""
    import contextlib

    import torch

    params = list(model.network.parameters())

    def step() -> None:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
        with ctx:
            loss, _ = model.loss(batch, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def bench_updates(model: Any, cfg: Any, args: argparse.Namespace, device: str, checkpointing: bool,
                  flops: Flops, peaks: dict[str, float]) -> dict[str, Any]:
    import torch

    from himari_builtin.models.flag_trader import set_checkpointing

    base = model.network.backbone.get_base_model()
    set_checkpointing(base, checkpointing)
    model.network.train()
    batch = ppo_batch(model, cfg, args.windows, device)
    windows = batch["obs"].shape[0] * batch["obs"].shape[1]
    opt = torch.optim.AdamW(model.network.parameters(), lr=1e-5, weight_decay=1e-4)
    step = update_step(model, batch, opt, device)
    timer = Timer(device)
    timer.seconds(step, args.warmup)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = timer.seconds(step, args.steps) / args.steps
    row = {"mode": "update" + (" + checkpointing" if checkpointing else ""), "windows_per_step": windows,
           "tokens_per_step": windows * cfg.context_length, "step_ms": 1e3 * seconds,
           "samples_per_s": windows / seconds, "tokens_per_s": windows * cfg.context_length / seconds,
           "model_tflops_per_step": flops.training() * windows / 1e12}
    achieved = flops.training() * windows / seconds
    row["achieved_tflops"] = achieved / 1e12
    for name, peak in peaks.items():
        row[f"mfu_vs_{name}"] = achieved / peak
    if device.startswith("cuda"):
        row["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del opt, batch
    set_checkpointing(base, False)
    return row


LORA_PATHS = ("peft", "merged")
"""How a training forward pass computes the LoRA projections: peft's frozen product plus adapter
branch, or one product with the merged weight (``merged_lora``, off by default)."""


def set_lora_path(model: Any, path: str, device: str) -> None:
    from himari_builtin.models.flag_trader.merged_lora import use_merged_lora

    use_merged_lora(model.network.backbone, (torch_device_type(device),) if path == "merged" else ())


def torch_device_type(device: str) -> str:
    return device.split(":")[0]


def lora_path_parity(model: Any, cfg: Any, device: str) -> dict[str, float]:
    """One minibatch of 16 windows through both LoRA paths (bf16 autocast on CUDA, as in the
    update): the largest difference of the loss and of any gradient, relative to its largest
    magnitude. bf16 rounds differently on the two paths, so this is ~1e-2 on CUDA, ~1e-6 in
    float32."""
    import contextlib

    import torch

    batch = ppo_batch(model, cfg, 16, device)
    params = dict(model.network.named_parameters())
    model.network.train()
    results = {}
    saved = {k: p.detach().clone() for k, p in params.items() if "lora_B" in k}
    g = torch.Generator(device=device).manual_seed(2)
    with torch.no_grad():  # peft starts B at zero, where the adapter branch is exactly zero
        for k in saved:
            params[k].normal_(0.0, 0.02, generator=g)
    for path in LORA_PATHS:
        set_lora_path(model, path, device)
        model.network.zero_grad(set_to_none=True)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
        with ctx:
            loss, _ = model.loss(batch, None)
        loss.backward()
        results[path] = (loss.detach().float(), {k: p.grad.detach().float().clone() for k, p in params.items()
                                                  if p.grad is not None})
    model.network.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, value in saved.items():
            params[k].copy_(value)
    (loss_a, grads_a), (loss_b, grads_b) = results["peft"], results["merged"]
    if set(grads_a) != set(grads_b):
        raise RuntimeError("the two LoRA paths train different parameters")
    worst = max(float((grads_a[k] - grads_b[k]).abs().max() / grads_a[k].abs().max().clamp(min=1e-30)) for k in grads_a)
    return {"loss_relative": float((loss_a - loss_b).abs() / loss_a.abs().clamp(min=1e-30)),
            "worst_gradient_relative": worst, "windows": 16}


def profile_update(model: Any, cfg: Any, args: argparse.Namespace, device: str, top: int = 25) -> list[dict[str, Any]]:
    """The plain update's GPU kernels (CPU ops on the CPU) grouped by name: time per step, calls
    per step and share of the profiled time, largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    model.network.train()
    batch = ppo_batch(model, cfg, args.windows, device)
    opt = torch.optim.AdamW(model.network.parameters(), lr=1e-5, weight_decay=1e-4)
    step = update_step(model, batch, opt, device)
    step()
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        us = e.device_time_total if cuda else e.self_cpu_time_total
        if us > 0 and (not cuda or e.device_type == torch.autograd.DeviceType.CUDA):
            rows.append({"kernel": e.key[:120], "ms_per_step": us / 1e3 / args.steps, "calls_per_step": e.count / args.steps})
    total = sum(r["ms_per_step"] for r in rows) or 1.0
    for r in rows:
        r["share"] = r["ms_per_step"] / total
    rows.sort(key=lambda r: -r["ms_per_step"])
    del opt, batch
    return rows[:top]


def synthetic_market(bars: int, n_features: int, seed: int = 0) -> Any:
    """A random-walk market with standard-normal features as an ``EnvSource`` (the env costs
    and reward of a default run)."""
    import numpy as np

    from himari.plugin import EnvConfig
    from himari.plugin.api import EnvSource

    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, bars)))
    open_ = np.r_[close[0], close[:-1]]
    feats = rng.normal(size=(bars, n_features)).astype(np.float32)
    return EnvSource(open=open_, close=close, features=feats, config=EnvConfig(), rows=np.arange(bars))


def bench_end_to_end(args: argparse.Namespace, device: str, n_envs: int) -> dict[str, Any]:
    """One PPO cycle at ``n_envs`` envs: the rollout eagerly and graph-replayed (median of
    ``--e2e-rollouts`` each, after one untimed), and its updates (see the module docstring)."""
    from types import SimpleNamespace

    import torch
    from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig

    from himari.plugin import ModelContext

    sizes = dict(TINY) if args.tiny else {}
    n_minibatches = max(1, n_envs // 2)
    row: dict[str, Any] = {"n_envs": n_envs, "rollout_steps": 128, "n_minibatches": n_minibatches}
    timer = Timer(device)
    market = synthetic_market(args.e2e_bars, args.n_features)
    for graphed in (False, True):
        mode = "graph" if graphed else "eager"
        cfg = FlagTraderConfig(**sizes, cpu_threads=0, n_envs=n_envs, rollout_steps=128, n_minibatches=n_minibatches,
                               episode_length=2048, rollout_cuda_graph=graphed)
        torch.manual_seed(0)
        model = FlagTrader(cfg, ModelContext(n_features=args.n_features))
        model.network.to(device)
        ctx = SimpleNamespace(seed=0, epoch=1, rank=0, env_source=market, observation_filter=None,
                              rollout_observations=None, run_dir=None)
        state = {"reset": True}

        def rollout(model: Any = model, ctx: Any = ctx, state: dict[str, bool] = state) -> Any:
            buf = model.rollout(ctx, state["reset"])
            state["reset"] = False
            return buf

        t = time.perf_counter()
        buf = rollout()  # builds the env (and captures the graph)
        synchronize(device)
        row[f"first_rollout_s_{mode}"] = time.perf_counter() - t
        row[f"rollout_s_{mode}"] = statistics.median(timer.each(rollout, args.e2e_rollouts))
    steps_per_cycle = cfg.update_epochs * n_minibatches
    timed = min(steps_per_cycle, args.e2e_update_steps)
    model.network.train()
    opt = torch.optim.AdamW(model.network.parameters(), lr=1e-5, weight_decay=1e-4)
    mb = len(buf) // n_minibatches
    batches = [buf[torch.arange(k * mb, (k + 1) * mb)] for k in range(min(n_minibatches, timed))]
    steps = [update_step(model, b, opt, device) for b in batches]
    steps[0]()
    passes = max(1, timed // len(steps))  # over the distinct minibatches
    seconds = timer.seconds(lambda: [s() for s in steps], passes) / (len(steps) * passes)
    row.update(update_steps_per_cycle=steps_per_cycle, update_steps_timed=len(steps) * passes,
               update_s_per_step=seconds, updates_s_per_cycle=seconds * steps_per_cycle)
    env_steps = n_envs * 128
    for mode in ("eager", "graph"):
        cycle = row[f"rollout_s_{mode}"] + row["updates_s_per_cycle"]
        row[f"cycle_s_{mode}"] = cycle
        row[f"env_steps_per_s_{mode}"] = env_steps / cycle
        row[f"rollout_env_steps_per_s_{mode}"] = env_steps / row[f"rollout_s_{mode}"]
    row["speedup_end_to_end"] = row["env_steps_per_s_graph"] / row["env_steps_per_s_eager"]
    return row


def bench_latency(model: Any, cfg: Any, batch: int, iters: int, device: str, graphed: bool = False) -> dict[str, Any]:
    """Latency of one policy call; ``graphed``: the CUDA-graph replay that ``act_sequence``
    uses on CUDA (``GraphedPolicy``), input and output copies included."""
    import torch

    from himari_builtin.models.flag_trader.model import GraphedPolicy

    net = model.network.eval()
    obs = torch.randn(batch, cfg.context_length, model.obs_dim, device=device)
    timer = Timer(device)
    with torch.no_grad():
        if graphed:
            run = GraphedPolicy(net, tuple(obs.shape), obs.device)
            call = lambda: run(obs, None, ())  # noqa: E731
        else:
            call = lambda: net.policy(obs, None, ())  # noqa: E731
        timer.seconds(call, 3)
        times = timer.each(call, iters)
    med = statistics.median(times)
    return {"batch": batch, "cuda_graph": graphed, "iters": iters, "median_ms_per_call": 1e3 * med,
            "p90_ms_per_call": 1e3 * sorted(times)[int(0.9 * (len(times) - 1))],
            "median_us_per_decision": 1e6 * med / batch}


def markdown(doc: dict[str, Any]) -> str:
    m, p = doc["machine"], doc["parameters"]
    lines = [f"# FLAG-TRADER benchmark ({m.get('gpu', 'CPU')}, torch {m['torch']}, transformers {m['transformers']}, "
             f"peft {m['peft']})", "",
             f"Config: {doc['config']}; parameters {p['total']:,} total, {p['trainable']:,} trainable.", "",
             f"Training FLOPs per window: {doc['flops_per_window']['training'] / 1e9:,.1f} GFLOP "
             f"(forward {doc['flops_per_window']['forward'] / 1e9:,.1f}); measured matmul rate "
             f"{doc['measured_matmul_tflops']:,.1f} TFLOP/s.", "",
             *([f"Merged against peft LoRA on one minibatch: loss {doc['lora_path_parity']['loss_relative']:.1e}, "
                f"worst gradient {doc['lora_path_parity']['worst_gradient_relative']:.1e} relative.", ""]
               if doc.get("lora_path_parity") else []),
             "| mode | windows/step | step ms | samples/s | tokens/s | TFLOP/s | MFU (989) | MFU (measured) | max mem GiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in doc["updates"]:
        mfu_peak = f"{100 * r['mfu_vs_h100_sxm_peak']:.1f}%" if "mfu_vs_h100_sxm_peak" in r else "n/a"
        mem = f"{r['max_memory_gib']:.1f}" if "max_memory_gib" in r else "n/a"
        lines.append(f"| {r['mode']} | {r['windows_per_step']} | {r['step_ms']:.1f} | {r['samples_per_s']:,.0f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['achieved_tflops']:.1f} | {mfu_peak} | "
                     f"{100 * r['mfu_vs_measured_matmul']:.1f}% | {mem} |")
    if doc.get("profile"):
        lines += ["", "Where a plain update's GPU time goes on the merged LoRA path (top kernels, per step):", "",
                  "| kernel | ms / step | calls / step | share |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| `{r['kernel'][:80]}` | {r['ms_per_step']:.2f} | {r['calls_per_step']:.0f} | {100 * r['share']:.1f}% |"
                  for r in doc["profile"]]
    if doc.get("end_to_end"):
        lines += ["", "End to end, one PPO cycle (128 steps of every env + its updates):", "",
                  "| envs | rollout eager s | rollout graph s | updates s | env steps/s eager | env steps/s graph | x |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['n_envs']} | {r['rollout_s_eager']:.2f} | {r['rollout_s_graph']:.2f} | {r['updates_s_per_cycle']:.2f} | "
                  f"{r['env_steps_per_s_eager']:,.0f} | {r['env_steps_per_s_graph']:,.0f} | {r['speedup_end_to_end']:.1f} |"
                  for r in doc["end_to_end"]]
    lines += ["", "| inference batch | median ms / call | p90 ms / call | median us / decision |",
              "| ---: | ---: | ---: | ---: |"]
    for r in doc["latency"]:
        lines.append(f"| {r['batch']}{' (CUDA graph)' if r.get('cuda_graph') else ''} | {r['median_ms_per_call']:.2f} | {r['p90_ms_per_call']:.2f} | "
                     f"{r['median_us_per_decision']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON path (a .md table is written next to it)")
    ap.add_argument("--tiny", action="store_true", help=f"the tiny CPU config {TINY} (smoke runs)")
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--windows", type=int, default=None, help="windows per PPO minibatch (default 256; tiny 32)")
    ap.add_argument("--steps", type=int, default=None, help="timed update steps per mode (default 10; tiny 3)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed update steps per mode")
    ap.add_argument("--latency-iters", type=int, default=None, help="timed inference calls per batch (default 100)")
    ap.add_argument("--no-checkpointing-run", action="store_true", help="skip the gradient-checkpointing mode")
    ap.add_argument("--context-length", type=int, default=0, help="override the config's context length")
    ap.add_argument("--lora-rank", type=int, default=0, help="override the config's LoRA rank")
    ap.add_argument("--profile", action="store_true", help="profile the plain update: time per kernel")
    ap.add_argument("--compile", action="store_true", help="also time the update with the backbone compiled")
    ap.add_argument("--end-to-end", default="", help="comma-separated env counts for the end-to-end cycle (e.g. 8,64,256)")
    ap.add_argument("--e2e-rollouts", type=int, default=3, help="timed rollouts per mode and env count")
    ap.add_argument("--e2e-update-steps", type=int, default=16, help="timed update minibatches per env count")
    ap.add_argument("--e2e-bars", type=int, default=20_000, help="bars of the end-to-end synthetic market")
    ap.add_argument("--only-end-to-end", action="store_true", help="skip the update, latency and profile parts")
    ap.add_argument("--n-features", type=int, default=60, help="features per bar (+4 account columns)")
    args = ap.parse_args()

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    args.windows = args.windows or (32 if args.tiny else 256)
    args.steps = args.steps or (3 if args.tiny else 10)
    args.latency_iters = args.latency_iters or (20 if args.tiny else 100)
    t0 = time.perf_counter()
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    model, cfg = build(args, device)
    from himari_builtin.models.flag_trader import parameter_count

    count = parameter_count(cfg, args.n_features)
    flops = window_flops(cfg, model.obs_dim)
    measured = matmul_rate(device, 8192 if device.startswith("cuda") else 1024, 20 if device.startswith("cuda") else 3)
    peaks = {"measured_matmul": measured}
    if device.startswith("cuda"):
        peaks["h100_sxm_peak"] = H100_SXM_BF16_DENSE
    updates, parity = [], {}
    if not args.only_end_to_end:
        parity = lora_path_parity(model, cfg, device)
        for path in LORA_PATHS:
            set_lora_path(model, path, device)
            updates.append(bench_updates(model, cfg, args, device, False, flops, peaks))
            updates[-1]["mode"] += f", {path} LoRA"
        set_lora_path(model, "merged", device)
    if not args.no_checkpointing_run and not args.only_end_to_end:
        updates.append(bench_updates(model, cfg, args, device, True, flops, peaks))
        updates[-1]["mode"] += ", merged LoRA"
    latency = [] if args.only_end_to_end else [
        bench_latency(model, cfg, b, args.latency_iters, device) for b in (1, 256 if not args.tiny else 64)]
    if device == "cuda" and not args.only_end_to_end:
        latency += [bench_latency(model, cfg, b, args.latency_iters, device, graphed=True) for b in (1, 256)]
    kernels = profile_update(model, cfg, args, device) if args.profile and not args.only_end_to_end else []
    end_to_end = []
    for n in (int(n) for n in args.end_to_end.split(",") if n.strip()):
        end_to_end.append(bench_end_to_end(args, device, n))
        if device.startswith("cuda"):
            torch.cuda.empty_cache()  # the last env count's model, buffers and graph pool are gone
    if args.compile and not args.only_end_to_end:
        model.network.backbone.get_base_model().compile()
        model.network.train()
        for path in LORA_PATHS:
            t = time.perf_counter()
            set_lora_path(model, path, device)
            row = bench_updates(model, cfg, args, device, False, flops, peaks)  # its warm-up steps compile
            row["mode"] = f"update, backbone compiled, {path} LoRA"
            row["compile_and_measure_s"] = time.perf_counter() - t
            updates.append(row)
        set_lora_path(model, "merged", device)
    doc = {"machine": machine_info(device), "config": {k: getattr(cfg, k) for k in (
               "context_length", "n_layer", "n_head", "n_embd", "lora_rank", "head_hidden")},
           "parameters": {"total": count.total, "trainable": count.trainable},
           "flops_per_window": {**asdict(flops), "forward": flops.forward(), "training": flops.training()},
           "flops_formula": "training = 2 F_frozen + 3 F_lora + 3 F_attention + 2 F_embedding + 3 F_heads "
                            "(forward FLOPs per window; see the module docstring)",
           "peak_flops": peaks, "measured_matmul_tflops": measured / 1e12,
           "lora_path_parity": parity, "updates": updates, "latency": latency, "profile": kernels, "end_to_end": end_to_end, "seconds": time.perf_counter() - t0}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    table = markdown(doc)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"written {out} and {out.with_suffix('.md')} in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
