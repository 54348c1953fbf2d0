"""Data-parallel training on the CPU: two gloo processes launched by torchrun.

- baseline-mlp: both ranks end with identical weights, and these equal a single process trained
  with the same global batch (the rank shards of each global batch are the single process's
  batch, gradients and BatchNorm statistics are averaged over the ranks);
- online RL (ppo-lstm; flag-trader once registered): both ranks end with identical weights while
  each stepped its own env shard with half the envs;
- a 2-process ``--devices 2`` run SIGKILLed mid-epoch and resumed ends exactly like an
  uninterrupted one (weights, metrics, summary: every rank's RNG state is restored);
- the sampler, the per-rank config and the CLI option on their own.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from himari.errors import ConfigError
from himari.plugin.manager import build_plugins
from himari.training import distributed
from himari.training.config import merge_run_config
from himari.training.trainer import Trainer

# Subprocesses train on the CPU on any machine (as conftest's fixture does in this process).
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

DRIVER = """
import json, os, sys
import torch
from himari.plugin.manager import get_plugins
from himari.training import distributed
from himari.training.config import merge_run_config
from himari.training.trainer import Trainer

spec = json.loads(sys.argv[1])
plugins = get_plugins()
run = merge_run_config(plugins=plugins, overrides=spec["overrides"], sets=spec["sets"])
trainer = Trainer(run, plugins=plugins, run_dir=spec["run_dir"])
summary = trainer.fit()
out = {"network": trainer.model.network.state_dict(), "steps": summary["steps"],
       "world_size": summary["world_size"]}
if trainer.online:  # one more rollout: what this rank's env shard looks like
    buf = trainer.model.rollout(trainer.ctx, True)
    out["rollout_obs"], out["n_envs"] = buf.obs.clone(), buf.n_envs
