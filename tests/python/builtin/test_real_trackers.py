"""The tensorboard and wandb trackers for real: a tiny training run writes TensorBoard event
files and an offline W&B run, and each reads back (with TensorBoard's ``EventAccumulator`` and
W&B's own ``wandb leet inspect --json``) with exactly the scalars and steps of the run's
``metrics.jsonl``; a run interrupted mid-epoch and resumed has no duplicated step in TensorBoard
and continues the same W&B run offline."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from himari.plugin import TrainingMethodSpec, hookimpl  # noqa: E402


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,400 synthetic bars prepared: about 660 train rows, 10 steps per epoch at batch 64."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = tmp_path_factory.mktemp("prepared") / "tiny"
    prepare(load_synthetic(SynthConfig(bars=2400, seed=5)), out, PrepareConfig())
    return out


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """W&B with no network and nothing outside tmp_path: offline, silent, its config, cache and
    data directories under tmp_path, no API key, no error reporting, no console capture."""
    pytest.importorskip("wandb")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true",
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
           "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_ARTIFACT_DIR": str(tmp_path / "wandb-artifacts"),
           "NETRC": str(tmp_path / "no-netrc")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return env


@dataclass(frozen=True)
class CrashConfig:
    at_step: int = 0
    """Raise at this step, once per process (0: never)."""


class Crash:
    crashed = False

    def __init__(self, config: CrashConfig) -> None:
        self.at = config.at_step

    def loss_terms(self, model: Any, batch: Any, ctx: Any) -> dict[str, Any]:
        if self.at and ctx.step + 1 == self.at and not Crash.crashed:
            Crash.crashed = True
            raise KeyboardInterrupt("interrupted for the test")
        return {}


class CrashPlugin:
    @hookimpl
    def himari_register_training_methods(self, registry: Any) -> None:
        registry.add(TrainingMethodSpec(name="crash-once", summary="interrupts a run once (tests)",
                                        config=CrashConfig, factory=Crash))


def _train(data: Path, run_dir: Path, trackers: str = "", crash_at: int = 0, resume: bool = False) -> Any:
    from rich.console import Console

    from himari.plugin.manager import build_plugins
    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    plugins = build_plugins()
    plugins.register(CrashPlugin(), name="crash-plugin")
    console = Console(file=io.StringIO(), width=120)
    if resume:
        return Trainer.resume(run_dir, plugins=plugins, console=console).fit()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": str(data),
                                                       "trackers": trackers, "train.epochs": 3,
                                                       "train.batch_size": 64,
                                                       "methods": "crash-once" if crash_at else None},
                           sets=["recipe=none", "train.log_every=3", "train.progress=false", "train.patience=0",
                                 *([f"crash-once.at_step={crash_at}"] if crash_at else [])])
    return Trainer(run, plugins=plugins, run_dir=run_dir, console=console).fit()


def _jsonl(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected_tensorboard(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Every logged value as TensorBoard keeps it: float32, in logging order."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in records:
        for k, v in r.items():
            if k != "step":
                out[k].append((r["step"], float(np.float32(np.nan if v is None else v))))
    return dict(out)


def _wandb_runs(run_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Each offline W&B run directory, oldest first: its run id and history rows by step, read by
    W&B's own reader of the .wandb log (``wandb leet inspect --json``)."""
    runs = []
    for d in sorted((run_dir / "wandb").glob("offline-run-*")):
        (log,) = d.glob("run-*.wandb")
        out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)],
                             capture_output=True, text=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                             timeout=60)
        if out.returncode != 0 and "No such command" in out.stderr:
            pytest.skip("this wandb has no 'wandb leet inspect' reader of offline runs")
        assert out.returncode == 0, out.stderr
        records = []
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        (run,) = [r["run"] for r in records if r["type"] == "run"]
        rows = {r["history"]["item"]["_step"]: r["history"]["item"] for r in records if r["type"] == "history"}
        (exit_record,) = [r["exit"] for r in records if r["type"] == "exit"]
        runs.append({"id": run["run_id"], "rows": rows, "exit_code": int(exit_record.get("exit_code", 0))})
    return runs


