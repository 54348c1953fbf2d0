"""Runs cannot be mixed or silently corrupted, and a failed ``himari train`` leaves nothing behind.

Each test here failed on the code before these guarantees existed: a second process training in
the same run directory, a checkpoint with flipped bytes loading changed weights, a refused run
leaving an empty directory, a run recorded with a relative data path, private (0600) files, a
full disk reported by torch's internals, and bad numbers reaching torch.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from himari.cli import app
from himari.plugin import TrackerSpec, hookimpl
from himari.training import checkpoint as ckpt
from himari.training.checkpoint import CheckpointError, DiskFullError, load_checkpoint, save_checkpoint

runner = CliRunner()
TINY = ["--epochs", "1", "--batch-size", "64", "--set", "train.max_steps_per_epoch=4", "--set",
        "train.progress=false"]
# Subprocesses train on the CPU on any machine (as conftest's fixture does in this process).
ENV = {**os.environ, "COLUMNS": "200", "CUDA_VISIBLE_DEVICES": ""}


def himari(*args: str) -> list[str]:
    return [sys.executable, "-m", "himari", *args]


@pytest.fixture(scope="module")
def run(small_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("safety") / "run"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir), *TINY])
    assert res.exit_code == 0, res.output
    return run_dir


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ------------------------------------------------------------------ the lock


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from himari.training.rundir import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _hold_lock(run_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(run: Path, small_prepared: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    holder = _hold_lock(run)
    try:
        res = runner.invoke(app, ["train", "--resume", str(run)])
        assert res.exit_code == 2
        assert f"PID {holder.pid}" in res.output and "training in this run directory" in res.output
        fresh = tmp_path / "fresh"
        holder2 = _hold_lock(fresh)  # a new run directory being started by another process
        try:
            res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir",
                                      str(fresh), *TINY])
            assert res.exit_code == 2 and f"PID {holder2.pid}" in res.output
            assert listing(fresh) == [".lock"]  # the refused process removed nothing and wrote nothing
        finally:
            holder2.kill()
            holder2.wait()
            holder2.stdout.close()  # type: ignore[union-attr]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    # the lock dies with its holder (SIGKILL above): the run is usable again
    res = runner.invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0 and "is complete" in res.output


def test_two_simultaneous_runs_in_one_directory_cannot_both_train(small_prepared: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    args = himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir), "--epochs", "2",
                  "--batch-size", "64", "--set", "train.progress=false")
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "another himari process" in loser or "not empty" in loser
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in records if "validation/sharpe" in r]
    assert epochs == [0, 1]  # one run's records, not two interleaved


# ---------------------------------------------------------------- checkpoints


def _tensor_offset(data: bytes, t: torch.Tensor) -> int:
    raw = t.numpy().tobytes()
    at = data.find(raw)
    assert at > 0
    return at


def test_flipped_bytes_in_the_weights_are_refused(tmp_path: Path) -> None:
    w = torch.arange(64, dtype=torch.float32) / 7
    p = save_checkpoint(tmp_path / "last.pt", {"model": "m", "network": {"w": w}})
    data = bytearray(p.read_bytes())
    data[_tensor_offset(bytes(data), w) + 9] ^= 0x10  # one bit of one weight
    p.write_bytes(bytes(data))
    loaded = torch.load(p, weights_only=True)  # torch itself loads the changed weights silently
    assert not torch.equal(loaded["network"]["w"], w)
    with pytest.raises(CheckpointError, match="does not match its hash") as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)


def test_a_changed_plain_value_is_refused(tmp_path: Path) -> None:
    p = save_checkpoint(tmp_path / "last.pt", {"model": "m", "trainer": json.dumps({"epoch": 3})})
    data = p.read_bytes().replace(b'{"epoch": 3}', b'{"epoch": 4}')
    p.write_bytes(data)
    with pytest.raises(CheckpointError, match="does not match its hash"):
        load_checkpoint(p)


def test_content_hash_distinguishes_types_and_order() -> None:
    base = {"a": 1, "b": [1.0, 2.0]}
    assert ckpt.content_hash(base) == ckpt.content_hash({"b": [1.0, 2.0], "a": 1})  # key order is canonical
    assert ckpt.content_hash(base) != ckpt.content_hash({"a": "1", "b": [1.0, 2.0]})
    assert ckpt.content_hash(base) != ckpt.content_hash({"a": 1, "b": [2.0, 1.0]})
    t = torch.zeros(4, dtype=torch.bfloat16)
    assert ckpt.content_hash({"t": t}) != ckpt.content_hash({"t": t.float()})
    assert ckpt.content_hash({"t": t}) != ckpt.content_hash({"t": t.reshape(2, 2)})


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, os.urandom(4096), "truncate", "foreign", "v1"])
def test_damaged_or_foreign_files_are_checkpoint_errors(tmp_path: Path, content: object) -> None:
    p = tmp_path / "last.pt"
    if content == "truncate":
        save_checkpoint(p, {"model": "m", "w": torch.ones(5000)})
        p.write_bytes(p.read_bytes()[:2000])
    elif content == "foreign":
        torch.save({"weights": torch.ones(2)}, p)
    elif content == "v1":
        torch.save({"format": "himari-checkpoint", "version": 1, "model": "m"}, p)
    else:
        p.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)


def test_backtest_of_a_damaged_checkpoint_exits_2_naming_it(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    best = copy / "checkpoints" / "best.pt"
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0xFF
    best.write_bytes(bytes(data))
    res = runner.invoke(app, ["backtest", str(copy), "--out", str(tmp_path / "bt.json")])
    assert res.exit_code == 2, res.output
    assert "best.pt" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "bt.json").exists()


def test_a_run_without_best_pt_is_scored_on_its_last_checkpoint_and_says_so(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    said = " ".join(runner.invoke(app, ["backtest", str(copy), "--out", str(tmp_path / "a.json")]).output.split())
    assert "scored its last checkpoint" not in said
    (copy / "checkpoints" / "best.pt").unlink()  # stopped before its first validation
    res = runner.invoke(app, ["backtest", str(copy), "--out", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    assert "no best.pt (the run stopped before its first validation); scored its last checkpoint" in " ".join(
        res.output.split())
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["checkpoint"] == "last.pt"


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    p = save_checkpoint(tmp_path / "last.pt", {"model": "m", "w": torch.ones(3)})
    original = ckpt._write_bytes

    def full(path: Path, data: bytes) -> None:
        original(path, bytes(data)[:100])  # part of it lands, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_write_bytes", full)
    with pytest.raises(DiskFullError, match="no space left on device") as e:
        save_checkpoint(p, {"model": "m", "w": torch.zeros(3)})
    assert str(p) in str(e.value)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(p)["w"], torch.ones(3))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["last.pt"]


# ------------------------------------------------------- nothing left behind


def test_refused_runs_leave_nothing(small_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--data", "missing-dir"], "no such file or directory"),
        (["--data", str(small_prepared), "--device", "cuda"], "use --device cpu or auto"),
        (["--data", str(small_prepared), "--lr", "nan"], "train.lr"),
        (["--data", str(small_prepared), "--set", "baseline-mlp.dropout=2"], "dropout"),
        (["--data", str(small_prepared), "--tracker", "no-such-tracker"], "unknown tracker"),
    ]
    if torch.cuda.is_available():
        cases.pop(1)
    for args, message in cases:
        res = runner.invoke(app, ["train", "baseline-mlp", *args, *TINY])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert listing(tmp_path) == [], (args, listing(tmp_path))  # not even runs/ or runs/baseline-mlp/


def test_a_run_that_fails_before_its_first_checkpoint_is_removed(small_prepared: Path, tmp_path: Path) -> None:
    """Set-up succeeds (the directory is created), then the loss goes NaN at the first step."""
    run_dir = tmp_path / "runs" / "nan"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                              "--lr", "1e30", *TINY])
    assert res.exit_code == 1 and "loss is" in res.output, res.output
    assert listing(tmp_path) == []


@dataclass(frozen=True)
class _NoSettings:
    pass


class _NeedsMissingPackage:
    """A tracker plugin that needs a package no machine has."""

    @hookimpl
    def himari_register_trackers(self, registry) -> None:
        registry.add(TrackerSpec(name="needs-missing", summary="needs a package that is not installed",
                                 config=_NoSettings, factory=lambda c: None, extras=("no_such_module_xyz",)))


def test_a_missing_optional_package_is_refused_up_front(small_prepared: Path, tmp_path: Path) -> None:
    from himari.plugin.extras import MissingExtraError
    from himari.plugin.manager import build_plugins
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = build_plugins()
    plugins.register(_NeedsMissingPackage(), name="needs-missing-plugin")
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared),
                                                       "trackers": "needs-missing"})
    with pytest.raises(MissingExtraError, match="needs no_such_module_xyz.*pip install no_such_module_xyz"):
        Trainer(run, plugins=plugins, run_dir=tmp_path / "r").fit()
    assert listing(tmp_path) == []


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["himari", *sys.argv[1:]]
from himari.cli import main
main()
"""


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_without_torch_commands_exit_2_with_the_install_hint(run: Path, small_prepared: Path, tmp_path: Path,
                                                              command: str) -> None:
    args = (["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(tmp_path / "r")]
            if command == "train" else ["backtest", str(run), "--out", str(tmp_path / "b.json")])
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True, env=ENV,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert "torch" in out.stderr and "pip install" in out.stderr and "Traceback" not in out.stderr
    assert listing(tmp_path) == []


# -------------------------------------------------------------- paths, modes


def test_runs_record_absolute_data_paths_and_work_from_anywhere(small_prepared: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(small_prepared.parent)
    run_dir = tmp_path / "rel"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", small_prepared.name, "--run-dir", str(run_dir),
                              *TINY])
    assert res.exit_code == 0, res.output
    import yaml

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"] == str(small_prepared.resolve())
    monkeypatch.chdir("/")
    res = runner.invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "bt.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "bt.json").read_text())["data"] == str(small_prepared.resolve())