torch.save(out, os.path.join(spec["out"], "rank" + os.environ["RANK"] + ".pt"))
distributed.shutdown()
"""

MLP_SETS = ["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=20", "train.log_every=5",
            "train.checkpoint_every=1000", "train.device=cpu", "train.patience=0",
            "baseline-mlp.dropout=0.0", "baseline-mlp.loss=cross-entropy"]

RL_SETS = {
    "ppo-lstm": ["ppo-lstm.encoder_sizes=[16]", "ppo-lstm.lstm_hidden=16"],
    "flag-trader": ["flag-trader.n_layer=2", "flag-trader.n_head=2", "flag-trader.n_embd=32",
                    "flag-trader.context_length=16", "flag-trader.lora_rank=4", "flag-trader.head_hidden=16"],
}


def rl_sets(model: str) -> list[str]:
    """4 global envs (2 per rank) x 16 steps, 4 rollouts over 2 epochs, 2 x 2 minibatch steps each."""
    return ["train.epochs=2", "train.log_every=2", "train.device=cpu", "train.patience=0",
            f"{model}.n_envs=4", f"{model}.rollout_steps=16", f"{model}.episode_length=64",
            f"{model}.env_episodes=4", f"{model}.update_epochs=2", f"{model}.n_minibatches=2", *RL_SETS[model]]


def torchrun(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


def run_two_ranks(tmp_path: Path, model: str, data: Path, sets: list[str]) -> tuple[dict, dict, Path]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    run_dir = tmp_path / "dist"
    spec = {"overrides": {"model": model, "data": str(data)}, "sets": sets, "run_dir": str(run_dir),
            "out": str(tmp_path)}
    torchrun(script, json.dumps(spec))
    return (torch.load(tmp_path / "rank0.pt", weights_only=True), torch.load(tmp_path / "rank1.pt", weights_only=True),
            run_dir)


def train_single(model: str, data: Path, sets: list[str], run_dir: Path) -> dict:
    plugins = build_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": model, "data": str(data)}, sets=sets)
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=Console(file=io.StringIO())).fit()


def network(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / f"{which}.pt", weights_only=True)["network"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------ end to end


def test_mlp_two_ranks_equal_one_process_with_the_same_global_batch(small_prepared, tmp_path) -> None:
    r0, r1, dist_dir = run_two_ranks(tmp_path, "baseline-mlp", small_prepared, MLP_SETS)
    assert r0["world_size"] == 2 and r0["steps"] == r1["steps"] == 20
    assert_same(r0["network"], r1["network"])

    single = train_single("baseline-mlp", small_prepared, MLP_SETS, tmp_path / "single")
    assert single["steps"] == 20 and single["world_size"] == 1
    a, b = network(tmp_path / "single"), network(dist_dir)
    # A Linear bias followed by BatchNorm gets a gradient that is zero up to rounding (the BN
    # subtracts it), which Adam normalises into steps of ~lr whatever the rounding: it and the
    # running mean it shifts differ between any two summation orders. Everything else must match.
    noise = {k for i in range(10) if f"{i + 1}.running_mean" in a for k in (f"{i}.bias", f"{i + 1}.running_mean")}
    assert noise == {"0.bias", "1.running_mean", "4.bias", "5.running_mean"}
    for k in a.keys() - noise:  # weights, BatchNorm scale, shift and running variance, class weights
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    for k in noise:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=20 * 1e-3 * 0.5, msg=k)  # steps x lr, half a step each
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the sums really were split over two processes

    def train_records(run_dir: Path) -> list[dict]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if "train/loss" in r and "validation/sharpe" not in r]

    ra, rb = train_records(tmp_path / "single"), train_records(dist_dir)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [5, 10, 15, 20]
    for x, y in zip(ra, rb):  # the logged loss and accuracy are means over the ranks: the global values
        assert y["train/loss"] == pytest.approx(x["train/loss"], rel=1e-5)
        assert y["train/accuracy"] == pytest.approx(x["train/accuracy"], rel=1e-6)
    assert not list(dist_dir.glob("checkpoints/.*.tmp"))  # rank 0 alone wrote, atomically


def _missing_extras(model: str) -> list[str]:
    from himari.plugin.extras import missing_modules

    return missing_modules(build_plugins().models().get(model).extras)


@pytest.mark.parametrize("model", [
    "ppo-lstm",
    pytest.param("flag-trader", marks=pytest.mark.skipif(
        bool(_missing_extras("flag-trader")),
        reason=f"flag-trader needs {', '.join(_missing_extras('flag-trader'))} (pip install 'himari[llm]')")),
])
def test_online_rl_two_ranks_share_weights_and_split_the_envs(model, small_prepared, tmp_path) -> None:
    sets = rl_sets(model)
    r0, r1, dist_dir = run_two_ranks(tmp_path, model, small_prepared, sets)
    assert_same(r0["network"], r1["network"])
    assert r0["n_envs"] == r1["n_envs"] == 2  # 4 global envs, half per rank
    assert not torch.equal(r0["rollout_obs"], r1["rollout_obs"])  # each rank steps its own env shard
    assert r0["steps"] == r1["steps"] == 4 * 2 * 2  # the single-process plan: rollouts x update epochs x minibatches
    lines = [json.loads(x) for x in (dist_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("rollout/reward_mean" in r for r in lines)
    assert all(np.isfinite(r["train/loss"]) for r in lines if "train/loss" in r)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out += children.get(p, [])
        todo += children.get(p, [])
    return out


def himari(*args: str) -> list[str]:
    return [sys.executable, "-m", "himari", *args]


RESUME_ARGS = ["--device", "cpu", "--epochs", "2", "--batch-size", "32", "--checkpoint-every", "10", "--seed", "3",
               "--set", "train.patience=0", "--set", "train.log_every=5", "--method", "input-noise", "--devices", "2"]


def test_devices_2_killed_and_resumed_matches_uninterrupted(small_prepared, tmp_path) -> None:
    full = tmp_path / "full"
    out = subprocess.run(himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(full),
                                *RESUME_ARGS), capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 processes, gloo" in out.stdout

    killed = tmp_path / "killed"
    proc = subprocess.Popen(himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(killed),
                                   *RESUME_ARGS), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    for pid in [*reversed(_descendants(proc.pid)), proc.pid]:  # the workers, torchrun, then himari
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before the kill: the test proves nothing"
    payload = torch.load(last, weights_only=True)
    state = json.loads(payload["trainer"])
    assert state["epoch"] == 0 and 0 < state["batch"] < 99  # mid-epoch 1 of 2
    assert payload["world_size"] == 2 and len(payload["rng_ranks"]) == 2
    assert not torch.equal(payload["rng_ranks"][0]["torch"], payload["rng_ranks"][1]["torch"])

    out = subprocess.run(himari("train", "--resume", str(killed), "--devices", "2"), capture_output=True, text=True,
                         env=ENV, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming" in out.stdout

    a = json.loads((full / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["resumed_from_step"] == state["step"] > 0 and b["world_size"] == 2
    for key in ("validation", "test", "history", "best_epoch", "best_validation_sharpe", "steps"):
        assert a[key] == b[key], key
    assert (full / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()
    assert_same(network(full, "best"), network(killed, "best"))
    assert_same(network(full), network(killed))


def test_a_bad_run_dir_is_refused_before_torchrun_starts(small_prepared, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    out = subprocess.run(himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir",
                                str(tmp_path / "run"), "--device", "cpu", "--devices", "2"),
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("not empty") == 1  # one process, no torchrun
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["x"]


def test_an_error_on_rank_0_stops_every_rank(small_prepared, tmp_path) -> None:
    """torchrun started directly (no --devices pre-check): the run directory is checked on rank 0
    alone, and its refusal reaches both ranks (no rank waits forever)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    out = subprocess.run(distributed.torchrun_command(2, [
        "train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(tmp_path / "run"),
        "--device", "cpu"]), capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode != 0
    assert out.stderr.count("not empty") >= 2  # rank 0's error, raised by both ranks (no hang)


# ------------------------------------------------------------------- the parts


def test_sampler_shards_are_the_single_process_batch() -> None:
    single = distributed.GlobalBatchSampler(1000, 64, 7, distributed.SINGLE)
    for world in (2, 4):
        ranks = [distributed.GlobalBatchSampler(1000, 64, 7, distributed.DistInfo(rank=r, world_size=world))
                 for r in range(world)]
        assert {s.steps_per_epoch(True) for s in ranks} == {single.steps_per_epoch(True)} == {15}
        for epoch, step in ((0, 0), (0, 14), (3, 5)):
            shards = [s.indices(epoch, step) for s in ranks]
            assert all(len(x) == 64 // world for x in shards)
            np.testing.assert_array_equal(np.concatenate(shards), single.indices(epoch, step))
    assert not np.array_equal(single.indices(0, 0), single.indices(1, 0))
    with pytest.raises(ConfigError, match="multiple of the number of processes"):
        distributed.GlobalBatchSampler(1000, 63, 0, distributed.DistInfo(rank=0, world_size=2))
    with pytest.raises(ConfigError, match="drop_last"):
        distributed.GlobalBatchSampler(1000, 64, 0, distributed.DistInfo(rank=0, world_size=2)).steps_per_epoch(False)


def test_online_rl_config_is_split_per_rank() -> None:
    from himari.training.rl import OnlineRLConfig

    cfg = OnlineRLConfig(n_envs=16, n_minibatches=4)
    assert distributed.rank_config(cfg, distributed.SINGLE) is cfg
    assert distributed.rank_config(cfg, distributed.DistInfo(rank=1, world_size=2)).n_envs == 8
    with pytest.raises(ConfigError, match="multiple of processes x n_minibatches"):
        distributed.rank_config(cfg, distributed.DistInfo(rank=0, world_size=8))
    assert distributed.rank_config("other", distributed.DistInfo(rank=0, world_size=2)) == "other"
    assert len({distributed.rank_seed(0, r) for r in range(8)} | {distributed.rank_seed(1, 0)}) == 9


def test_resuming_with_another_number_of_processes_says_it_is_not_exact() -> None:
    payload = {"rng": {"k": 0}, "rng_ranks": [{"k": 0}, {"k": 1}], "world_size": 2}
    assert distributed.rank_rng_state(payload, distributed.DistInfo(rank=1, world_size=2)) == ({"k": 1}, None)
    rng, note = distributed.rank_rng_state(payload, distributed.SINGLE)
    assert rng == {"k": 0} and "not bit-exactly" in note
    rng, note = distributed.rank_rng_state({"rng": {"k": 0}}, distributed.DistInfo(rank=0, world_size=4))
    assert rng is None and "written by 1 process(es)" in note


def test_cli_devices_option(monkeypatch) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "--devices" in help_text and "torchrun" in help_text
    launched: list[tuple[int, list[str]]] = []
    real_launch = distributed.launch
    monkeypatch.setattr(distributed, "launch", lambda n, args, env=None: launched.append((n, list(args))) or 0)
    res = runner.invoke(app, ["-v", "train", "baseline-mlp", "--set", "train.lr=0.01", "--set",
                              "baseline-mlp.dropout=0.2", "--devices", "4", "--epochs", "3"])
    assert res.exit_code == 0, res.output
    assert launched == [(4, ["--verbose", "train", "baseline-mlp", "--epochs", "3", "--set", "train.lr=0.01",
                             "--set", "baseline-mlp.dropout=0.2"])]
    # the run config is validated before torchrun starts
    res = runner.invoke(app, ["train", "baseline-mlp", "--set", "a=1", "--devices", "4"])
    assert res.exit_code == 2 and "a: unknown key" in res.output and len(launched) == 1
    assert distributed.torchrun_command(4, ["train", "x"])[1:8] == ["-m", "torch.distributed.run", "--standalone",
                                                                     "--nproc-per-node", "4", "-m", "himari"]
    # the real launcher again (undo() would also give back the GPU that conftest hides from this test)
    monkeypatch.setattr(distributed, "launch", real_launch)
    res = runner.invoke(app, ["train", "baseline-mlp", "--devices", "2"], env={"WORLD_SIZE": "2", "RANK": "0"})
    assert res.exit_code == 2 and "started by torchrun already" in res.output


def test_the_data_parallel_wrapper_is_freed_before_the_group_closes(monkeypatch, tmp_path) -> None:
    """A DDP reducer that outlives ``destroy_process_group`` is destroyed at interpreter exit,
    where gloo aborted about one successful run in ten. ``release_data_parallel`` must free the
    wrapper itself (not only stop using it), and ``himari train`` must call it before
    ``distributed.shutdown``."""
    import gc
    import types
    import weakref

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from himari.cli import train as train_cli

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        inner = torch.nn.Linear(4, 2)
        holder = types.SimpleNamespace(loss_fn=DistributedDataParallel(inner))
        holder.loss_fn(torch.ones(3, 4)).sum().backward()  # the reducer has run once
        wrapper = weakref.ref(holder.loss_fn)
        Trainer.release_data_parallel(holder)
        gc.collect()
        assert holder.loss_fn is inner
        assert wrapper() is None, "the DDP wrapper is still alive after release_data_parallel"
    finally:
        dist.destroy_process_group()

    calls: list[str] = []
    fake = types.SimpleNamespace(fit=lambda: calls.append("fit"),
                                 release_data_parallel=lambda: calls.append("release"))
    monkeypatch.setattr(distributed, "shutdown", lambda: calls.append("shutdown"))
    train_cli._fit(fake)
    assert calls == ["fit", "release", "shutdown"]
