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

[tool.setuptools]
packages = ["himari_hello"]
"""

MODEL = '''
"""hello-linear: a linear classifier, the smallest possible himari model plugin."""

from dataclasses import dataclass

from himari.plugin import ModelSpec, hookimpl


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

        from himari.data.splits import rows_of

        rows = rows_of(ctx.splits[split])
        rows = rows[ctx.labels[rows] >= 0]
        return TensorDataset(torch.from_numpy(ctx.features[rows]), torch.from_numpy(ctx.labels[rows].astype("int64")))

    def loss(self, batch, ctx):
        import torch.nn.functional as F

        return F.cross_entropy(self.network(batch[0]), batch[1]), {}

    def act(self, features, rows):
        import torch

        return self.network(torch.from_numpy(features[rows])).argmax(-1).numpy()


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


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Build the distribution with pip (no network, no build isolation) into a --target dir."""
    root = tmp_path_factory.mktemp("hello")
    src = root / "src"
    (src / "himari_hello").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "himari_hello" / "__init__.py").write_text('"""himari-hello: an example plugin."""\n')
    (src / "himari_hello" / "model.py").write_text(MODEL)
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True, timeout=120)
    assert (target / "himari_hello" / "model.py").exists()
    return target


def himari(site: Path, *args: str, disable: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
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
