"""CGDT's long phases show progress: the critic pre-training and the sequential evaluation are
reported through ``himari.progress`` (a bar that advances on a terminal, start and end lines
with the duration in a log), in the order they run."""

from __future__ import annotations

import io
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from himari.progress import ConsoleReporter, duration_text, phase, progress_bar, reporting  # noqa: E402

TINY = ["cgdt.context_length=8", "cgdt.d_model=32", "cgdt.n_layers=2", "cgdt.n_heads=2", "cgdt.dropout=0.0",
        "cgdt.critic_dim=16", "cgdt.critic_layers=1", "cgdt.critic_heads=2", "cgdt.critic_steps=30",
        "cgdt.critic_batch_size=16", "cgdt.stride=2", "cgdt.target_quantiles=[0.5, 0.9]"]


class Recorder:
    """A reporter that records each phase's description, total and the units advanced."""

    def __init__(self) -> None:
        self.phases: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, description: str, total: int | None = None):
        rec = {"description": description, "total": total, "done": 0, "finished": False}
        self.phases.append(rec)

        def advance(n: int = 1) -> None:
            rec["done"] += n

        yield advance
        rec["finished"] = True


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,400 synthetic bars prepared (960 rows after the feature warm-up): short validation and
    test ranges keep the sequential rollouts quick."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = tmp_path_factory.mktemp("prepared") / "tiny"
    prepare(load_synthetic(SynthConfig(bars=2400, seed=5)), out, PrepareConfig())
    return out


def _steps(ranges: list[list[int]]) -> int:
    """Decision steps of a sequential rollout: every row of a range but its last."""
    return sum(b - a - 1 for a, b in ranges)


def test_phases_are_silent_without_a_reporter(capsys) -> None:
    with phase("nothing to see", total=3) as advance:
        advance()
    assert capsys.readouterr().out == ""


def test_log_lines_at_start_and_end_with_the_duration() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80)  # not a terminal
    with reporting(ConsoleReporter(console)):
        with phase("cgdt: critic pre-training, 3 steps", total=3) as advance:
            console.print("working")
            advance(3)
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "cgdt: critic pre-training, 3 steps ..."
    assert lines[1] == "working"
    assert re.fullmatch(r"cgdt: critic pre-training, 3 steps: done in \d+\.\ds", lines[2])
    assert [duration_text(x) for x in (5.04, 125, 3725)] == ["5.0s", "2m05s", "1h02m05s"]


def test_terminal_bar_advances_in_the_live_display() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    live = progress_bar(console, True)
    seen = []
    with live, reporting(ConsoleReporter(console, live=live)):
        with phase("critic", total=4) as advance:
            for _ in range(4):
                advance()
                seen.append(live.tasks[-1].completed)
            assert live.tasks[-1].description == "critic" and live.tasks[-1].total == 4
        assert live.tasks == []  # removed when the phase ends
    assert seen == [1, 2, 3, 4]
    assert "critic: done in" in console.file.getvalue()


def test_a_terminal_bar_of_its_own_when_nothing_is_on_screen() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    with reporting(ConsoleReporter(console)):
        with phase("rollout", total=2) as advance:
            drawn = console.file.getvalue()
            advance(2)
    assert "rollout" in drawn and "0/2" in drawn  # the bar was drawn when the phase started
    assert "rollout: done in" in console.file.getvalue()


def test_critic_pretraining_and_rollouts_advance_to_their_totals(tiny_prepared: Path) -> None:
    from himari.plugin.api import EnvConfig, ModelContext, TrainContext
    from himari_builtin.models.cgdt import CGDT, CGDTConfig

    from himari.data import PreparedData

    data = PreparedData(tiny_prepared)
    feats = np.nan_to_num(np.asarray(data.features, dtype=np.float32))
    ctx = TrainContext(data=data, features=feats, labels=np.asarray(data.labels),
                       splits={s: data.split(s) for s in ("train", "validation", "test")}, env=EnvConfig(),
                       model=ModelContext(n_features=feats.shape[1]))
    config = CGDTConfig(context_length=8, d_model=32, n_layers=2, n_heads=2, critic_dim=16, critic_layers=1,
                        critic_heads=2, critic_batch_size=8, stride=4, target_quantiles=(0.5, 0.9))
    model = CGDT(config, ctx.model)
    windows = model.dataset(ctx, "train")
    model.dataset(ctx, "validation")
    rec = Recorder()
    with reporting(rec):
        model.train_critic(windows, 7, seed=0)
        val = [list(r) for r in ctx.splits["validation"]]
        model.act_sequence(feats, data.open, data.close, val, EnvConfig())
        test = [list(r) for r in ctx.splits["test"]]
        model.act_sequence(feats, data.open, data.close, test, EnvConfig())
    assert [(p["description"], p["total"], p["done"], p["finished"]) for p in rec.phases] == [
        ("cgdt: critic pre-training, 7 steps", 7, 7, True),
        (f"cgdt: choosing the target return-to-go on validation (2 targets), {_steps(val):,} steps",
         _steps(val), _steps(val), True),
        (f"cgdt: acting, {_steps(test):,} steps", _steps(test), _steps(test), True),
    ]


def test_tiny_cgdt_training_log_shows_each_phase_in_order(tiny_prepared: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from himari.cli import app

    run_dir = tmp_path / "run"
    args = ["train", "cgdt", "--data", str(tiny_prepared), "--epochs", "1", "--batch-size", "16",
            "--run-dir", str(run_dir), "--set", "max_steps_per_epoch=2", *[x for s in TINY for x in ("--set", s)]]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "120"})  # not a terminal: lines
    assert out.exit_code == 0, out.output
    meta = json.loads((tiny_prepared / "metadata.json").read_text())
    val, test = _steps(meta["splits"]["validation"]), _steps(meta["splits"]["test"])
    critic = "cgdt: critic pre-training, 30 steps"
    choose = f"cgdt: choosing the target return-to-go on validation (2 targets), {val:,} steps"
    act = f"cgdt: acting, {test:,} steps"
    expected = [f"{critic} ...", f"{critic}: done in", f"{choose} ...", f"{choose}: done in", "epoch 1/1",
                f"{choose} ...", f"{choose}: done in", f"{act} ...", f"{act}: done in", "run saved in"]
    lines, last = out.output.splitlines(), -1
    for e in expected:  # each line appears after the previous one
        last = next((i for i, line in enumerate(lines) if i > last and line.startswith(e)), None)
        assert last is not None, f"{e!r} missing or out of order:\n{out.output}"
    # himari backtest reports the rollout too; with --json the phase lines go to stderr
    bt = CliRunner().invoke(app, ["backtest", str(run_dir), "--out", str(tmp_path / "bt.json")],
                            env={"COLUMNS": "120"})
    assert bt.exit_code == 0, bt.output
    bt_lines = bt.output.splitlines()
    assert f"{act} ..." in bt_lines and any(line.startswith(f"{act}: done in") for line in bt_lines)
    js = CliRunner().invoke(app, ["backtest", str(run_dir), "--json", "--out", str(tmp_path / "bt2.json")],
                            env={"COLUMNS": "120"})
    assert js.exit_code == 0 and json.loads(js.stdout)["results"][0]["name"] == str(run_dir)
    assert f"{act} ..." in js.stderr
