"""CQL gradient updates per second: himari's ``cql`` plugin against d3rlpy's ``DiscreteCQL``.

Same data (the transitions ``cql`` trains on: the synthetic market's train split, 60 features +
4 account columns, label behaviour with epsilon 0.2, env rewards), same network size (two Q
networks 64 -> 210 -> 210 -> 3, ReLU), batch 256, one core, float32 on the CPU, or with
``--device cuda`` float32 on the GPU (both sides' batches already on the device for himari;
d3rlpy moves its numpy batches itself, as it does in training; the clock stops after a
device synchronisation).

- himari: one update is exactly what ``himari.training.Trainer`` does per step: ``model.loss``
  (Polyak update, TD targets, the conservative term), ``zero_grad``, ``backward``, the one copy
  of the step's loss and logs to the host, gradient-norm clipping at 1.0 (its norm read back, as
  the Trainer logs it) and an AdamW step (fused on the GPU, as the Trainer builds it). Targets
  ``min`` (default) and ``double-dqn`` both timed; on the GPU also the step as
  ``train.cuda_graph`` runs it (``himari.training.graph_step``: the same kernels replayed as one
  CUDA graph, the one copy of the loss, logs and norm after it, read every ``loop.READ_EVERY``
  steps as the Trainer reads them); with ``--compiled`` also the replayed step under
  ``train.compile`` (the loss and AdamW's update compiled) in float32, under bf16 autocast (the
  Trainer's ``train.amp``, its default on a GPU) and with TF32 matmuls (d3rlpy's numerics).
- d3rlpy: ``DiscreteCQLConfig(batch_size=256, n_critics=2, encoder_factory=
  VectorEncoderFactory([210, 210]))``, one update = ``algo.update(batch)`` (its Adam step, hard
  target copy every ``target_update_interval`` updates; its TD target is Double-DQN with the
  min over critics). On the GPU also with its ``compile_graph=True`` (torch.compile and CUDA
  graphs); ratios are against the default row. Importing d3rlpy calls
  ``torch.set_float32_matmul_precision("high")``, so its float32 matmuls on the GPU run as TF32;
  himari's stay full float32 except in the TF32 row, which does the same in its process (a user
  gets it with ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1``), and the bf16 row.
- Batches are sampled before timing for both (20 pre-made batches, cycled), so the number is the
  update alone. Each repeat runs in a fresh process pinned to one core with one thread
  (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``), warms up for 30 updates, then times
  ``--updates`` updates; contenders are interleaved (himari, d3rlpy, himari, ...) and the table
  shows the median of ``--repeats`` repeats (and the best repeat: on a busy machine the best is
  the better estimate of unloaded speed; the load average is recorded).

d3rlpy is not a himari dependency: ``pip install d3rlpy``. It pins an older gymnasium than
himari's env needs, so install it in a separate virtual environment with
``--system-site-packages`` and pass its interpreter with ``--d3rlpy-python``; without d3rlpy the
row is skipped. Writes ``benchmarks/results/cql-<hostname>.json`` (or ``--json``).

    python benchmarks/bench_cql.py [--repeats 5] [--updates 300] [--cpu 0] [--d3rlpy-python PY] [--device cuda]
        [--compiled] [--profile]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
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
BATCH = 256
HIDDEN = (210, 210)
N_BATCHES = 20
WARMUP = 30


# ---------------------------------------------------------------------------------- workers

def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)


def _batches(data: dict, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, len(data["index"]), size=BATCH) for _ in range(N_BATCHES)]


def himari_update(npz: str, target: str, device: str, graph: bool, compiled: bool = False,
                  compiled_adamw: bool = False, bf16: bool = False, tf32: bool = False) -> tuple[Any, list[tuple]]:
    """The Trainer's step as ``update(batch)``, already warmed up, and the pre-made batches it
    cycles over.
    ``compiled``: the replayed step with the loss (and its backward) compiled first as the
    Trainer's ``train.compile`` does (``CompiledLoss``), so its elementwise kernels are fused
    before the graph records them.
    Replayed steps are read every ``loop.READ_EVERY`` steps, as the Trainer's loop reads them.
    ``compiled_adamw``: AdamW's update compiled as well (``compiled_optimizer``), as the
    Trainer's ``train.compile`` does in a replayed step.
    ``bf16``: the replayed step under bf16 autocast, as the Trainer runs it on a GPU by default
    (``train.amp``). ``tf32``: float32 matmuls on TF32 tensor cores, what importing d3rlpy does
    to its own process (``torch.set_float32_matmul_precision("high")``; a himari user gets the same
    with the environment variable ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1``)."""
    import torch

    if tf32:
        torch.set_float32_matmul_precision("high")

    from himari.plugin.api import ModelContext
    from himari.training.loop import host_floats
    from himari_builtin.models.cql import CQL, CQLConfig

    d = dict(np.load(npz))
    model = CQL(CQLConfig(hidden_sizes=HIDDEN, target=target), ModelContext(n_features=60))
    net = model.network.to(device)
    net.train()
    obs = torch.from_numpy(d["obs"]).to(device)
    k_all = torch.from_numpy(d["index"]).to(device)
    act, rew, done = (torch.from_numpy(d[k]).to(device) for k in ("actions", "rewards", "dones"))
    batches = []
    for idx in _batches(d, np.random.default_rng(0)):
        k = k_all[torch.from_numpy(idx).to(device)]
        batches.append((obs[k], act[k], rew[k], obs[k + 1], done[k]))
    # the Trainer's optimiser: the fused AdamW on a GPU (capturable when replayed), torch's default on the CPU
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=1e-4,
                            **({"fused": True} if device.startswith("cuda") else {}),
                            **({"capturable": True} if graph else {}))

    def update(b: tuple) -> None:
        loss, logs = model.loss(b, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        host_floats({"loss": loss.detach(), **logs})  # as the Trainer's step: its logs, copied at once
        float(torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0))  # and its logged gradient norm
        opt.step()

    if graph:  # the Trainer's step under train.cuda_graph: the same work, replayed as CUDA graphs
        from himari.training.compiled_loss import CompiledLoss
        from himari.training.graph_step import GraphedStep

        def loss(b: tuple) -> Any:
            return model.loss(b, None)

        stepper = GraphedStep(list(net.parameters()), CompiledLoss(loss) if compiled else loss, opt, 1.0,
                              torch.bfloat16 if bf16 else None, compiled_optimizer=compiled_adamw)
        update = read_as_the_trainer_reads(stepper)  # the replayed step replaces the eager one
    for i in range(WARMUP):  # warm: the first steps allocate, record graphs or compile
        update(batches[i % N_BATCHES])
    synchronize(device)
    return update, batches


def worker_himari(npz: str, updates: int, cpu: int, target: str, device: str = "cpu", graph: bool = False,
                  compiled: bool = False, compiled_adamw: bool = False, bf16: bool = False,
                  tf32: bool = False) -> float:
    _pin(cpu)
    update, batches = himari_update(npz, target, device, graph, compiled, compiled_adamw, bf16, tf32)
    t = time.perf_counter()
    for i in range(updates):
        update(batches[i % N_BATCHES])
    synchronize(device)
    return updates / (time.perf_counter() - t)


def profile_himari(npz: str, updates: int, cpu: int, device: str, graph: bool, compiled: bool = False,
                   compiled_adamw: bool = False) -> dict:
    """Where a GPU step's time goes: kernels per step and the GPU's busy time per step (the sum of
    its kernels' durations, from the torch profiler). Compare the busy time with the step's
    unprofiled time (1 / the table's updates/s): close to it, the step is bound by the GPU's own
    work (kernel count and size), not by the host launching it. The wall time recorded here is
    under the profiler, which inflates it."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    _pin(cpu)
    update, batches = himari_update(npz, "min", device, graph, compiled, compiled_adamw=compiled_adamw)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(updates):
            update(batches[i % N_BATCHES])
        synchronize(device)
    wall = time.perf_counter() - t
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels)
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + e.device_time
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:8]
    return {"graph": graph, "compiled": compiled, "compiled_adamw": compiled_adamw,
            "kernels_per_step": len(kernels) / updates, "gpu_busy_us_per_step": busy_us / updates,
            "wall_us_per_step": wall / updates * 1e6,
            "top_kernels_us_per_step": [[name[:160], us / updates] for name, us in top]}


