"""Where ``himari evaluate`` scores its runs: each on the device it trained on when that device is
here (a large model is slow to act on the CPU), else on the CPU, with the same result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app

torch = pytest.importorskip("torch")

runner = CliRunner()
ARGS = ["--walk-forward", "2", "--seeds", "1", "--epochs", "1", "--batch-size", "128", "--resamples", "200",
        "--set", "train.max_steps_per_epoch=4"]


def _run_dir(tmp_path: Path, summary: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return run


def _gpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize(("trained", "gpus", "expected"), [
    ("cpu", 1, "cpu"),          # a CPU run stays on the CPU, GPU or not
    ("cuda", 0, "cpu"),         # trained on a GPU, scored where there is none
    ("cuda", 1, "cuda"),
    ("cuda:0", 1, "cuda:0"),
    ("cuda:1", 2, "cuda:1"),
    ("cuda:1", 1, "cuda"),      # its card is not here: this machine's first
])
def test_a_run_is_scored_where_it_trained_when_that_device_is_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  trained: str, gpus: int, expected: str) -> None:
    from himari.training.device import scoring_device

    _gpus(monkeypatch, gpus)
    assert scoring_device(_run_dir(tmp_path, {"device": trained})) == expected


@pytest.mark.parametrize("summary", ["{not json", "[1, 2]", json.dumps({"device": 3}), json.dumps({}),
                                     json.dumps({"device": "cuda:x"})])
def test_a_missing_or_damaged_summary_scores_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        summary: str) -> None:
    from himari.training.device import scoring_device

    _gpus(monkeypatch, 1)
    assert scoring_device(_run_dir(tmp_path, summary)) == "cpu"
    assert scoring_device(tmp_path / "no-such-run") == "cpu"


def test_evaluate_loads_every_run_on_its_scoring_device(small_prepared: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation asks ``scoring_device`` for each run and loads it there; a run whose summary
    says it trained on a GPU is scored on this machine's CPU with the same result."""
    from himari.training import assemble, device

    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out), *ARGS])
    assert res.exit_code == 0, res.output
    before = json.loads((out / "evaluation.json").read_text())["walk_forward"]["seeds"]["0"]["sharpe"]

    runs = sorted(p.parent for p in out.glob("runs/*/seed-0/summary.json"))
    assert len(runs) == 2
    for run in runs:  # as if trained on a GPU
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "device": "cuda"}))
    asked, loaded = [], []
    real_scoring_device, real_load = device.scoring_device, assemble.load_trained
    monkeypatch.setattr(device, "scoring_device", lambda d: asked.append(Path(d)) or real_scoring_device(d))
    monkeypatch.setattr(assemble, "load_trained",
                        lambda d, **kw: loaded.append((Path(d), kw.get("device"))) or real_load(d, **kw))
    (out / "evaluation.json").unlink()
    res = runner.invoke(app, ["evaluate", "--resume", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(asked) == runs
    assert sorted(loaded) == [(r, "cpu") for r in runs]  # no GPU here: the CPU
    after = json.loads((out / "evaluation.json").read_text())
    assert after["walk_forward"]["seeds"]["0"]["sharpe"] == before
    _assert_folds_scored_as_the_runs_scored_themselves(after)


def _assert_folds_scored_as_the_runs_scored_themselves(evaluation: dict) -> None:
    for fold in evaluation["folds"]:
        run = fold["runs"]["0"]
        own = json.loads((Path(run["run_dir"]) / "summary.json").read_text())["test"]["model"]
        assert run["metrics"]["sharpe"] == pytest.approx(own["sharpe"], rel=1e-9, abs=1e-12)
        assert run["metrics"]["n_trades"] == own["n_trades"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_trained_on_a_gpu_are_scored_on_it_as_they_scored_themselves(small_prepared: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU machine each run acts on the GPU, so the evaluation's score of a fold equals the
    score the run gave its own test block at the end of training (made on the same GPU)."""
    from himari.training import assemble

    loaded = []
    real_load = assemble.load_trained
    monkeypatch.setattr(assemble, "load_trained",
                        lambda d, **kw: loaded.append(kw.get("device")) or real_load(d, **kw))
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", "baseline-mlp", "--data", str(small_prepared), "--out", str(out), *ARGS,
                              "--set", "train.device=cuda"])
    assert res.exit_code == 0, res.output
    assert loaded and set(loaded) == {"cuda"}
    _assert_folds_scored_as_the_runs_scored_themselves(json.loads((out / "evaluation.json").read_text()))


def test_report_and_backtest_load_a_run_where_its_evaluation_scores_it(small_prepared: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``himari report RUN`` and ``himari backtest RUN`` ask ``scoring_device`` too, so on a GPU
    machine they score a GPU run as its evaluation did (here the answer is faked and the load done
    on the CPU: this machine may have no GPU)."""
    from himari.training import assemble, device
    from himari.training.report_runs import score_run

    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "baseline-mlp", "--data", str(small_prepared), "--run-dir", str(run),
                              "--epochs", "1", "--set", "train.max_steps_per_epoch=2", "--set", "progress=false"])
    assert res.exit_code == 0, res.output
    loaded = []
    real_load = assemble.load_trained
    monkeypatch.setattr(device, "scoring_device", lambda d: "cuda:7")
    monkeypatch.setattr(assemble, "load_trained",
                        lambda d, **kw: loaded.append(kw.get("device")) or real_load(d, **{**kw, "device": "cpu"}))
    score_run(run)
    res = runner.invoke(app, ["backtest", str(run), "--out", str(tmp_path / "bt.html")])
    assert res.exit_code == 0, res.output
    assert loaded == ["cuda:7", "cuda:7"]
