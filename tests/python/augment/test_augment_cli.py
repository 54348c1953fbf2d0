"""``himari data augment``: listed plugins, one command for set + quality report, bad input
refused with one line and exit code 2, and nothing left behind by a failed command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from himari.cli import app

pytest.importorskip("torch")
pytest.importorskip("sklearn")

TIMEGAN = ["--set", "window=8", "--set", "hidden=4", "--set", "layers=2", "--set", "iterations=4",
           "--set", "batch_size=16"]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_generators_are_listed_with_their_seed_codes() -> None:
    r = invoke("plugins", "list", "--kind", "generator", "--json")
    assert r.exit_code == 0, r.output
    rows = {p["name"]: p for p in json.loads(r.output)["plugins"]}
    assert rows["timegan"]["code"] == "A4"
    assert rows["tab-ddpm"]["code"] == "A5"
    assert rows["block-bootstrap"]["code"] is None


def test_one_command_writes_the_set_and_its_quality_report(small_prepared: Path, tmp_path: Path) -> None:
    from himari.data import PreparedData

    out = tmp_path / "synth"
    r = invoke("data", "augment", small_prepared, "--method", "timegan", "--windows", 30, "--out", out, *TIMEGAN,
               "--report", "--report-steps", 5)
    assert r.exit_code == 0, r.output
    assert "Synthetic set quality: timegan" in r.output and "block-bootstrap" in r.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["sets"]) == {"real", "timegan", "block-bootstrap"}
    # the real column is the train split's ret_1, measured independently here
    data = PreparedData(small_prepared)
    rows = np.concatenate([np.arange(a, b) for a, b in data.split("train")])
    r1 = np.asarray(data.features)[rows, list(data.feature_names).index("ret_1")].astype(np.float64)
    d = r1 - r1.mean()
    kurt = np.mean(d**4) / np.mean(d**2) ** 2 - 3
    lag1 = np.sum(d[:-1] * d[1:]) / np.sum(d * d)
    real = report["sets"]["real"]["stylised"]
    assert real["kurtosis"] == pytest.approx(kurt, rel=1e-5)
    assert real["acf_returns"][0] == pytest.approx(lag1, rel=1e-5)
    for name in ("timegan", "block-bootstrap"):
        assert 0 <= report["sets"][name]["discriminative"] <= 0.5
        assert report["sets"][name]["predictive"] > 0
    # the set's own stylised facts are those of its ret_1 channel
    w = np.load(out / "windows.npy")
    meta = json.loads((out / "metadata.json").read_text())
    mine = w[:, :, meta["channels"].index("ret_1")].reshape(-1).astype(np.float64)
    dm = mine - mine.mean()
    assert report["sets"]["timegan"]["stylised"]["kurtosis"] == pytest.approx(
        np.mean(dm**4) / np.mean(dm**2) ** 2 - 3, rel=1e-4)
    assert meta["generator"]["name"] == "timegan" and meta["seed"] == 0
    assert meta["source"]["train_ranges"] == [list(x) for x in data.split("train")]


def test_tab_ddpm_report_shows_the_asked_and_generated_class_mix(small_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "tail"
    r = invoke("data", "augment", small_prepared, "--method", "tab-ddpm", "--condition", "tail", "--rows", 30,
               "--out", out, "--set", "timesteps=10", "--set", "layers=[16]", "--set", "dim_t=8", "--set", "steps=4",
               "--set", "batch_size=64", "--set", "crash_bars=24", "--report", "--report-steps", 5)
    assert r.exit_code == 0, r.output
    assert "Condition classes" in r.output
    cls = json.loads((out / "report.json").read_text())["classes"]
    third = pytest.approx(1 / 3)
    assert cls["asked"] == {"normal": third, "crash": third, "flash-crash": third}
    assert cls["generated_for"] == {"normal": third, "crash": third, "flash-crash": third}
    # the train column is the share of the whole train split the rules class as each: the rules set
    # their thresholds at the train quantiles (flash crash 0.005, crash 0.02), so about 15 and 60 of
    # the ~3,000 train rows, where the 30 windows compared would show 0 or 1/30
    assert sum(cls["train"].values()) == pytest.approx(1.0)
    assert cls["train"]["flash-crash"] == pytest.approx(0.005, abs=0.002)
    assert 0.018 <= cls["train"]["flash-crash"] + cls["train"]["crash"] <= 0.027


def _assert_refused(r: Any, *words: str) -> None:
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.strip().splitlines() if x.strip()]
    assert "Traceback" not in r.output
    text = " ".join(lines)
    for w in words:
        assert w in text, r.output


@pytest.mark.parametrize(("args", "words"), [
    (["--method", "timegan", "--windows", "5", "--rows", "5"], ["--windows", "--rows"]),
    (["--method", "timegan"], ["--windows", "--rows"]),
    (["--method", "timegan", "--windows", "0"], ["--windows", ">= 1"]),
    (["--method", "timegan", "--windows", "5", "--features", "ret_1,nope"], ["--features", "nope"]),
    (["--method", "no-such", "--windows", "5"], ["no-such"]),
    (["--method", "timegan", "--windows", "5", "--set", "nope=1"], ["nope"]),
    (["--method", "timegan", "--windows", "5", "--set", "window=1"], ["window"]),
    (["--method", "tab-ddpm", "--rows", "5", "--set", "mix=crash=-1"], ["mix"]),
    (["--method", "block-bootstrap", "--windows", "5", "--device", "cuda"], ["--device", "CPU only"]),
    (["--method", "timegan", "--windows", "5", "--device", "tpu"], ["--device tpu", "auto, cpu, cuda or cuda:N"]),
    (["--method", "timegan", "--windows", "5", "--device", "cuda:x"], ["--device cuda:x", "cuda:N"]),
    (["--method", "block-bootstrap", "--windows", "5", "--device", "tpu"], ["--device tpu", "auto, cpu"]),
    (["--method", "timegan", "--windows", "5", "--set", "window=100000"], ["timegan", "consecutive bars"]),
    (["--method", "tab-ddpm", "--rows", "5", "--set", "n_quantiles=1"], ["n_quantiles", ">= 2"]),
    (["--method", "tab-ddpm", "--rows", "5", "--mix", "crash=1,normal=1,crash=0"], ["mix", "crash is given twice"]),
    (["--method", "timegan", "--windows", "5", "--features", ""], ["--features", "at least one"]),
    # a set no machine can hold: refused before the fit, not killed by the system after it
    (["--method", "block-bootstrap", "--rows", str(10**15)], ["--rows 1,000,000,000,000,000", "GB of memory",
                                                              "available"]),
])
def test_bad_input_is_one_line_exit_2_and_no_output(args: list[str], words: list[str], small_prepared: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "synth"
    r = invoke("data", "augment", small_prepared, "--out", out, *args)
    _assert_refused(r, *words)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left either


def test_an_existing_set_needs_force_and_other_directories_are_never_replaced(small_prepared: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "synth"
    base = ["data", "augment", small_prepared, "--method", "block-bootstrap", "--windows", 5, "--out", out]
    assert invoke(*base).exit_code == 0
    first = (out / "windows.npy").read_bytes()
    _assert_refused(invoke(*base, "--seed", 1), "--force")
    assert (out / "windows.npy").read_bytes() == first
    assert invoke(*base, "--seed", 1, "--force").exit_code == 0
    assert (out / "windows.npy").read_bytes() != first
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    _assert_refused(invoke(*base[:-1], other, "--force"), "not empty")
    assert (other / "mine.txt").read_text() == "keep"


@dataclass(frozen=True)
class _NanConfig:
    window: int = 4


class _NanGenerator:
    """Fits, then generates NaN: the command must fail after the fit and write nothing."""

    def __init__(self, config: _NanConfig) -> None:
        self.window = config.window

    def fit(self, data: Any) -> None:
        self.k = data.features.shape[1]

    def sample(self, n: int, *, seed: int = 0) -> Any:
        from himari.plugin.api import SyntheticSample

        return SyntheticSample(windows=np.full((n, self.window, self.k), np.nan, np.float32),
                               labels=np.zeros((n, self.window), np.int8))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class _NanPlugin:
    from himari.plugin.api import hookimpl

    @staticmethod
    @hookimpl
    def himari_register_generators(registry: Any) -> None:
        from himari.plugin.api import GeneratorSpec

        registry.add(GeneratorSpec(name="nan-gen", summary="generates NaN", config=_NanConfig,
                                   factory=_NanGenerator))


def test_a_generator_failing_after_its_fit_leaves_no_directory(small_prepared: Path, tmp_path: Path) -> None:
    from himari.plugin.manager import get_plugins

    plugins = get_plugins()
    plugins.register(_NanPlugin(), name="nan-gen-plugin")
    try:
        out = tmp_path / "synth"
        r = invoke("data", "augment", small_prepared, "--method", "nan-gen", "--windows", 5, "--out", out)
        _assert_refused(r, "nan-gen", "NaN")
        assert list(tmp_path.iterdir()) == []
    finally:
        plugins.pm.unregister(name="nan-gen-plugin")
        plugins._registries.clear()


def test_set_files_get_the_users_umask(small_prepared: Path, tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        out = tmp_path / "synth"
        assert invoke("data", "augment", small_prepared, "--method", "block-bootstrap", "--windows", 5,
                      "--out", out).exit_code == 0
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert oct((out / "metadata.json").stat().st_mode & 0o777) == oct(0o644)


TAB_DDPM_TINY = {"timesteps": 10, "layers": [16], "dim_t": 8, "steps": 4, "batch_size": 64, "crash_bars": 24,
                 "n_quantiles": 50}


def test_json_output_is_the_json_alone_with_the_fit_phases_on_stderr(small_prepared: Path, tmp_path: Path) -> None:
    """`--json` is for a pipe: the generator's phase lines ("Tab-DDPM training ...") go to
    stderr, so stdout parses as the set's metadata."""
    r = invoke("data", "augment", small_prepared, "--method", "tab-ddpm", "--rows", 24, "--out", tmp_path / "s",
               "--json", *(f"--set={k}={json.dumps(v)}" for k, v in TAB_DDPM_TINY.items()))
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert meta["generator"]["name"] == "tab-ddpm" and meta["path"] == str((tmp_path / "s").resolve())
    assert "Tab-DDPM" in r.stderr


