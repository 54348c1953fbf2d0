"""Bad options of ``himari backtest`` and ``himari bench`` are refused at once, naming the option
(exit 2): before NumPy reads a negative seed, and before a benchmark runs only to find that its
``--json`` path cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from himari.cli import app

runner = CliRunner()


def test_backtest_refuses_a_negative_seed(small_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt.json"
    res = runner.invoke(app, ["backtest", "random", "--seed", "-1", "--data", str(small_prepared), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "--seed" in res.output and "ValueError" not in res.output
    assert not out.exists()


SEEDED_COMMANDS = [["demo"], ["backtest", "random"], ["data", "synth", "--bars", "300", "--out", "s.parquet"],
                   ["data", "augment", "prepared", "--method", "block-bootstrap", "--windows", "2", "--out", "set"],
                   ["robustness", "run"]]


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
@pytest.mark.parametrize("command", SEEDED_COMMANDS, ids=[" ".join(c[:2]) for c in SEEDED_COMMANDS])
def test_every_seed_option_takes_the_range_of_a_runs_seed(command: list[str], seed: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """[0, 2**63) everywhere, checked by the option parser before anything runs: robustness
    took -1 (and 2**64 - 1, the same torch seed), a seed of 2**64 failed after the clean pass."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [*command, "--seed", seed])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--seed'" in res.output, res.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_bench_refuses_an_unwritable_json_path_before_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              where: str) -> None:
    import himari.evaluation.bench

    def run_bench(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(himari.evaluation.bench, "run_bench", run_bench)
    (tmp_path / "a-file").write_text("x")
    path = tmp_path if where == "a directory" else tmp_path / "a-file" / "bench.json"
    res = runner.invoke(app, ["bench", "ekf", "--quick", "--json", str(path)])
    assert res.exit_code == 2, res.output
    assert f"--json {path}: " in res.output and "the benchmark ran" not in res.output
    assert (tmp_path / "a-file").read_text() == "x"


def _himari_directories(root: Path, prepared: Path, run: Path) -> None:
    """``root/prepared`` and ``root/run`` (copies) and ``root/evaluation`` (its JSON alone)."""
    import shutil

    for name, source in (("prepared", prepared), ("run", run)):
        shutil.copytree(source, root / name)
    (root / "evaluation").mkdir()
    (root / "evaluation" / "evaluation.json").write_text('{"format": "himari-evaluation"}')


@pytest.mark.parametrize("victim", ["prepared/metadata.json", "run/config.yaml", "evaluation/evaluation.json"])
def test_bench_never_writes_over_a_file_of_a_himari_directory(victim: str, small_prepared: Path, trained_run: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark's JSON written over a data set's metadata.json left it unreadable; a new file
    beside them is still fine."""
    import himari.evaluation.bench

    def run_bench(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark ran")

    monkeypatch.setattr(himari.evaluation.bench, "run_bench", run_bench)
    _himari_directories(tmp_path, small_prepared, trained_run)
    path = tmp_path / victim
    before = path.read_bytes()
    res = runner.invoke(app, ["bench", "ekf", "--quick", "--json", str(path)])
    assert res.exit_code == 2, res.output
    assert "would replace a file of the" in " ".join(res.output.split()) and "the benchmark ran" not in res.output
    assert path.read_bytes() == before


@pytest.mark.parametrize("victim", ["run/config.yaml", "run/checkpoints/best.pt", "evaluation/evaluation.json",
                                    "prepared/metadata.json", "bars.parquet"])
def test_backtest_never_writes_its_json_over_what_it_reads_or_a_himari_file(
        victim: str, small_prepared: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out`` over a run's config or checkpoint, an evaluation's JSON, a data set's metadata or
    the bars being scored replaced them with the backtest's JSON (exit 0), leaving each unreadable."""
    import himari.training.leaderboard
    from himari.data.synthetic import SynthConfig, synthesize

    def scored(*args: object, **kwargs: object) -> None:
        raise AssertionError("the backtest ran")

    monkeypatch.setattr(himari.training.leaderboard, "backtest", scored)
    _himari_directories(tmp_path, small_prepared, trained_run)
    synthesize(SynthConfig(bars=300, seed=1)).to_parquet(tmp_path / "bars.parquet")
    path = tmp_path / victim
    before = path.read_bytes()
    target, data = ((["buy-and-hold", "--split", "all"], path) if victim == "bars.parquet" else
                    ([str(tmp_path / "run")], small_prepared))
    res = runner.invoke(app, ["backtest", *target, "--data", str(data), "--out", str(path)])
    assert res.exit_code == 2, res.output
    said = " ".join(res.output.split())
    assert ("would replace a file of the" in said or "is the input file" in said) and "the backtest ran" not in said
    assert path.read_bytes() == before



def test_a_run_on_its_own_synthetic_data_is_not_said_to_score_on_the_built_in_market(tmp_path: Path) -> None:
    """A run trained on a synthetic bars file of the user's was scored "on the built-in market"."""
    bars, prepared, run = tmp_path / "s.parquet", tmp_path / "p", tmp_path / "run"
    for args in (["data", "synth", "--bars", "6000", "--seed", "7", "--out", str(bars)],
                 ["data", "prepare", str(bars), "--out", str(prepared)],
                 ["train", "baseline-mlp", "--data", str(prepared), "--epochs", "1", "--batch-size", "128",
                  "--set", "train.max_steps_per_epoch=4", "--run-dir", str(run)]):
        assert runner.invoke(app, args).exit_code == 0, args
    res = runner.invoke(app, ["backtest", str(run), "--out", str(tmp_path / "bt.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "no --data: scoring on the runs' data, a synthetic market (6,000 bars, seed 7)" in said, said
    assert "built-in" not in said