def _expected_wandb(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """W&B keeps one history row per step: the records of one step merged."""
    rows: dict[int, dict[str, Any]] = defaultdict(dict)
    for r in records:
        rows[r["step"]].update({k: v for k, v in r.items() if k != "step"})
    return dict(rows)


def _row_matches(row: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(row.get(k) == v for k, v in expected.items())


def test_tensorboard_scalars_equal_metrics_jsonl(tiny_prepared: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    _train(tiny_prepared, run_dir, "tensorboard")
    records = _jsonl(run_dir)
    assert len({r["step"] for r in records}) >= 6 and any("validation/sharpe" in r for r in records)
    assert _tensorboard_scalars(run_dir) == _expected_tensorboard(records)


def test_wandb_offline_history_equals_metrics_jsonl(tiny_prepared: Path, tmp_path: Path, wandb_offline) -> None:
    run_dir = tmp_path / "run"
    summary = _train(tiny_prepared, run_dir, "wandb")
    records = _jsonl(run_dir)
    (run,) = _wandb_runs(run_dir, wandb_offline)
    expected = _expected_wandb(records)
    assert sorted(run["rows"]) == sorted(expected)
    for step, values in expected.items():
        assert _row_matches(run["rows"][step], values), step
    best = max(r["validation/sharpe"] for r in records if "validation/sharpe" in r)
    assert best == summary["best_validation_sharpe"]
    assert run["id"] == (run_dir / "wandb" / "himari-run-id").read_text().strip() and run["exit_code"] == 0


def test_resumed_run_keeps_one_value_per_step_and_the_same_wandb_run(tiny_prepared: Path, tmp_path: Path,
                                                                      wandb_offline) -> None:
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    Crash.crashed = False
    # 10 steps per epoch, checkpoints at epoch ends: interrupted at step 17, it resumes from step 10
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_prepared, run_dir, "tensorboard,wandb", crash_at=17)
    before = _jsonl(run_dir)
    assert max(r["step"] for r in before) == 15  # logged past the checkpoint (step 10) before the interruption
    summary = _train(tiny_prepared, run_dir, resume=True)
    assert summary["resumed_from_step"] == 10
    records = _jsonl(run_dir)

    scalars = _tensorboard_scalars(run_dir)
    assert scalars == _expected_tensorboard(records)
    shared = {s for s in (r["step"] for r in records) if sum(r["step"] == s for r in records) > 1}
    for tag, points in scalars.items():  # a step twice only where two records share it (a train log
        steps = [s for s, _ in points]   # at an epoch's last step), never from the interrupted run
        assert {s for s in steps if steps.count(s) > 1} <= shared, tag
    assert [s for s, _ in scalars["train/grad_norm"]] == list(range(3, 31, 3))

    first, resumed = _wandb_runs(run_dir, wandb_offline)
    assert first["id"] == resumed["id"]
    assert (first["exit_code"], resumed["exit_code"]) == (1, 0)  # the interrupted part is marked failed
    expected = _expected_wandb(records)
    assert sorted(resumed["rows"]) == [s for s in sorted(expected) if s > 10]
    for step, row in [*first["rows"].items(), *resumed["rows"].items()]:
        assert _row_matches(row, expected[step]), step
    assert {s for s in first["rows"] if s <= 10} | set(resumed["rows"]) == set(expected)


def test_wandb_mode_auto_leaves_a_set_wandb_mode_in_charge(tmp_path: Path, monkeypatch) -> None:
    """With a stand-in wandb module: an API key does not override WANDB_MODE=offline, and a
    resumed run asks for the kept run id."""
    import types

    from himari.plugin.manager import build_plugins

    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(kw) or types.SimpleNamespace(log=lambda *a, **k: None, summary={},
                                                                          finish=lambda **k: None)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "k")
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = build_plugins().trackers().get("wandb")
    spec.factory(spec.config()).start(tmp_path, {}, None)
    spec.factory(spec.config()).start(tmp_path, {}, {"records": 3, "step": 7})
    monkeypatch.delenv("WANDB_MODE")
    spec.factory(spec.config(mode="offline")).start(tmp_path / "other", {}, None)
    assert [c["mode"] for c in calls] == [None, None, "offline"]
    kept = (tmp_path / "wandb" / "himari-run-id").read_text().strip()
    assert calls[0]["id"] == calls[1]["id"] == kept and calls[2]["id"] != kept
    assert all(c["resume"] == "allow" for c in calls)
