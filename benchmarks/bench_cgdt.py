"""CGDT training throughput (windows/s): himari's ``cgdt`` plugin against d3rlpy's
``DiscreteDecisionTransformer`` at the same size.

Same data (the windows ``cgdt`` trains on: the synthetic market's train split, 60 features + 4
account columns, label behaviour with epsilon 0.2, env rewards x 100, returns-to-go with gamma
0.99), same transformer (``--d-model`` wide, ``--layers`` blocks, ``--heads`` heads, 4x MLP, GELU,
dropout 0.1, 3 tokens per step over ``--context`` steps), float32 on the CPU, or with
``--device cuda`` on the GPU (himari's batches already on the device; d3rlpy moves its numpy
batches itself, as it does in training; the clock stops after a device synchronisation). A
sample is one window of ``--context`` steps.

- himari: one update is exactly what ``himari.training.Trainer`` does per step: ``model.loss``
  (the policy's action NLL plus the critic guidance: a forward and backward through the frozen
  critic with the predicted actions as queries), ``zero_grad``, ``backward``, the one copy of
  the step's loss and logs to the host, gradient-norm clipping at 1.0 (its norm read back, as
  the Trainer logs it) and an AdamW step. The critic's pre-training is not timed (marked done
  before the warm-up). ``guidance off`` sets ``guidance_weight=0`` and drops the critic pass
  (plain DT loss), i.e. the same work as the peer. On the GPU also with guidance as
  ``train.cuda_graph`` runs the step (``himari.training.graph_step``: replayed as CUDA graphs),
  with TF32 matmuls (below), and under bf16 autocast, as ``train.amp`` (the Trainer's default on
  a GPU) runs it, eager and replayed; d3rlpy has no mixed precision. A replayed step's logs are
  read every ``READ_EVERY`` steps, as the Trainer reads them. With ``--compiled`` also the
  replayed step under ``train.compile`` (the loss and AdamW's update compiled) in float32, TF32
  and bf16, and d3rlpy with its own ``compile_graph=True`` (torch.compile and CUDA graphs).
  ``--only TEXT`` keeps the himari rows whose name contains TEXT.
- Numerics: importing d3rlpy calls ``torch.set_float32_matmul_precision("high")``, so its float32
  matmuls run on TF32 tensor cores (10-bit mantissa inputs). himari leaves torch's default
  (full float32); the "TF32 matmuls" row sets what d3rlpy sets, for the like-for-like ratio.
- d3rlpy: ``DiscreteDecisionTransformerConfig(context_size, num_heads, num_layers,
  encoder_factory=VectorEncoderFactory([d_model]), position_encoding_type=simple,
  max_timestep=context)``; one update = ``algo.update(batch)`` (its AdamW step, gradient clipping
  at 1.0, its learning-rate warm-up).
- Batches are cut before timing for both (``N_BATCHES`` pre-made batches, cycled), so the number
  is the update alone. Each repeat runs in a fresh process pinned to ``--threads`` cores with as
  many torch threads; contenders are interleaved (himari, d3rlpy, himari, ...) and the table
  shows the median of ``--repeats`` repeats (and the best; the load average is recorded).

d3rlpy is not a himari dependency and pins an older gymnasium than himari's env needs: install it
in a separate virtual environment (``python3 -m venv /tmp/d3venv --system-site-packages &&
/tmp/d3venv/bin/pip install d3rlpy``) and pass its interpreter with ``--d3rlpy-python``; without
d3rlpy the row is skipped. Writes ``benchmarks/results/cgdt-<hostname>.json`` (or ``--json``).

    python benchmarks/bench_cgdt.py [--repeats 3] [--updates 5] [--batch 16] [--d3rlpy-python PY] [--device cuda]
        [--compiled]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench_common import (  # noqa: E402
    machine_info,
    package_version,
    read_as_the_trainer_reads,
    synchronize,
    worker_result,
)

REPO = Path(__file__).resolve().parents[1]
N_BATCHES = 4
WARMUP = 5
"""Untimed updates first. The replayed rows run two eager steps, then record (after a full
garbage collection: about 0.1 s in this process), so fewer than four put the recording inside the
timed window: at 30 updates that hid a third of the replayed bf16 rate."""


# ---------------------------------------------------------------------------------- workers

def _pin(threads: int) -> None:
    try:
        os.sched_setaffinity(0, set(range(threads)))
    except (AttributeError, OSError, ValueError):
        pass
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)


def _cgdt_module() -> Any:
    """The plugin: by name when installed, else from this checkout."""
    name = "himari_builtin.models.cgdt"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        package = REPO / "plugins/himari_builtin/models/cgdt"
        spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                      submodule_search_locations=[str(package)])
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module


def _batch_starts(data: dict, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [data["starts"][rng.integers(0, len(data["starts"]), size=batch)] for _ in range(N_BATCHES)]


def _windows(data: dict, starts: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = starts[:, None] + np.arange(context)
    return data["obs"][k], data["actions"][k], data["rtg"][k]


def _timed(update: Any, batches: list[Any], updates: int, batch: int, device: str = "cpu") -> float:
    for i in range(WARMUP):
        update(batches[i % N_BATCHES])
    synchronize(device)
    t = time.perf_counter()
    for i in range(updates):
        update(batches[i % N_BATCHES])
    synchronize(device)
    return updates * batch / (time.perf_counter() - t)


def worker_himari(npz: str, sizes: dict, threads: int, guidance: bool, graph: bool = False,
                  bf16: bool = False, tf32: bool = False, compiled: bool = False) -> tuple[float, int]:
    _pin(threads)
    import torch

    if tf32:  # what importing d3rlpy does to its own process: float32 matmuls on TF32 tensor cores
        torch.set_float32_matmul_precision("high")

    from himari.plugin.api import ModelContext
    from himari.training.loop import host_floats

    cgdt = _cgdt_module()
    d = dict(np.load(npz))
    L = sizes["context"]
    cfg = cgdt.CGDTConfig(context_length=L, d_model=sizes["d_model"], n_layers=sizes["layers"],
                          n_heads=sizes["heads"], guidance_weight=1.0 if guidance else 0.0, guidance_warmup=0)
    model = cgdt.CGDT(cfg, ModelContext(n_features=60))
    device = sizes.get("device", "cpu")
    net = model.network.to(device)
    net.set_critic_ready()  # pre-training is a separate phase: not timed
    net.rtg_scale.fill_(float(d["rtg"].std()))
    if not guidance:  # plain DT loss: no critic pass at all
        model.guidance = lambda obs, actions, rtg, logits: (torch.zeros((), device=device), torch.zeros((), device=device))
    net.train()
    batches = [tuple(torch.from_numpy(x).to(device) for x in _windows(d, s, L)) for s in _batch_starts(d, sizes["batch"])]
    # the Trainer's optimiser: the fused AdamW on a GPU (capturable when replayed), torch's default on the CPU
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-4,
                            **({"fused": True} if device.startswith("cuda") else {}),
                            **({"capturable": True} if graph else {}))
    if graph:  # the Trainer's step under train.cuda_graph: the same work, replayed as CUDA graphs
        from himari.training.compiled_loss import CompiledLoss
        from himari.training.graph_step import GraphedStep

        def loss(b: tuple) -> Any:
            return model.loss(b, None)

        # under train.compile the loss and AdamW's update are compiled, then recorded
        stepper = GraphedStep(list(net.parameters()), CompiledLoss(loss) if compiled else loss, opt, 1.0,
                              amp_dtype=torch.bfloat16 if bf16 else None, compiled_optimizer=compiled)
        params = sum(p.numel() for p in net.policy.parameters())
        return _timed(read_as_the_trainer_reads(stepper), batches, sizes["updates"], sizes["batch"], device), params

    import contextlib

    def autocast() -> Any:  # as the Trainer's step under train.amp (bf16 on a GPU)
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def update(b: tuple) -> None:
        with autocast():
            loss, logs = model.loss(b, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        host_floats({"loss": loss.detach(), **logs})  # as the Trainer's step: its logs, copied at once
        float(torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0))  # and its logged gradient norm
        opt.step()

    params = sum(p.numel() for p in net.policy.parameters())
    return _timed(update, batches, sizes["updates"], sizes["batch"], device), params


def worker_d3rlpy(npz: str, sizes: dict, threads: int, compile_graph: bool = False) -> tuple[float, int]:
    _pin(threads)
    import d3rlpy
    from d3rlpy.dataset import TrajectoryMiniBatch

    d = dict(np.load(npz))
    L, B = sizes["context"], sizes["batch"]
    cfg = d3rlpy.algos.DiscreteDecisionTransformerConfig(
        batch_size=B, context_size=L, num_heads=sizes["heads"], num_layers=sizes["layers"], max_timestep=L,
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[sizes["d_model"]]),
        position_encoding_type=d3rlpy.PositionEncodingType.SIMPLE,
        **({"compile_graph": True} if compile_graph else {}))
    device = sizes.get("device", "cpu")
    algo = cfg.create(device="cuda:0" if device.startswith("cuda") else "cpu:0")
    algo.create_impl((d["obs"].shape[1],), 3)
    batches = []
    for s in _batch_starts(d, B):
        obs, act, rtg = _windows(d, s, L)
        ones = np.ones((B, L), np.float32)
        batches.append(TrajectoryMiniBatch(
            observations=obs, actions=act.reshape(B, L, 1).astype(np.float32),
            rewards=np.zeros((B, L, 1), np.float32), returns_to_go=rtg.reshape(B, L, 1),
            terminals=np.zeros((B, L, 1), np.float32), timesteps=np.tile(np.arange(L, dtype=np.float32), (B, 1)),
            masks=ones, length=L))
    params = sum(p.numel() for p in algo.impl.modules.transformer.parameters())
    return _timed(algo.update, batches, sizes["updates"], B, device), params


# ------------------------------------------------------------------------------------- main

def make_data(path: str, context: int) -> dict:
    """cgdt's train windows on the default synthetic market (raw features: speed does not depend
    on their values)."""
    from himari.data import PreparedData, default_prepared_dataset
    from himari.data.datasets import TrajectoryDataset

    data = PreparedData(default_prepared_dataset())
    ds = TrajectoryDataset(data, "train", context_length=context, gamma=0.99, actions="labels", epsilon=0.2, seed=0)
    obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32))
    np.savez(path, obs=obs, actions=ds.actions.astype(np.int64), rtg=(ds.returns_to_go * 100.0).astype(np.float32),
             starts=ds.window_starts.astype(np.int64))
    return {"data": str(data.path), "windows": int(len(ds)), "obs_dim": int(obs.shape[1])}


def _table(rows: list[dict], sizes: dict, machine: dict) -> None:
    goal = 3 if sizes.get("device", "cpu").startswith("cuda") else 1
    print(f"\nCGDT training windows/s: d={sizes['d_model']}, {sizes['layers']} layers, {sizes['heads']} heads, "
          f"context {sizes['context']}, batch {sizes['batch']}, {sizes['threads']} thread(s), {sizes.get('device', 'cpu')} "
          f"({machine['cpu_model']}, load {machine['load_avg_start'][0]:.2f})")
    print(f"{'contender':40s} {'params':>10s} {'median/s':>9s} {'best/s':>8s} {'vs d3rlpy':>10s}  goal >= {goal}x")
    for row in rows:
        ratio = "" if row["ratio_vs_d3rlpy"] is None else f"{row['ratio_vs_d3rlpy']:.2f}x"
        met = "" if row["ratio_vs_d3rlpy"] is None else ("met" if row["ratio_vs_d3rlpy"] >= goal else "not met")
        vs_compiled = row["ratio_vs_d3rlpy_compile_graph"]
        print(f"{row['contender']:40s} {row['parameters']:10,d} {row['samples_per_s']:9.2f} "
              f"{row['best_samples_per_s']:8.2f} {ratio:>10s}  {met}"
              + ("" if vs_compiled is None else f"  ({vs_compiled:.2f}x its compile_graph)"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d3rlpy-python", default=sys.executable)
    p.add_argument("--device", default="cpu", help="cpu or cuda (both contenders)")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only the himari rows whose name contains TEXT (repeatable; d3rlpy's rows always run)")
    p.add_argument("--compiled", action="store_true",
                   help="on the GPU also the replayed step under train.compile, and d3rlpy's compile_graph")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", nargs="*")
    a = p.parse_args()
    sizes = {"context": a.context, "d_model": a.d_model, "layers": a.layers, "heads": a.heads, "batch": a.batch,
             "updates": a.updates, "threads": a.threads, "device": a.device}
    if a.worker is not None:
        kind, npz, sizes_json, *rest = a.worker
        s = json.loads(sizes_json)
        flags = rest[1:]
        rate, params = (worker_himari(npz, s, s["threads"], rest[0] == "guided", "graph" in flags, "bf16" in flags,
                                      "tf32" in flags, "compile" in flags)
                        if kind == "himari" else worker_d3rlpy(npz, s, s["threads"], "compile_graph" in rest))
        print(rate, params)
        return

    machine = machine_info()
    npz = os.path.join(tempfile.mkdtemp(prefix="bench-cgdt-"), "windows.npz")
    config = {**make_data(npz, a.context), **sizes, "repeats": a.repeats, "warmup": WARMUP}
    d3_version = package_version(a.d3rlpy_python, "d3rlpy")
    sj = json.dumps(sizes)
    contenders = [("himari cgdt (policy + critic guidance)", sys.executable, ["himari", npz, sj, "guided"]),
                  ("himari cgdt (guidance off: plain DT)", sys.executable, ["himari", npz, sj, "plain"])]
    if a.device.startswith("cuda"):
        contenders.append(("himari cgdt (guidance, cuda_graph)", sys.executable, ["himari", npz, sj, "guided", "graph"]))
        # d3rlpy's float32 is TF32 in its matmuls (set when it is imported): the same for himari
        contenders.append(("himari cgdt (guidance, TF32 matmuls)", sys.executable, ["himari", npz, sj, "guided", "tf32"]))
        # the Trainer's default on a GPU (train.amp): bf16 autocast, which d3rlpy does not offer
        contenders.append(("himari cgdt (guidance, bf16 autocast)", sys.executable, ["himari", npz, sj, "guided", "bf16"]))
        contenders.append(("himari cgdt (guidance, bf16, cuda_graph)", sys.executable,
                           ["himari", npz, sj, "guided", "graph", "bf16"]))
        if a.compiled:  # what train.compile runs in a replayed step: float32, TF32 (d3rlpy's numerics), bf16
            contenders.append(("himari cgdt (graph, train.compile)", sys.executable,
                               ["himari", npz, sj, "guided", "graph", "compile"]))
            contenders.append(("himari cgdt (graph, train.compile, TF32)", sys.executable,
                               ["himari", npz, sj, "guided", "graph", "compile", "tf32"]))
            contenders.append(("himari cgdt (graph, train.compile, bf16)", sys.executable,
                               ["himari", npz, sj, "guided", "graph", "compile", "bf16"]))
    if a.only:
        contenders = [c for c in contenders if any(text in c[0] for text in a.only)]
    skipped = []
    if d3_version:
        contenders.append((f"d3rlpy {d3_version} DiscreteDecisionTransformer", a.d3rlpy_python, ["d3rlpy", npz, sj]))
        if a.compiled and a.device.startswith("cuda"):  # its own torch.compile + CUDA graph option
            contenders.append((f"d3rlpy {d3_version} DiscreteDecisionTransformer compile_graph", a.d3rlpy_python,
                               ["d3rlpy", npz, sj, "compile_graph"]))
    else:
        skipped.append("d3rlpy (not installed for --d3rlpy-python)")
    times: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    params: dict[str, int] = {}
    for r in range(a.repeats):
        for name, py, args in contenders:
            rate_text, params_text = worker_result(py, __file__, args)
            rate, params[name] = float(rate_text), int(params_text)
            times[name].append(rate)
            print(f"repeat {r + 1}/{a.repeats}  {name}: {rate:.2f} windows/s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    peer = next((k for k in med if k.startswith("d3rlpy") and "compile_graph" not in k), None)
    compiled = next((k for k in med if k.startswith("d3rlpy") and "compile_graph" in k), None)
    rows = [{"contender": k, "parameters": params[k], "samples_per_s": v, "best_samples_per_s": max(times[k]),
             "runs": times[k], "ratio_vs_d3rlpy": v / med[peer] if peer and not k.startswith("d3rlpy") else None,
             "best_ratio_vs_d3rlpy": max(times[k]) / max(times[peer]) if peer and not k.startswith("d3rlpy") else None,
             "ratio_vs_d3rlpy_compile_graph": v / med[compiled] if compiled and not k.startswith("d3rlpy") else None}
            for k, v in med.items()]
    _table(rows, sizes, machine)
    machine["load_avg_end"] = os.getloadavg()
    suffix = "" if a.device == "cpu" else f"-{a.device.split(':')[0]}"
    out = Path(a.json or REPO / "benchmarks" / "results" / f"cgdt-{socket.gethostname()}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "config": config, "results": rows, "skipped": skipped,
                               "versions": {"d3rlpy": d3_version}}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
