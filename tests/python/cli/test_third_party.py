"""A third-party plugin distribution, built and installed for real, is discovered through its
`himari` entry point: listed, trainable and backtestable from the CLI, its command added; and
HIMARI_DISABLE_PLUGINS blocks it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "himari-hello"
version = "0.3.0"
dependencies = []

[project.entry-points.himari]
"himari_hello.model" = "himari_hello.model"
"himari_hello.momentum" = "himari_hello.momentum"
"himari_hello.monitor" = "himari_hello.monitor"

[tool.setuptools]
packages = ["himari_hello"]
"""

MODEL = '''
"""hello-linear: a linear classifier, the smallest possible himari model plugin."""

from dataclasses import dataclass

from himari.plugin.api import ModelSpec, hookimpl


@dataclass(frozen=True)
class HelloConfig:
    bias: bool = True
    """Learn a bias per action."""


class HelloLinear:
    paradigm = "supervised"

    def __init__(self, config, ctx):
        import torch

        self.network = torch.nn.Linear(ctx.n_features, ctx.n_actions, bias=config.bias)

    def dataset(self, ctx, split):
        import torch
        from torch.utils.data import TensorDataset

        from himari.plugin.api import rows_of

        rows = rows_of(ctx.splits[split])
        rows = rows[ctx.labels[rows] >= 0]
        return TensorDataset(torch.from_numpy(ctx.features[rows]), torch.from_numpy(ctx.labels[rows].astype("int64")))

    def loss(self, batch, ctx):
        import torch.nn.functional as F

        return F.cross_entropy(self.network(batch[0]), batch[1]), {}

    def act(self, features, rows):
        import torch

        device = next(self.network.parameters()).device  # the run's device: the Trainer moved the network
        return self.network(torch.from_numpy(features[rows]).to(device)).argmax(-1).cpu().numpy()


@hookimpl
def himari_register_models(registry):
    registry.add(ModelSpec(name="hello-linear", summary="linear classifier from a third-party package",
                           config=HelloConfig, factory=HelloLinear))


@hookimpl
def himari_register_commands(app):
    @app.command("hello")
    def hello() -> None:
        """Say hello from himari-hello."""
        print("hello from himari-hello")
'''

MOMENTUM = '''
"""hello-momentum: the distance of the log close from its exponential moving average, in units
of its train-split standard deviation, appended as one more feature column."""

from dataclasses import dataclass

from himari.plugin.api import PreprocessorSpec, hookimpl


@dataclass(frozen=True)
class MomentumConfig:
    span: int = 48
    """Span of the exponential moving average, in bars."""

    def __post_init__(self):
        if self.span < 1:
            raise ValueError(f"span must be >= 1, got {self.span}")


class Momentum:
    def __init__(self, config):
        self.config = config
        self.scale = None

    def _deviation(self, data):
        """log close minus its EMA, restarted where filter_ranges says (every segment: a gap
        or another symbol; and the train split's first row), so row t uses rows up to t of its
        own range only, and the train rows' values come from train rows alone, as in fit."""
        import numpy as np
        import pandas as pd

        from himari.plugin.api import filter_ranges

        out = np.zeros(len(data.features))
        for a, b in filter_ranges(data):
            log_close = pd.Series(np.log(data.bars.close[a:b]))
            out[a:b] = log_close - log_close.ewm(span=self.config.span, adjust=False).mean()
        return out

    def fit(self, data):                     # data: the train rows only
        import numpy as np

        self.scale = np.array([self._deviation(data).std() or 1.0])

    def transform(self, data):               # data: every row
        import numpy as np

        column = (self._deviation(data) / self.scale[0]).astype(np.float32)
        return np.concatenate([data.features, column[:, None]], axis=1)

    def output_names(self, names):
        return (*names, "momentum")

    def state_dict(self):
        return {"scale": self.scale}         # a NumPy array: saved beside the run's JSON

    def load_state_dict(self, state):
        import numpy as np

        self.scale = np.asarray(state["scale"], dtype=np.float64)


@hookimpl
def himari_register_preprocessors(registry):
    registry.add(PreprocessorSpec(name="hello-momentum", summary="log close minus its EMA, in train-split stds",
                                  config=MomentumConfig, factory=Momentum))
'''

