#!/usr/bin/env python
"""By-hand benchmark: data-parallel training throughput, 1 GPU against every GPU of the machine,
with the same global batch.

NOT a test: run it by hand on an otherwise idle machine and read the table.

    python benchmarks/bench_distributed.py --out dist.json                     # flag-trader, BTC data, all GPUs
    python benchmarks/bench_distributed.py --model ppo-lstm --updates 10 --out dist.json
    python benchmarks/bench_distributed.py --device cpu --tiny --out smoke.json   # gloo smoke run (1 vs 2 processes)

For each process count (1, then all GPUs; ``--nproc`` on the CPU) it launches
``python -m torch.distributed.run --standalone --nproc-per-node N`` on this file as a worker. The
worker builds the run exactly as ``himari train`` does (the model's default config unless ``--set``
or ``--tiny`` change it; ``n_envs`` and ``batch_size`` are global, split over the processes) and
runs the Trainer's own training loop, timed: ``--warmup`` units first, then ``--updates`` timed
units, where a unit is one rollout + its PPO updates (online RL: throughput = global env steps/s,
updates included) or one optimiser step (offline: samples/s). The per-epoch evaluation,
checkpoints and the final test scoring are skipped (the worker's ``_BenchTrainer`` overrides them):
this measures training, not backtesting. Peak GPU memory is ``torch.cuda.max_memory_allocated``
of each rank (the whole run: model, optimiser, rollouts, activations), gathered on rank 0; on the
CPU the peak resident memory of each process is reported instead.

Scaling efficiency = (throughput with N processes / throughput with 1) / N.

Every process it launches gets ``NCCL_NVLS_ENABLE=0``, ``TORCH_SYMM_MEM_DISABLE_MULTICAST=1`` and
``NVSHMEM_DISABLE_NVLS=1`` (NVLink multicast off: some machines must not use it).

Data: ``--data PATH`` (a bars file or prepared directory), else ``../shared/data/btcusdt_5m.csv.gz``
next to the repository when present, else the synthetic market; ``--tiny`` uses a 20k-bar
synthetic market. The data is prepared once, in this process, before anything is timed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_BTC = REPO.parent / "shared" / "data" / "btcusdt_5m.csv.gz"
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NO_MULTICAST)  # this process too (it queries the GPUs)

TINY_SETS = {
    "ppo-lstm": ["n_envs=8", "rollout_steps=32", "episode_length=256", "update_epochs=2", "n_minibatches=2",
                 "encoder_sizes=[32]", "lstm_hidden=32"],
    "flag-trader": ["n_envs=8", "rollout_steps=16", "episode_length=128", "update_epochs=1", "n_minibatches=2",
                    "n_layer=2", "n_head=2", "n_embd=32", "context_length=16", "lora_rank=4", "head_hidden=16"],
}
"""Per-model ``--tiny`` settings (online RL); offline models get ``train.batch_size=256``."""


# ------------------------------------------------------------------------- worker


def _bench_trainer_class() -> type:
    """The Trainer, timed: stamps at the end of each unit, no evaluation, checkpoints or summary."""
    import torch

    from himari.training import distributed
    from himari.training.trainer import Trainer

    class _BenchTrainer(Trainer):
        steps_per_unit = 1

        def _train_step(self, batch: Any) -> dict[str, float]:
            logs = super()._train_step(batch)
            self._steps_done = getattr(self, "_steps_done", 0) + 1
            if self._steps_done % self.steps_per_unit == 0:
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
                self.stamps = [*getattr(self, "stamps", []), time.perf_counter()]
            return logs

        def _end_epoch(self, epoch: int, train_loss: float) -> None:
            self.state.update(epoch=epoch + 1, batch=0, epoch_started=False, done=True)

        def _finish(self, seconds: float, resumed_from: int | None) -> dict[str, Any]:
            if self.device.startswith("cuda"):
                peak = torch.cuda.max_memory_allocated(self.device) / 2**30
                name = torch.cuda.get_device_name(self.device)
            else:
                import resource

                peak, name = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, platform.processor()
            st = self.state
            return {"stamps": getattr(self, "stamps", []), "loss": st.get("loss_sum", 0.0) / max(st.get("loss_n", 0), 1),
                    "peak": distributed.gather_objects(self.dist, peak),
                    "devices": distributed.gather_objects(self.dist, f"{self.device} {name}")}

    return _BenchTrainer


def worker(spec: dict[str, Any]) -> None:
    """One process of a timed run (started by torchrun); rank 0 writes ``spec['result']``."""
    from himari.plugin.manager import get_plugins
    from himari.training import distributed
    from himari.training.config import merge_run_config
    from himari.training.rl import OnlineRLConfig, plan

    plugins = get_plugins()
    base = [*spec["sets"], f"train.device={spec['device']}", "train.epochs=1", "train.patience=0",
            "train.progress=false"]

    def resolve(*extra: str) -> Any:
        return merge_run_config(plugins=plugins, overrides={"model": spec["model"], "data": spec["data"]},
                                sets=[*base, *extra])

    units = spec["warmup"] + spec["updates"]
    run = resolve()
    cfg = run.plugin_configs[run.model]
    online = isinstance(cfg, OnlineRLConfig)
    if online:  # enough experience for `units` rollouts, and stop after them
        steps_per_unit = cfg.update_epochs * cfg.n_minibatches
        episodes = math.ceil((units + 1) * cfg.n_envs * cfg.rollout_steps / cfg.episode_length)
        run = resolve(f"{run.model}.env_episodes={episodes}", f"train.max_steps_per_epoch={units * steps_per_unit}")
        cfg = run.plugin_configs[run.model]
        assert plan(cfg, 1).iterations >= units
        samples_per_unit, batch = cfg.n_envs * cfg.rollout_steps, cfg.n_envs
    else:
        steps_per_unit = 1
        run = resolve(f"train.max_steps_per_epoch={units}")
        samples_per_unit = batch = run.train.batch_size
    trainer_cls = _bench_trainer_class()
    trainer_cls.steps_per_unit = steps_per_unit
    trainer = trainer_cls(run, plugins=plugins, run_dir=Path(spec["run_dir"]))
    out = trainer.fit()
    distributed.shutdown()
    if not trainer.dist.is_main:
        return
    stamps = out["stamps"]
    if len(stamps) < spec["warmup"] + 1:
        raise RuntimeError(f"only {len(stamps)} units ran; the data or budget is too small for "
                           f"--warmup {spec['warmup']} --updates {spec['updates']}")
    timed = stamps[spec["warmup"] - 1:] if spec["warmup"] else stamps
    seconds = timed[-1] - timed[0]
    n_units = len(timed) - 1
    world = trainer.dist.world_size
    Path(spec["result"]).write_text(json.dumps({
        "processes": world, "paradigm": "online-rl" if online else "offline",
        "global_batch": batch, "per_rank_batch": batch // world,
        "unit": "rollout+update" if online else "optimiser step",
        "samples_per_unit": samples_per_unit, "timed_units": n_units, "seconds": seconds,
        "samples_per_s": n_units * samples_per_unit / seconds if seconds > 0 else float("nan"),
        "seconds_per_unit": seconds / n_units if n_units else float("nan"),
        "final_loss": out["loss"], "peak_memory_gib_per_rank": out["peak"],
        "peak_kind": "cuda max_memory_allocated" if trainer.device.startswith("cuda") else "max RSS",
        "devices": out["devices"], "backend": trainer.dist.backend}, indent=2))


# ------------------------------------------------------------------------- parent


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"hostname": socket.gethostname(), "cores": os.cpu_count(), "os": platform.platform(),
                            "python": platform.python_version(), "torch": torch.__version__,
                            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if device == "cuda":
        info["cuda"] = torch.version.cuda
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["env"] = {k: os.environ[k] for k in NO_MULTICAST}
    return info


def resolve_data(args: argparse.Namespace) -> str:
    """Prepare the data once, here, so no timed process prepares it."""
    from himari.data import resolve_prepared
    from himari.data.pipeline import default_prepared_dataset

    if args.data:
        return str(resolve_prepared(args.data))
    if args.tiny:
        return str(default_prepared_dataset(bars=20_000, seed=0))
    return str(resolve_prepared(SHARED_BTC if SHARED_BTC.exists() else None))


def model_sets(args: argparse.Namespace) -> list[str]:
    from himari.plugin.manager import get_plugins
    from himari.training.rl import OnlineRLConfig

    models = get_plugins().models()
    if args.model not in models.names():
        sys.exit(f"model {args.model!r} is not registered (himari plugins list --kind model); "
                 f"try --model ppo-lstm")
    sets = []
    if args.tiny:
        online = issubclass(models.get(args.model).config, OnlineRLConfig)
        generic = [s for s in TINY_SETS["ppo-lstm"] if s.split("=")[0] in OnlineRLConfig.__dataclass_fields__]
        sets = ([f"{args.model}.{s}" for s in TINY_SETS.get(args.model, generic)] if online
                else ["train.batch_size=256"])
    return [*sets, *args.set]


def launch(nproc: int, args: argparse.Namespace, data: str, sets: list[str], tmp: Path) -> dict[str, Any]:
    result = tmp / f"result-{nproc}.json"
    spec = {"model": args.model, "data": data, "sets": sets, "device": args.device, "warmup": args.warmup,
            "updates": args.updates, "run_dir": str(tmp / f"run-{nproc}"), "result": str(result)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = {**os.environ, **NO_MULTICAST}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        sys.exit(f"the {nproc}-process run failed (exit {proc.returncode})")
    out = json.loads(result.read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'procs':>5}  {'global batch':>12}  {'per rank':>8}  {'samples/s':>12}  {'s/unit':>8}  "
            f"{'speed-up':>8}  {'efficiency':>10}  {'peak mem/rank (GiB)':<24}  {'wall s':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = ", ".join(f"{p:.2f}" for p in r["peak_memory_gib_per_rank"])
        print(f"{r['processes']:>5}  {r['global_batch']:>12}  {r['per_rank_batch']:>8}  {r['samples_per_s']:>12,.0f}  "
              f"{r['seconds_per_unit']:>8.3f}  {r['speedup']:>7.2f}x  {100 * r['efficiency']:>9.1f}%  "
              f"{peak:<24}  {r['wall_s']:>7.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="flag-trader", help="model plugin (default flag-trader)")
    p.add_argument("--data", help="bars file or prepared directory (default: the shared BTC file when present)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    p.add_argument("--nproc", type=int, default=None, help="processes of the parallel run (default: every GPU; 2 on cpu)")
    p.add_argument("--updates", "--iterations", dest="updates", type=int, default=5,
                   help="timed units: rollout+update iterations (online RL) or optimiser steps (offline)")
    p.add_argument("--warmup", type=int, default=1, help="untimed units first (>= 1)")
    p.add_argument("--set", action="append", default=[], help="a run setting, as himari train --set (repeatable)")
    p.add_argument("--tiny", action="store_true", help="a tiny config and a 20k-bar synthetic market (smoke run)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per launched run")
    p.add_argument("--out", help="JSON file to write (required)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if not args.out:
        p.error("--out is required")
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.warmup < 1 or args.updates < 1:
        sys.exit("--warmup and --updates must be >= 1")
    n_all = args.nproc or (torch.cuda.device_count() if args.device == "cuda" else 2)
    sets, data = model_sets(args), resolve_data(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="himari-bench-dist-") as tmp:
        for nproc in sorted({1, n_all}):
            print(f"running {args.model} on {nproc} process(es) ({args.device}) ...", flush=True)
            rows.append(launch(nproc, args, data, sets, Path(tmp)))
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base
        r["efficiency"] = r["speedup"] / r["processes"]
    batch = "envs" if rows[0]["paradigm"] == "online-rl" else "examples"
    print(f"\n{args.model} on {args.device}, data {data}; unit = {rows[0]['unit']}, {args.updates} timed after "
          f"{args.warmup} warm-up; batch in {batch}; peak memory = {rows[0]['peak_kind']}")
    print_table(rows)
    report = {"benchmark": "distributed", "model": args.model, "device": args.device, "data": data, "sets": sets,
              "warmup": args.warmup, "updates": args.updates, "results": rows, "machine": machine_info(args.device)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