def test_a_set_item_wins_over_the_same_setting_given_as_an_option(small_prepared: Path, tmp_path: Path) -> None:
    """The precedence of himari train: --set KEY=VALUE over --KEY VALUE, whichever comes first."""
    for order in (["--block", "3", "--set", "block=5"], ["--set", "block=5", "--block", "3"]):
        out = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
        r = invoke("data", "augment", small_prepared, "--method", "block-bootstrap", "--windows", 4, "--out", out,
                   "--set", "window=8", *order)
        assert r.exit_code == 0, r.output
        assert json.loads((out / "metadata.json").read_text())["generator"]["config"]["block"] == 5


def test_messages_name_a_directory_and_a_file_for_what_they_are(small_prepared: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in small_prepared.iterdir())
    r = invoke("data", "augment", small_prepared, "--method", "block-bootstrap", "--windows", 2, "--out", small_prepared)
    _assert_refused(r, "is the input directory", "would replace the directory")
    assert sorted(p.name for p in small_prepared.iterdir()) == before
    bars = tmp_path / "bars.parquet"
    bars.write_bytes(b"PAR1")
    r = invoke("data", "augment", bars, "--method", "block-bootstrap", "--windows", 2, "--out", tmp_path / "s")
    _assert_refused(r, "not a prepared data directory (a file)")
