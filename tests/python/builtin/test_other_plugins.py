"""Every registered preprocessor, training method and tracker: built with its defaults and used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.plugin.manager import get_plugins

from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

P = get_plugins()


@pytest.mark.parametrize("name", P.preprocessors().names())
def test_preprocessor_contract(name) -> None:
    spec = P.preprocessors().get(name)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 6)) * [1, 2, 3, 4, 5, 0] + 10).astype(np.float32)
    pre = spec.factory(spec.config())
    pre.fit(x[:300])
    out = pre.transform(x)
    assert out.shape[0] == 500 and out.dtype == np.float32 and np.isfinite(out).all()
    # causal and row-wise: rows up to t do not depend on later rows
    changed = x.copy()
    changed[400:] = 0
    np.testing.assert_array_equal(pre.transform(changed)[:400], out[:400])
    # state round trip through JSON
    other = spec.factory(spec.config())
    other.load_state_dict(json.loads(json.dumps(pre.state_dict())))
    np.testing.assert_array_equal(other.transform(x), out)


def test_zscore_fits_train_rows_only() -> None:
    spec = P.preprocessors().get("zscore")
    x = np.r_[np.zeros((50, 1)), np.ones((50, 1)) * 100].astype(np.float32)
    pre = spec.factory(spec.config(clip=0))
    pre.fit(x[:50])
    assert pre.state_dict() == {"mean": [0.0], "std": [1.0]}
    assert pre.transform(x)[-1, 0] == 100.0


@pytest.mark.parametrize("name", P.training_methods().names())
def test_training_method_runs(name, small_prepared, tmp_path) -> None:
    s = tiny_run("baseline-mlp", small_prepared, tmp_path / name, methods=name)
    assert s["steps"] == 6 and np.isfinite(s["test"]["model"]["sharpe"])


def test_jsonl_tracker_truncates_on_resume(tmp_path) -> None:
    spec = P.trackers().get("jsonl")
    t = spec.factory(spec.config())
    t.start(tmp_path, {}, None)
    for step in range(5):
        t.log(step, {"loss": float(step), "bad": float("nan")})
    t.finish({})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 0, "loss": 0.0, "bad": None}
    t = spec.factory(spec.config())
    t.start(tmp_path, {}, {"records": 2, "step": 1})
    t.log(9, {"loss": 9.0})
    t.finish({})
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 9]


@pytest.mark.parametrize("name, module, extra", [("tensorboard", "tensorboard", r"himari\[tensorboard\]"),
                                                 ("wandb", "wandb", r"himari\[wandb\]")])
def test_optional_trackers_name_their_extra(name, module, extra, tmp_path, monkeypatch) -> None:
    import importlib.util
    import sys

    spec = P.trackers().get(name)
    if importlib.util.find_spec(module) is not None:
        monkeypatch.setitem(sys.modules, module, None)  # make it look absent
    with pytest.raises(ConfigError, match=f"needs the {module} package: pip install '{extra}'"):
        spec.factory(spec.config())


def test_wandb_is_offline_without_an_api_key(tmp_path, monkeypatch) -> None:
    """With a stand-in wandb module: offline unless a key is configured."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(kw) or types.SimpleNamespace(log=lambda *a, **k: None, summary={},
                                                                          finish=lambda: None)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    spec = P.trackers().get("wandb")
    spec.factory(spec.config()).start(tmp_path, {}, None)
    monkeypatch.setenv("WANDB_API_KEY", "k")
    spec.factory(spec.config()).start(tmp_path, {}, None)
    assert [c["mode"] for c in calls] == ["offline", "online"]
