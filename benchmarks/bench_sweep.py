"""Wall time of a ``himari sweep`` on Ray Tune against the same trainings one at a time (a
benchmark, not a test).

    python benchmarks/bench_sweep.py [--data PREPARED] [--seeds 4] [--epochs 2] [--json OUT]
    python benchmarks/bench_sweep.py --gpu [--fraction 0.25] ...     # on a machine with a GPU

CPU (default): 16 baseline-mlp trainings (lr x dropout = 4 configurations x 4 seeds) run

- one after another, each as its own ``himari train`` command (what a user does without a
  sweep: every command pays its own Python, torch and plugin start-up), and
- as one ``himari sweep`` on a local Ray instance with every core, one CPU per trial.

GPU (``--gpu``): the same 16 trainings as two sweeps on one GPU, one trial at a time
(``--gpus-per-trial 1``) against several packed onto it (``--gpus-per-trial 0.25``: four at once).

The sweep's time is split from its own output lines as they arrive: Ray started (the
``sweeping`` line), the trials (until the last ``N of N done``) and the scoring, statistics and
leaderboard after them (which the ``himari train`` commands do not do beyond their own test
score). Default data: 6,000 synthetic 5-minute bars prepared with the default labels. Every
command runs with ``OMP_NUM_THREADS=1``. Prints a table and writes JSON naming the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import machine_info

REPO = Path(__file__).resolve().parents[1]
LRS = ("1e-3", "3e-3")
DROPOUTS = ("0", "0.2")


def _env() -> dict[str, str]:
    paths = [str(REPO), str(REPO / "plugins"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "120"}


def _prepare(work: Path) -> Path:
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = work / "prepared"
    prepare(load_synthetic(SynthConfig(bars=6000, seed=5)), out, PrepareConfig())
    return out


def sequential(data: Path, work: Path, seeds: int, epochs: int, device: str) -> dict:
    """Every trial as its own ``himari train`` command, one after another."""
    times = []
    t0 = time.perf_counter()
    for i, (lr, dropout, seed) in enumerate(itertools.product(LRS, DROPOUTS, range(seeds))):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "himari", "train", "baseline-mlp", "--data", str(data), "--lr", lr,
                        "--epochs", str(epochs), "--device", device, "--set", f"baseline-mlp.dropout={dropout}",
                        "--set", f"train.seed={seed}", "--set", "train.progress=false",
                        "--run-dir", str(work / "train" / f"run-{i:02d}")],
                       check=True, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return {"wall_s": time.perf_counter() - t0, "per_training_s": times}


def sweep(data: Path, out: Path, seeds: int, epochs: int, extra: list[str]) -> dict:
    """One ``himari sweep`` command; its phases timed from its output lines."""
    cmd = [sys.executable, "-m", "himari", "sweep", "baseline-mlp", "--data", str(data),
           "--grid", f"lr={','.join(LRS)}", "--grid", f"dropout={','.join(DROPOUTS)}", "--seeds", str(seeds),
           "--epochs", str(epochs), "--top", "0", "--json", "--out", str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = last_trial = None
    n = 4 * seeds
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.perf_counter() - t0
        if line.startswith("sweeping"):
            started = now
        if f"of {n} done" in line:
            last_trial = now
    stdout = proc.stdout.read() if proc.stdout else ""
    if proc.wait() != 0:
        raise RuntimeError(f"the sweep failed (exit {proc.returncode})")
    wall = time.perf_counter() - t0
    result = json.loads(stdout)
    return {"wall_s": wall, "ray_started_s": started, "trials_done_s": last_trial,
            "trials_s": (last_trial - started) if started is not None and last_trial is not None else None,
            "after_trials_s": (wall - last_trial) if last_trial is not None else None,
            "counts": result["counts"], "trial_seconds": [r.get("seconds") for r in result["trials"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="prepared directory (default: synthetic)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per configuration (4 configurations)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="one GPU: one trial at a time against packed trials")
    parser.add_argument("--fraction", type=float, default=0.25, help="--gpu: GPUs per packed trial")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    machine = machine_info()
    n = 4 * args.seeds
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        data = args.data or _prepare(work)
        if args.gpu:
            one = sweep(data, work / "one", args.seeds, args.epochs, ["--gpus-per-trial", "1", "--device", "cuda"])
            packed = sweep(data, work / "packed", args.seeds, args.epochs,
                           ["--gpus-per-trial", str(args.fraction), "--cpus-per-trial", "1", "--device", "cuda"])
            rows = [("sweep, 1 GPU per trial", one), (f"sweep, {args.fraction:g} GPU per trial", packed)]
        else:
            seq = sequential(data, work, args.seeds, args.epochs, "cpu")
            swept = sweep(data, work / "sweep", args.seeds, args.epochs, [])
            rows = [("himari train, one after another", seq), ("himari sweep, local Ray", swept)]
    base = rows[0][1]["wall_s"]
    print(f"{n} baseline-mlp trainings ({args.epochs} epochs) on {machine['cpu_model']} ({machine['hostname']}, "
          f"{machine['cores']} cores), load {machine['load_avg_start'][0]:.2f} at the start")
    print(f"{'how':<34} {'wall s':>8} {'s/trial':>8} {'speed-up':>9}  phases")
    for name, r in rows:
        phases = "" if "trials_s" not in r or r["trials_s"] is None else \
            f"Ray up {r['ray_started_s']:.1f} s, trials {r['trials_s']:.1f} s, scoring + statistics " \
            f"{r['after_trials_s']:.1f} s"
        print(f"{name:<34} {r['wall_s']:>8.1f} {r['wall_s'] / n:>8.2f} {base / r['wall_s']:>8.2f}x  {phases}")
    from himari.data.atomic import write_text_atomic

    kind = "gpu" if args.gpu else "cpu"
    out = args.json or REPO / "benchmarks" / "results" / f"sweep-{kind}-{socket.gethostname()}.json"
    payload = {"benchmark": "bench_sweep", "mode": kind, "machine": machine,
               "config": {"trainings": n, "epochs": args.epochs, "seeds": args.seeds, "lr": LRS, "dropout": DROPOUTS,
                          "data": str(args.data) if args.data else "synthetic, 6000 bars, seed 5",
                          "fraction": args.fraction if args.gpu else None},
               "results": {name: r for name, r in rows}, "load_avg_end": os.getloadavg()}
    write_text_atomic(out, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
