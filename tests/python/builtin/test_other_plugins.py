"""Every registered preprocessor, training method and tracker through the conformance harness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from himari.errors import ConfigError
from himari.plugin.manager import get_plugins

from himari.plugin.api import applies_to

from himari_tests_conformance import check_preprocessor, check_training_method  # type: ignore[import-not-found]

P = get_plugins()


@pytest.mark.parametrize("name", P.preprocessors().names())
def test_preprocessor_conformance(name, small_prepared, tmp_path) -> None:
    check_preprocessor(name, small_prepared, tmp_path)


def test_zscore_fits_train_rows_only(small_prepared) -> None:
    """By hand on one column: the statistics are those of the train rows, whatever the others."""
    from himari.data import PreparedData
    from himari.data.splits import rows_of
    from himari.training.preprocess import run_preprocessors

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    x = np.asarray(data.features).copy()
    train = rows_of(splits["train"])
    x[:, 0] = 1000.0
    x[train, 0] = np.where(np.arange(len(train)) % 2, 3.0, 1.0)  # mean 2, std 1 over the train rows
    spec = P.preprocessors().get("zscore")
    out, states = run_preprocessors(data, x, ["zscore"], {"zscore": spec.config(clip=0.0)}, P, splits)
    assert states[0]["state"]["mean"][0] == 2.0 and states[0]["state"]["std"][0] == 1.0
    others = np.setdiff1d(np.arange(len(x)), train)
    np.testing.assert_array_equal(out[others, 0], np.float32(998.0))


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_a_preprocessor_writing_nan_on_a_split_row_is_refused_naming_it(split, small_prepared) -> None:
    """A NaN at one validation row made that row's logits NaN and its action SELL, silently; on a
    train row the loss went NaN with a hint to lower --lr."""
    from types import SimpleNamespace

    from himari.data import PreparedData
    from himari.errors import DataError
    from himari.training.preprocess import run_preprocessors

    data = PreparedData(small_prepared)
    splits = {k: data.split(k) for k in ("train", "validation", "test")}
    row = splits[split][0][0] + 10

    class Holes:
        def fit(self, view) -> None:
            pass

        def transform(self, view):
            out = np.array(view.features)
            out[row, 3] = np.nan
            return out

        def state_dict(self) -> dict:
            return {}

    plugins = SimpleNamespace(preprocessors=lambda: SimpleNamespace(get=lambda name: SimpleNamespace(
        factory=lambda config: Holes())))
    with pytest.raises(DataError, match=rf"preprocessor 'holes': output '{data.feature_names[3]}' is nan at prepared "
                                        rf"row {row} \({split} split"):
        run_preprocessors(data, np.asarray(data.features), ["holes"], {"holes": None}, plugins, splits)
    first = splits["train"][0][0]
    if first > 0:  # the feature warm-up, outside every split, is the preprocessor's to leave undefined

        class WarmUpHoles(Holes):
            def transform(self, view):
                out = np.array(view.features)
                out[first - 1] = np.nan
                return out

        plugins.preprocessors = lambda: SimpleNamespace(get=lambda name: SimpleNamespace(factory=lambda c: WarmUpHoles()))
        run_preprocessors(data, np.asarray(data.features), ["holes"], {"holes": None}, plugins, splits)


COMPATIBLE = [(m, model) for m in P.training_methods().names() for model in P.models().names()
              if applies_to(P.training_methods().get(m), model, P.models().get(model).paradigm)
              and model in ("baseline-mlp", "cql", "ppo-lstm")]  # the cheap built-ins; cgdt and flag-trader
                                                                 # run the same hooks (test_models)


@pytest.mark.parametrize("name, model", COMPATIBLE)
def test_training_method_conformance(name, model, small_prepared, tmp_path) -> None:
    check_training_method(name, model, small_prepared, tmp_path)


def test_every_training_method_has_a_compatible_model() -> None:
    assert {m for m, _ in COMPATIBLE} == set(P.training_methods().names())


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


def test_confidence_penalty_term_pushes_towards_higher_entropy() -> None:
    """The loss term is -beta x the mean entropy of the policy: its value by hand, and one
    gradient step on it raises the entropy of a confident prediction (the sign is right)."""
    import math

    import torch

    spec = P.training_methods().get("confidence-penalty")
    method = spec.factory(spec.config(beta=0.5))

    class Policy:
        def __init__(self) -> None:
            self.logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)

        def action_logits(self, batch):
            return self.logits

    model = Policy()
    term = method.loss_terms(model, (None, None), None)["entropy_bonus"]
    p = [math.exp(4) / (math.exp(4) + 2), 1 / (math.exp(4) + 2), 1 / (math.exp(4) + 2)]
    entropy_confident = -sum(q * math.log(q) for q in p)
    expected = -0.5 * (entropy_confident + math.log(3)) / 2  # mean over the two rows; uniform has log 3
    assert float(term.detach()) == pytest.approx(expected, rel=1e-6)
    term.backward()
    with torch.no_grad():
        stepped = model.logits - 0.5 * model.logits.grad
        probs = torch.softmax(stepped, -1)
        entropy_after = float(-(probs[0] * probs[0].log()).sum())
    assert entropy_after > entropy_confident  # minimising the term spreads the confident row
    with pytest.raises(ValueError, match="beta must be >= 0, got -0.1"):
        spec.config(beta=-0.1)  # a negative beta would reward collapse
    assert torch.allclose(model.logits.grad[1], torch.zeros(3), atol=1e-7)  # the uniform row is at the maximum