def worker_d3rlpy(npz: str, updates: int, cpu: int, device: str = "cpu", compile_graph: bool = False) -> float:
    _pin(cpu)
    import d3rlpy
    from d3rlpy.dataset import TransitionMiniBatch

    d = dict(np.load(npz))
    obs = d["obs"]
    k_all = d["index"]
    cfg = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=BATCH, n_critics=2, learning_rate=3e-4,
        encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=list(HIDDEN)),
        **({"compile_graph": True} if compile_graph else {}))
    algo = cfg.create(device="cuda:0" if device.startswith("cuda") else "cpu:0")
    algo.create_impl((obs.shape[1],), 3)
    batches = []
    for idx in _batches(d, np.random.default_rng(0)):
        k = k_all[idx]
        batches.append(TransitionMiniBatch(
            observations=obs[k], actions=d["actions"][k].reshape(-1, 1).astype(np.float32),
            rewards=d["rewards"][k].reshape(-1, 1), next_observations=obs[k + 1],
            next_actions=d["actions"][k + 1].reshape(-1, 1).astype(np.float32),
            terminals=d["dones"][k].reshape(-1, 1), intervals=np.ones((BATCH, 1), np.float32),
            transitions=[]))
    for i in range(WARMUP):
        algo.update(batches[i % N_BATCHES])
    synchronize(device)
    t = time.perf_counter()
    for i in range(updates):
        algo.update(batches[i % N_BATCHES])
    synchronize(device)
    return updates / (time.perf_counter() - t)


