"""``himari sweep`` on a real local Ray instance (2 CPUs, one session for the module): a 4-trial
sweep of baseline-mlp writes 4 ordinary runs and a leaderboard that agrees with them; a trial
that raises is reported and the others finish; a killed sweep resumes without training its
finished trials again; a sweep that cannot start leaves nothing behind."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="himari sweep needs ray: pip install 'himari[sweep]'")
pytest.importorskip("ray.tune", reason="himari sweep needs Ray Tune: pip install 'himari[sweep]'")
pytest.importorskip("torch")

from rich.console import Console

from himari.errors import ConfigError
from himari.plugin.manager import get_plugins, reset_plugins
from himari.sweep.config import build_sweep
from himari.sweep import tune_run
from himari.sweep.runner import run_sweep
from himari.training import rundir

TINY = ["train.epochs=1", "train.batch_size=128", "train.max_steps_per_epoch=8"]
ROOT = Path(__file__).resolve().parents[3]

HOLD = "HIMARI_TEST_HOLD_TRIALS"
FAILING_METHOD = """
import os
import time
from dataclasses import dataclass
from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class FailConfig:
    fail: bool = False
    hold: bool = False


class Fail:
    def __init__(self, config):
        self.config = config

    def dataset(self, dataset, ctx, split):
        if self.config.fail:
            raise RuntimeError("boom: this trial was set to fail")
        if self.config.hold and os.environ.get("HIMARI_TEST_HOLD_TRIALS"):
            time.sleep(600)  # until the sweep is killed
        return dataset


@hookimpl
def himari_register_training_methods(registry):
    registry.add(TrainingMethodSpec(name="sweep-fail", summary="raises when fail is true", config=FailConfig,
                                    factory=Fail, paradigms=("supervised", "sequence")))
"""


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray instance with 2 CPUs for the module, and a test plugin installed as a
    distribution on PYTHONPATH (so the Ray workers, which inherit the environment, find it)."""
    site = tmp_path_factory.mktemp("site")
    (site / "sweep_fail_plugin.py").write_text(FAILING_METHOD)
    info = site / "sweep_fail_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sweep-fail-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[himari]\nsweep_fail_plugin = sweep_fail_plugin\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.syspath_prepend(str(site))
        reset_plugins()
        with tune_run._cwd(tune_run._himari_home()):  # as the command connects (see test_sweep_workers)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()
            reset_plugins()
    reset_plugins()


def _sweep(data: Path, out: Path, **kw):
    plugins = get_plugins()
    sweep = build_sweep(plugins=plugins, model="baseline-mlp", data=str(data), sets=[*TINY, *kw.pop("sets", [])],
                        **kw)
    return run_sweep(sweep, out, plugins=plugins, console=Console(file=io.StringIO()))