def test_files_get_the_users_umask(small_prepared: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run_dir = tmp_path / "modes"
        res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                                  *TINY])
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "bt.json")])
        assert res.exit_code == 0, res.output
        files = [run_dir / f for f in ("config.yaml", "summary.json", "preprocessing.json", "metrics.jsonl",
                                       "checkpoints/last.pt", "checkpoints/best.pt")] + [tmp_path / "bt.json"]
        assert {str(f.name): stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o644 for f in files}
    finally:
        os.umask(old)


# ------------------------------------------------------------------ bad values


@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "train.lr"),
    (["--seed", "-1"], "seed"),
    (["--seed", str(2**70)], "seed"),
    (["--set", "train.weight_decay=-1"], "weight_decay"),
    (["--set", "train.grad_clip=.nan"], "train.grad_clip"),
    (["--fee", "nan"], "env.fee"),
    (["--slippage", "1.5"], "slippage"),
    (["--set", "env.dsr_decay=.inf"], "env.dsr_decay"),
])
def test_bad_numbers_are_refused_naming_the_setting(small_prepared: Path, tmp_path: Path, monkeypatch, args,
                                                     message) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), *args, *TINY])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert listing(tmp_path) == []


def test_too_little_data_for_a_batch_is_bad_input_saying_where_the_bars_went(small_prepared: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--batch-size", "100000",
                              "--epochs", "1"])
    assert res.exit_code == 2, res.output
    assert "fewer than one batch (100,000)" in res.output and "of the data's 6,000 bars" in res.output
    assert "the features' warm-up takes the first 1,440" in res.output and "--verbose" not in res.output
    assert listing(tmp_path) == []