# ------------------------------------------------------------------------------------- main

def make_data(path: str) -> dict:
    """The cql plugin's own train transitions on the default synthetic market."""
    from himari.data import PreparedData, default_prepared_dataset
    from himari.data.datasets import TransitionDataset

    data = PreparedData(default_prepared_dataset())
    ds = TransitionDataset(data, "train", actions="labels", epsilon=0.2, seed=0)
    obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32))
    np.savez(path, obs=obs, index=ds.index.astype(np.int64), actions=ds.actions.astype(np.int64),
             rewards=(ds.rewards * 100.0).astype(np.float32), dones=ds.dones.astype(np.float32))
    return {"data": str(data.path), "transitions": int(len(ds.index)), "obs_dim": int(obs.shape[1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--cpu", type=int, default=0)
    p.add_argument("--d3rlpy-python", default=sys.executable)
    p.add_argument("--device", default="cpu", help="cpu or cuda (both contenders)")
    p.add_argument("--json", default=None)
    p.add_argument("--compiled", action="store_true",
                   help="on the GPU also the replayed step with its loss compiled (train.compile)")
    p.add_argument("--profile", action="store_true",
                   help="instead of the table: kernels and GPU busy time per himari step, eager and replayed (GPU)")
    p.add_argument("--worker", nargs="*")
    a = p.parse_args()
    if a.worker is not None:
        kind, npz, updates, cpu, device, *rest = a.worker
        if kind == "profile":
            print(json.dumps(profile_himari(npz, int(updates), int(cpu), device, "graph" in rest, "compile" in rest,
                                            "adamw" in rest)))
        elif kind == "himari":
            flags = rest[1:]
            print(worker_himari(npz, int(updates), int(cpu), rest[0], device, "graph" in flags, "compile" in flags,
                                "adamw" in flags, "bf16" in flags, "tf32" in flags))
        else:
            print(worker_d3rlpy(npz, int(updates), int(cpu), device, rest == ["graph"]))
        return

    machine = machine_info()
    tmp = tempfile.mkdtemp(prefix="bench-cql-")
    npz = os.path.join(tmp, "transitions.npz")
    config = make_data(npz)
    config.update({"batch": BATCH, "hidden": list(HIDDEN), "n_critics": 2, "updates": a.updates,
                   "repeats": a.repeats, "warmup": WARMUP, "cpu": a.cpu, "device": a.device})
    d3_version = package_version(a.d3rlpy_python, "d3rlpy")
    common = [npz, str(a.updates), str(a.cpu), a.device]
    if a.profile:  # one process each, eager and replayed, the first updates after warm-up
        rows = [json.loads(" ".join(worker_result(sys.executable, __file__, ["profile", *common, *graph])))
                for graph in ([], ["graph"], *([["graph", "compile"], ["graph", "compile", "adamw"]] if a.compiled
                                               else []))]
        for row in rows:
            print(json.dumps(row))
        out = Path(a.json or REPO / "benchmarks" / "results" / f"cql-profile-{socket.gethostname()}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine, "config": config, "profile": rows}, indent=2))
        return
    contenders = [("himari cql (target min)", sys.executable, ["himari", *common, "min"]),
                  ("himari cql (target double-dqn)", sys.executable, ["himari", *common, "double-dqn"])]
    if a.device.startswith("cuda"):
        contenders.append(("himari cql (target min, cuda_graph)", sys.executable, ["himari", *common, "min", "graph"]))
        if a.compiled:
            # what train.compile runs in a replayed step (the loss and AdamW's update compiled) in
            # float32, under bf16 autocast (train.amp, the Trainer's default on a GPU) and with
            # TF32 matmuls (d3rlpy's numerics: importing it switches them on)
            compiled_step = ["himari", *common, "min", "graph", "compile", "adamw"]
            contenders.append(("himari cql (graph, train.compile)", sys.executable, compiled_step))
            contenders.append(("himari cql (graph, train.compile, bf16)", sys.executable, [*compiled_step, "bf16"]))
            contenders.append(("himari cql (graph, train.compile, TF32)", sys.executable, [*compiled_step, "tf32"]))
    skipped = []
    if d3_version:
        contenders.append((f"d3rlpy {d3_version} DiscreteCQL", a.d3rlpy_python,
                           ["d3rlpy", *common]))
        if a.device.startswith("cuda"):  # its own torch.compile + CUDA graph option, for fairness
            contenders.append((f"d3rlpy {d3_version} DiscreteCQL compile_graph", a.d3rlpy_python,
                               ["d3rlpy", *common, "graph"]))
    else:
        skipped.append("d3rlpy (not installed for --d3rlpy-python)")
    times: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for r in range(a.repeats):
        for name, py, args in contenders:
            times[name].append(float(worker_result(py, __file__, args)[0]))
            print(f"repeat {r + 1}/{a.repeats}  {name}: {times[name][-1]:.1f} updates/s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    peer = next((k for k in med if k.startswith("d3rlpy") and "compile_graph" not in k), None)
    compiled = next((k for k in med if k.startswith("d3rlpy") and "compile_graph" in k), None)
    rows = []
    for k, v in med.items():
        ratio = v / med[peer] if peer and not k.startswith("d3rlpy") else None
        best_ratio = max(times[k]) / max(times[peer]) if peer and not k.startswith("d3rlpy") else None
        rows.append({"contender": k, "updates_per_s": v, "best_updates_per_s": max(times[k]), "runs": times[k],
                     "ratio_vs_d3rlpy": ratio, "best_ratio_vs_d3rlpy": best_ratio,
                     "ratio_vs_d3rlpy_compile_graph": (v / med[compiled] if compiled and not k.startswith("d3rlpy")
                                                       else None)})
    where = f"on {a.device}, one core" if a.device.startswith("cuda") else "one core"
    goal = 3 if a.device.startswith("cuda") else 2
    print(f"\nCQL updates/s, batch {BATCH}, two critics {HIDDEN}, {where} ({machine['cpu_model']}, "
          f"load {machine['load_avg_start'][0]:.2f})")
    print(f"{'contender':38s} {'median/s':>9s} {'best/s':>8s} {'vs d3rlpy':>10s} {'best vs':>8s}  goal >= {goal}x")
    for row in rows:
        ratio = "" if row["ratio_vs_d3rlpy"] is None else f"{row['ratio_vs_d3rlpy']:.2f}x"
        bratio = "" if row["best_ratio_vs_d3rlpy"] is None else f"{row['best_ratio_vs_d3rlpy']:.2f}x"
        met = "" if row["ratio_vs_d3rlpy"] is None else ("met" if row["ratio_vs_d3rlpy"] >= goal else "not met")
        vs_compiled = row["ratio_vs_d3rlpy_compile_graph"]
        print(f"{row['contender']:38s} {row['updates_per_s']:9.1f} {row['best_updates_per_s']:8.1f} "
              f"{ratio:>10s} {bratio:>8s}  {met}" + ("" if vs_compiled is None else f"  ({vs_compiled:.2f}x its compile_graph)"))
    machine["load_avg_end"] = os.getloadavg()
    suffix = "" if a.device == "cpu" else f"-{a.device.split(':')[0]}"
    out = Path(a.json or REPO / "benchmarks" / "results" / f"cql-{socket.gethostname()}{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "config": config, "results": rows, "skipped": skipped,
                               "versions": {"d3rlpy": d3_version}}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