@pytest.fixture(scope="module")
def four_trials(ray_session: None, small_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("sweeps")
    with pytest.MonkeyPatch.context() as mp:  # a relative --out: the Ray tasks run elsewhere
        mp.chdir(base)
        result = _sweep(small_prepared, Path("four"), grid=["lr=1e-3,3e-3"], options={"seeds": 2, "top": 2})
    return {"result": result, "out": base / "four"}


def test_four_trials_write_four_runs_and_a_leaderboard_that_agrees_with_them(four_trials: dict,
                                                                              small_prepared: Path) -> None:
    from himari.training.leaderboard import backtest

    result, out = four_trials["result"], four_trials["out"]
    assert json.loads((out / "sweep.json").read_text()) == json.loads(json.dumps(result))
    assert result["directory"] == str(out)  # --out four, recorded absolutely
    assert result["counts"] == {"finished": 4, "stopped": 0, "failed": 0}
    runs = sorted(p for p in (out / "runs").iterdir())
    assert [p.name for p in runs] == [f"trial-0000{i}" for i in range(4)]
    assert all(rundir.is_run_dir(p) and (p / rundir.SUMMARY).exists() for p in runs)
    seen = set()
    for row in result["trials"]:
        run = Path(row["run_dir"])
        config = yaml.safe_load((run / rundir.CONFIG).read_text())
        summary = json.loads((run / rundir.SUMMARY).read_text())
        # the trial trained the settings its row names
        assert (config["train"]["lr"], config["train"]["seed"]) == (row["params"]["lr"], row["seed"])
        assert row["validation_sharpe"] == summary["best_validation_sharpe"]
        assert row["epochs_run"] == summary["epochs_run"] == 1
        # its test score is the one `himari backtest RUN buy-and-hold` gives the run
        entries, _ = backtest([str(run), "buy-and-hold"], split="test")
        model = next(e for e in entries if e.kind == "run")
        hold = next(e for e in entries if e.kind == "baseline")
        assert row["test"]["sharpe"] == pytest.approx(model.metrics["sharpe"], rel=1e-9)
        assert row["buy_and_hold"]["sharpe"] == pytest.approx(hold.metrics["sharpe"], rel=1e-9)
        seen.add((row["params"]["lr"], row["seed"]))
    assert seen == {(1e-3, 0), (1e-3, 1), (3e-3, 0), (3e-3, 1)}
    sharpes = [r["test"]["sharpe"] for r in result["trials"]]
    assert sharpes == sorted(sharpes, reverse=True)
    for c in result["configurations"]:
        mine = [r["test"]["sharpe"] for r in result["trials"] if r["params"] == c["params"]]
        assert c["test_sharpe"] == pytest.approx(sum(mine) / 2, rel=1e-9)
    assert result["statistics"]["n_trials"] == 4
    pytest.importorskip("plotly", reason="the report needs plotly: pip install 'himari[report]'")
    page = (out / "report.html").read_text(encoding="utf-8")
    best, third = result["trials"][:2], result["trials"][2]
    assert result["report"] == "report.html" and "buy-and-hold" in page
    assert all(f"#{r['rank']} {r['trial']}" in page for r in best) and f"#3 {third['trial']}" not in page


def test_a_trial_that_raises_is_reported_and_the_others_finish(ray_session: None, small_prepared: Path,
                                                               tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    # through the command, with --json: stdout is the JSON alone (Tune's prints withheld), exit code 0
    res = CliRunner().invoke(app, ["sweep", "baseline-mlp", "--data", str(small_prepared), "--method", "sweep-fail",
                                   "--grid", "fail=false,true", "--top", "0", "--json", "--out", str(tmp_path / "sw"),
                                   *(a for s in TINY for a in ("--set", s))])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert "sweeping baseline-mlp: 2 trials" in res.stderr and "failed: RuntimeError: boom" in res.stderr
    by_fail = {r["params"]["fail"]: r for r in result["trials"]}
    assert by_fail[False]["status"] == "finished" and "test" in by_fail[False]
    assert by_fail[True]["status"] == "failed" and "boom: this trial was set to fail" in by_fail[True]["error"]
    assert result["counts"] == {"finished": 1, "stopped": 0, "failed": 1}
    assert (tmp_path / "sw" / "sweep.json").exists()


def test_an_error_in_a_ray_task_is_the_error_itself(ray_session: None, small_prepared: Path, tmp_path: Path) -> None:
    from himari.errors import DataError

    sweep = build_sweep(plugins=get_plugins(), model="baseline-mlp", data=str(small_prepared), sets=TINY)
    with pytest.raises(DataError, match="not a himari run directory") as caught:
        tune_run.report_targets([(str(tmp_path / "nothing"), "#1")], sweep)
    assert type(caught.value) is DataError and "ray::" not in str(caught.value) and "\x1b" not in str(caught.value)
    assert str(tmp_path / "nothing") in str(caught.value)


def test_a_sweep_that_cannot_start_leaves_nothing_behind(ray_session: None, small_prepared: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "new" / "sw"
    with pytest.raises(ConfigError, match="--cpus-per-trial 3: the Ray cluster has 2 CPU"):
        _sweep(small_prepared, out, grid=["lr=1e-3,3e-3"], options={"cpus_per_trial": 3})
    assert not (tmp_path / "new").exists()


def test_sigterm_stops_a_sweep_as_ctrl_c_does(ray_session: None, small_prepared: Path, tmp_path: Path) -> None:
    """SIGTERM (a scheduler, timeout) ends the sweep with the line to resume it and exit 143 (Ray's
    own handler would dump a native stack and exit 1)."""
    out = tmp_path / "sw"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", HOLD: "1"}  # the one trial waits
    cmd = [sys.executable, "-m", "himari", "sweep", "baseline-mlp", "--data", str(small_prepared), "--method",
           "sweep-fail", "--set", "sweep-fail.hold=true", "--top", "0", "--out", str(out),
           *(a for s in TINY for a in ("--set", s))]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "tune" / "trial-00000").exists():  # the trial has started
            assert time.monotonic() < deadline and proc.poll() is None, "the sweep ended or never started a trial"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert f"continue the sweep with: himari sweep --resume {out}" in err and "SIGTERM received" not in err
    assert (out / "sweep.yaml").exists() and not (out / "sweep.json").exists()


def test_a_killed_sweep_resumes_without_training_its_finished_trials_again(ray_session: None, small_prepared: Path,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "sw"
    # in the killed command the trial with hold=true waits, so the kill finds one trial finished and
    # one not; the resumed sweep (this process's Ray, without the variable) lets it train
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", HOLD: "1"}
    cmd = [sys.executable, "-m", "himari", "sweep", "baseline-mlp", "--data", str(small_prepared), "--method",
           "sweep-fail", "--grid", "hold=false,true", "--top", "0", "--out", str(out),
           *(a for s in TINY for a in ("--set", s))]
    log = tmp_path / "sweep.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if list(out.glob("scores/trial-*.json")):
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the command and the local Ray it started
            proc.wait(timeout=60)
    finished = {p.parent.name: {f.name: f.stat().st_mtime_ns for f in p.parent.rglob("*") if f.is_file()}
                for p in out.glob("runs/*/" + rundir.SUMMARY)}
    assert finished, f"no trial finished before the kill: {log.read_text(errors='replace')[-2000:]}"
    assert list(finished) == ["trial-00000"]
    result = run_sweep(None, out, plugins=get_plugins(), console=Console(file=io.StringIO()))
    assert result["counts"] == {"finished": 2, "stopped": 0, "failed": 0}
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["trial-00000", "trial-00001"]
    for name, files in finished.items():  # untouched: not trained again
        run = out / "runs" / name
        assert {f.name: f.stat().st_mtime_ns for f in run.rglob("*") if f.is_file() and f.name in files} == files
    assert {r["trial"]: r["params"]["hold"] for r in result["trials"]} == {"trial-00000": False,
                                                                           "trial-00001": True}