def test_bad_paths_are_refused_naming_them(run: Path, small_prepared: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(a_file)])
    assert res.exit_code == 2 and "is a file" in res.output
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir",
                              str(a_file / "sub")])
    assert res.exit_code == 2 and "which is a file" in res.output
    res = runner.invoke(app, ["train", "baseline-mlp", "--config", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("damage, command, message", [
    ("config.yaml", "backtest", "config.yaml"),
    ("config.yaml", "resume", "config.yaml"),
    ("preprocessing.json", "backtest", "preprocessing.json"),
    ("preprocessing.json", "resume", "preprocessing.json"),
    ("config-values", "backtest", "config.yaml"),
])
def test_damaged_run_files_are_errors_naming_them(run: Path, tmp_path: Path, damage: str, command: str,
                                                  message: str) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()  # an unfinished run, so resume reads its files
    if damage == "config-values":
        text = (copy / "config.yaml").read_text().replace("lr: 0.001", "lr: -5")
        (copy / "config.yaml").write_text(text)
    else:
        (copy / damage).write_text("{ this is: [not valid")
    args = (["backtest", str(copy), "--out", str(tmp_path / "bt.json")] if command == "backtest"
            else ["train", "--resume", str(copy)])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "bt.json").exists()


def test_devices_on_gpus_without_them_is_refused_before_torchrun(small_prepared: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from himari.training import distributed

    launched: list[int] = []
    monkeypatch.setattr(distributed, "launch", lambda n, args, env=None: launched.append(n) or 0)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--devices", "2",
                              "--device", "cuda"])
    assert res.exit_code == 2 and "--devices 2 --device cuda" in res.output and launched == []
    assert listing(tmp_path) == []