MONITOR = '''
"""hello-monitor: watches training from three hook points and reports what it saw."""

from dataclasses import dataclass

from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class MonitorConfig:
    split: str = "test"
    """Split whose BUY share the final report gives."""

    def __post_init__(self):             # a bad value fails before the run, naming the setting
        if self.split not in ("train", "validation", "test"):
            raise ValueError(f"split must be train, validation or test, got {self.split!r}")


class Monitor:
    def __init__(self, config):
        self.config = config
        self.steps = 0
        self.max_grad_norm = 0.0
        self.parameters = 0

    def model_built(self, model, ctx):       # before the optimiser exists
        self.parameters = sum(p.numel() for p in model.network.parameters())

    def before_optimizer_step(self, model, optimizer, ctx):
        import torch

        grads = [p.grad for p in model.network.parameters() if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        self.steps += 1
        self.max_grad_norm = max(self.max_grad_norm, norm)
        return {"grad_norm_before_clip": norm}   # logged as train/hello-monitor/grad_norm_before_clip

    def after_training(self, policy, ctx):   # the best checkpoint, after the final evaluation
        ranges = ctx.splits[self.config.split]
        actions = policy.actions(ctx.data, ranges)
        return {"parameters": self.parameters, "steps": self.steps, "max_grad_norm": self.max_grad_norm,
                "buy_share": float((actions == 2).mean())}

    def state_dict(self):                    # kept in checkpoints: a resumed run counts on
        return {"steps": self.steps, "max_grad_norm": self.max_grad_norm}

    def load_state_dict(self, state):
        self.steps, self.max_grad_norm = int(state["steps"]), float(state["max_grad_norm"])


@hookimpl
def himari_register_training_methods(registry):
    registry.add(TrainingMethodSpec(name="hello-monitor", summary="gradient norms and a final report",
                                    config=MonitorConfig, factory=Monitor))
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the distribution with pip (no network, no build isolation) into a --target dir."""
    root = tmp_path_factory.mktemp("hello")
    src = root / "src"
    (src / "himari_hello").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "himari_hello" / "__init__.py").write_text('"""himari-hello: an example plugin."""\n')
    (src / "himari_hello" / "model.py").write_text(MODEL)
    (src / "himari_hello" / "momentum.py").write_text(MOMENTUM)
    (src / "himari_hello" / "monitor.py").write_text(MONITOR)
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True, timeout=120)
    assert (target / "himari_hello" / "model.py").exists()
    return target


def himari(site: Path, *args: str, disable: str | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    env.pop("HIMARI_DISABLE_PLUGINS", None)
    if disable:
        env["HIMARI_DISABLE_PLUGINS"] = disable
    return subprocess.run([sys.executable, "-m", "himari", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_listed_with_origin_and_parameters(site) -> None:
    out = himari(site, "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)["plugins"]}
    hello = rows["hello-linear"]
    assert (hello["distribution"], hello["version"], hello["plugin"]) == ("himari-hello", "0.3.0", "himari_hello.model")
    assert hello["parameters"] == {"total": 60 * 3 + 3, "trainable": 183}  # built on the meta device
    assert rows["baseline-mlp"]["distribution"] == "himari"
    table = himari(site, "plugins", "list", "--kind", "model")
    assert "hello-linear" in table.stdout and "himari-hello 0.3.0" in table.stdout
    assert himari(site, "hello").stdout.strip() == "hello from himari-hello"


def test_trainable_and_backtestable_from_the_cli(site, small_prepared, tmp_path) -> None:
    run = tmp_path / "run"
    out = himari(site, "train", "hello-linear", "--data", str(small_prepared), "--epochs", "1",
                 "--batch-size", "64", "--run-dir", str(run))
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "hello-linear" and summary["steps"] > 0
    bt = himari(site, "backtest", str(run), "never-trade", "--out", str(tmp_path / "bt.json"))
    assert bt.returncode == 0, bt.stderr
    assert {r["name"] for r in json.loads((tmp_path / "bt.json").read_text())["results"]} == {str(run), "never-trade"}


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_trainable_on_the_gpu_from_the_cli(site, small_prepared, tmp_path) -> None:
    """The documented example on a GPU: its ``act`` moves the rows to the network's device."""
    run = tmp_path / "run"
    out = himari(site, "train", "hello-linear", "--data", str(small_prepared), "--epochs", "1",
                 "--batch-size", "64", "--device", "cuda", "--run-dir", str(run))
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["steps"] > 0


@pytest.mark.parametrize("token", ["himari-hello", "himari_hello.model", "hello-linear"])
def test_disable_plugins_blocks_it(site, small_prepared, tmp_path, token) -> None:
    out = himari(site, "plugins", "list", "--json", disable=token)
    data = json.loads(out.stdout)
    assert "hello-linear" not in {r["name"] for r in data["plugins"]}
    assert any("hello" in b["plugin"] for b in data["blocked"])
    train = himari(site, "train", "hello-linear", "--data", str(small_prepared), "--run-dir", str(tmp_path / "r"),
                   disable=token)
    assert train.returncode == 2
    assert "hello-linear" in train.stderr and len(train.stderr.strip().splitlines()) == 1


def test_its_preprocessor_and_training_method_are_listed_and_run(site, small_prepared, tmp_path) -> None:
    """A third-party preprocessor (bars, segments, array state) and training method (three hooks
    and a report), installed for real: listed, trained with, resumed state, and backtested."""
    import numpy as np

    out = himari(site, "plugins", "list", "--json")
    rows = {(r["kind"], r["name"]): r for r in json.loads(out.stdout)["plugins"]}
    assert rows[("preprocessor", "hello-momentum")]["distribution"] == "himari-hello"
    assert rows[("training-method", "hello-monitor")]["plugin"] == "himari_hello.monitor"
    run = tmp_path / "run"
    out = himari(site, "train", "hello-linear", "--data", str(small_prepared), "--epochs", "2", "--batch-size", "64",
                 "--preprocess", "zscore,hello-momentum", "--method", "hello-monitor", "--run-dir", str(run),
                 "--set", "train.patience=0")
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run / "summary.json").read_text())
    report = summary["methods"]["hello-monitor"]
    assert report["parameters"] == 61 * 3 + 3  # 60 features + momentum, 3 actions, with biases
    assert report["steps"] == summary["steps"] and report["max_grad_norm"] > 0
    test_actions = summary["test"]["model"]["actions"]
    assert report["buy_share"] == pytest.approx(test_actions["BUY"], abs=1.5 / 900)  # the last row holds
    arrays = np.load(run / "preprocessing.npz")
    assert sorted(arrays) == ["a0", "a1", "a2"]  # zscore mean and std, momentum scale
    metrics = (run / "metrics.jsonl").read_text()
    assert "train/hello-monitor/grad_norm_before_clip" in metrics
    bt = himari(site, "backtest", str(run), "--out", str(tmp_path / "bt.json"))
    assert bt.returncode == 0, bt.stderr
    bad = himari(site, "train", "hello-linear", "--data", str(small_prepared), "--method", "hello-monitor",
                 "--set", "hello-monitor.split=bogus", "--run-dir", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "split must be train, validation or test" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()
    scored = json.loads((tmp_path / "bt.json").read_text())["results"][0]
    assert scored["sharpe"] == pytest.approx(summary["test"]["model"]["sharpe"], abs=1e-12)


def test_the_guide_shows_exactly_this_plugin() -> None:
    """docs/writing-a-plugin.md prints the modules this test installs, character for character."""
    import re

    guide = (Path(__file__).resolve().parents[3] / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"`himari_hello/(\w+)\.py`:\n\n```python\n(.*?)\n```", guide, re.S))
    assert blocks == {"model": MODEL.strip("\n"), "momentum": MOMENTUM.strip("\n"), "monitor": MONITOR.strip("\n")}
    for line in textwrap.dedent(PYPROJECT).splitlines():
        if line.startswith('"himari_hello.'):
            assert line.split("=")[0].strip() in guide


def test_its_preprocessor_passes_the_conformance_check_the_guide_names(site, small_prepared, tmp_path) -> None:
    """The guide's preprocessor, as written, passes the check the guide tells authors to run
    (tests/python/builtin/conformance.py): fitted on train rows only, the train rows' outputs from
    train rows alone, causal, its state round trip. (Its trainings with the models are tested
    above.) A filter restarted at segments alone fails it: the train split's first rows then
    read the warm-up rows before it."""
    conformance_dir = Path(__file__).resolve().parents[1] / "builtin"
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(conformance_dir)!r})
        from conformance import check_preprocessor
        check_preprocessor("hello-momentum", Path({str(small_prepared)!r}), Path({str(tmp_path)!r}), models=[])
        print("CONFORMS")
    """)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k != "HIMARI_DISABLE_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                         env={**env, "PYTHONPATH": path}, cwd=tmp_path)
    assert out.returncode == 0 and "CONFORMS" in out.stdout, out.stdout + out.stderr