# -------------------------------------------------------- interrupts, resumes


# How an interrupted ``python -m himari`` may end: exit 130, or killed by SIGINT, which a shell
# also reports as 130. CPython ends a ``-m`` run by SIGINT when the KeyboardInterrupt was raised
# inside code run from a string (dataclasses, namedtuple) even if it was caught and handled.
INTERRUPTED = (130, -signal.SIGINT)


def _interrupt(small_prepared: Path, run_dir: Path, checkpoint_every: int, started: Path,
               sig: int = signal.SIGINT) -> tuple[int, str]:
    """Start a long training, send ``sig`` once ``started`` exists; its exit code and stderr."""
    proc = subprocess.Popen(himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                                   "--epochs", "500", "--batch-size", "32", "--checkpoint-every", str(checkpoint_every),
                                   "--set", "train.patience=0", "--set", "train.progress=false"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_says_how_to_resume(small_prepared: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "interrupted"
    code, err = _interrupt(small_prepared, run_dir, 5, run_dir / "checkpoints" / "last.pt")
    assert code in INTERRUPTED
    assert f"himari train --resume {run_dir}" in err
    assert not (run_dir / "summary.json").exists()


def test_ctrl_c_before_the_first_checkpoint_keeps_nothing(small_prepared: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "early"
    code, err = _interrupt(small_prepared, run_dir, 100_000, run_dir / "metrics.jsonl")  # training has started
    assert code in INTERRUPTED and "nothing was kept" in err
    assert listing(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_before_the_first_checkpoint_keeps_nothing(small_prepared: Path, tmp_path: Path,
                                                                 sig: int) -> None:
    """SIGTERM (a scheduler, timeout, docker stop) and SIGHUP are handled as Ctrl-C is."""
    run_dir = tmp_path / "early"
    code, err = _interrupt(small_prepared, run_dir, 100_000, run_dir / "metrics.jsonl", sig)
    assert code == 128 + sig and "nothing was kept" in err, err
    assert listing(tmp_path) == []


def test_sigterm_says_how_to_resume(small_prepared: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "interrupted"
    code, err = _interrupt(small_prepared, run_dir, 5, run_dir / "checkpoints" / "last.pt", signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and f"himari train --resume {run_dir}" in err, err
    assert (run_dir / "checkpoints" / "last.pt").exists() and not (run_dir / "summary.json").exists()


def test_resuming_a_complete_run_reports_it_and_changes_nothing(run: Path) -> None:
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*")
              if p.is_file() and p.name != ".lock"}
    res = runner.invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0
    assert "is complete" in res.output and "nothing to resume" in res.output
    assert "epoch 1/1" not in res.output
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def THREADS(n: int) -> dict[str, str]:  # noqa: N802 - an environment, as ENV
    """torch's thread count from the environment: MKL_NUM_THREADS, when set, overrides
    OMP_NUM_THREADS, so both are set (a shell that exports MKL_NUM_THREADS=2 gave the resume 2)."""
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}


def test_thread_count_is_recorded_and_a_different_one_warned_about(small_prepared: Path, tmp_path: Path) -> None:
    """Trained with two torch threads (a subprocess, so no earlier test's thread setting leaks in),
    resumed with one: the summary records 2 and the resume names both counts."""
    run_dir = tmp_path / "threads"
    two = subprocess.run(himari("train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                                *TINY), capture_output=True, text=True, timeout=120, env={**ENV, **THREADS(2)})
    assert two.returncode == 0, two.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["threads"] < 2:
        pytest.skip("torch runs one thread on this machine: no other thread count to resume with")
    assert summary["threads"] == 2
    (run_dir / "summary.json").unlink()  # an unfinished run, so the resume trains
    out = subprocess.run(himari("train", "--resume", str(run_dir)), capture_output=True, text=True, timeout=120,
                         env={**ENV, **THREADS(1)})
    assert out.returncode == 0, out.stderr
    assert "trained with 2 torch threads and resumes with 1" in " ".join(out.stdout.split())


def test_fee_and_slippage_options(run: Path, small_prepared: Path, tmp_path: Path) -> None:
    """--fee/--slippage reach the run's config; backtest --fee 0 --slippage 0 scores buy-and-hold at
    exactly close[last] / open[first + 1] - 1 of the test split (fill at the next open)."""
    import yaml

    from himari.data import PreparedData

    run_dir = tmp_path / "costs"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run_dir),
                              "--fee", "0.002", "--slippage", "0.0001", *TINY])
    assert res.exit_code == 0, res.output
    env = yaml.safe_load((run_dir / "config.yaml").read_text())["env"]
    assert env["fee"] == 0.002 and env["slippage"] == 0.0001
    res = runner.invoke(app, ["backtest", "buy-and-hold", "--data", str(small_prepared), "--fee", "0",
                              "--slippage", "0", "--out", str(tmp_path / "bt.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "bt.json").read_text())
    assert out["costs"]["fee"] == 0 and out["costs"]["slippage"] == 0
    data = PreparedData(small_prepared)
    (a, b), = data.split("test")
    expected = data.close[b - 1] / data.open[a + 1] - 1
    assert out["results"][0]["total_return"] == pytest.approx(expected, rel=1e-12)
    res = runner.invoke(app, ["backtest", "buy-and-hold", "--data", str(small_prepared), "--fee", "nan"])
    assert res.exit_code == 2 and "--fee" in res.output


def test_a_run_killed_before_its_preprocessing_state_resumes_and_loads(small_prepared: Path, tmp_path: Path) -> None:
    """SIGKILL between a new run's config.yaml and its preprocessing.json (seen in a killed
    `himari evaluate`): the resume refits on the train rows, must save that state, and the
    finished run must load (backtest, evaluate) with the same state an unkilled run saves."""
    from himari.plugin.manager import get_plugins
    from himari.training.assemble import load_trained
    from himari.training.config import merge_run_config
    from himari.data import PreparedData
    from himari.training.trainer import Trainer

    plugins = get_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(small_prepared)},
                           sets=["train.epochs=1", "train.batch_size=64", "train.max_steps_per_epoch=4",
                                 "train.progress=false"])
    whole = tmp_path / "whole"
    Trainer(run, plugins=plugins, run_dir=whole).fit()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.yaml").write_bytes((whole / "config.yaml").read_bytes())  # all a killed creation left
    (cut / ".preprocessing.json.123.abc.tmp").write_text("{")                 # and a half-written temp file
    Trainer.resume(cut, plugins=plugins).fit()
    assert json.loads((cut / "preprocessing.json").read_text()) == json.loads((whole / "preprocessing.json").read_text())
    assert not list(cut.glob(".*.tmp"))  # the resume (holding the lock) cleared the dead writer's temp file
    data = PreparedData(small_prepared)
    ranges = data.split("validation")
    a = load_trained(whole, plugins=plugins).actions(data, ranges)
    b = load_trained(cut, plugins=plugins).actions(data, ranges)  # refused ("state is for []") before the fix
    assert (a == b).all()
    # its data record too (the data-identity check skipped a run without one, for good)
    assert json.loads((cut / "data.json").read_text()) == json.loads((whole / "data.json").read_text())


def test_a_config_temporary_left_by_a_killed_run_does_not_block_a_new_run(tmp_path: Path) -> None:
    """A run killed while writing its config (its first file) leaves the lock and the config's
    temporary, nothing to resume. A new run there (an evaluation resumed after such a kill starts
    the run again) may go ahead and the dead process's temporary is removed; a temporary of a
    live writer, or any other file, still refuses the directory."""
    from himari.data.atomic import _HOST_TAG
    from himari.errors import ConfigError
    from himari.training import rundir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.LOCK).write_text("")
    stale = run_dir / f".{rundir.CONFIG}.{_HOST_TAG}-{dead_pid}.abcd1234.tmp"
    stale.write_text("model: baseline-")
    rundir.check_run_dir_target(run_dir, resume=False)
    assert sorted(p.name for p in run_dir.iterdir()) == [rundir.LOCK]

    live = run_dir / f".{rundir.CONFIG}.{_HOST_TAG}-{os.getpid()}.live1234.tmp"
    live.write_text("")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        rundir.check_run_dir_target(run_dir, resume=False)
    live.unlink()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        rundir.check_run_dir_target(run_dir, resume=False)


# ------------------------------------------------------------------ the data a run trained on


def test_a_data_set_replaced_under_a_run_is_refused_by_resume_and_backtest(tmp_path: Path) -> None:
    """``data prepare --force`` over a run's data, then ``--resume``, finished one run on two
    markets (with preprocessing fitted on the first), and ``backtest RUN`` scored the new bars as
    the run's own. The same bars prepared again the same way are still the run's data."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    data = tmp_path / "data"
    prepare(load_synthetic(SynthConfig(bars=4000, seed=5)), data, PrepareConfig())
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(data), "--run-dir", str(run_dir), *TINY])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "a.json")]).exit_code == 0
    (run_dir / "summary.json").unlink()  # as if stopped before its end: resume trains again
    prepare(load_synthetic(SynthConfig(bars=4000, seed=5)), data, PrepareConfig(), force=True)
    assert runner.invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "a2.json")]).exit_code == 0
    prepare(load_synthetic(SynthConfig(bars=4000, seed=6)), data, PrepareConfig(), force=True)
    for args in (["train", "--resume", str(run_dir)], ["backtest", str(run_dir), "--out", str(tmp_path / "b.json")]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "not the data set the run" in " ".join(res.output.split()), res.output
    assert not (tmp_path / "b.json").exists()
    explicit = runner.invoke(app, ["backtest", str(run_dir), "--data", str(data), "--out", str(tmp_path / "c.json")])
    assert explicit.exit_code == 0, explicit.output  # named on purpose: scored on it
    (run_dir / "data.json").unlink()  # a run saved before the record existed is not checked
    assert runner.invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "d.json")]).exit_code == 0


def test_a_window_longer_than_the_train_split_is_named_as_the_reason(small_prepared: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """cgdt with a huge context said a bar is an example only once its label is known, 6 bars
    after it: true, but not why there were no examples."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "cgdt", "--data", str(small_prepared), "--context-length", "100000",
                              "--batch-size", "8", "--epochs", "1"])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert "cgdt.context_length 100,000 asks for windows of 100,000 bars" in said and "lower --context-length" in said
    assert listing(tmp_path) == []
