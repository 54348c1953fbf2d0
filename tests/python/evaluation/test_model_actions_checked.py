"""What a model's ``act``/``act_sequence`` returns is checked before it is scored: a float, a
value outside 0..2 or a wrong length is refused naming the model. Before, a float array was cast
to int8 (every value below 1 read as SELL) and 256/257/258 wrapped to 0/1/2, and the run
reported a Sharpe ratio for actions the model never gave."""

from __future__ import annotations

import numpy as np
import pytest

from himari.errors import TrainingError
from himari.evaluation.execution import model_actions
from himari.evaluation.policy import evaluate_actions
from himari.plugin.api import EnvConfig

RANGES = [(0, 6), (10, 14)]
ROWS = 10


class Acts:
    """A stateless model whose ``act`` returns ``out`` whatever it is asked."""

    def __init__(self, out):
        self.out = out

    def act(self, features, rows):
        return self.out(rows) if callable(self.out) else self.out


class Sequential:
    def __init__(self, out):
        self.out = out

    def act_sequence(self, features, open_, close, ranges, env, **kwargs):
        return self.out


def _actions(model):
    return model_actions(model, np.zeros((20, 2), np.float32), np.ones(20), np.ones(20), RANGES, EnvConfig(), None,
                         name="my-model")


@pytest.mark.parametrize(("out", "words"), [
    (lambda r: np.linspace(0, 1.99, len(r)), "float64 values, expected integer actions"),
    (lambda r: np.full(len(r), 257), "values from 257 to 257, expected 0 (SELL), 1 (HOLD) or 2 (BUY)"),
    (lambda r: np.zeros(len(r), np.int64) - 1, "values from -1 to -1"),
    (lambda r: np.ones(len(r) - 1, np.int64), "shape (9,), expected (10,): one action per row"),
    (lambda r: np.ones((len(r), 3)), "shape (10, 3)"),
    (lambda r: np.ones(len(r), bool), "bool values"),
])
def test_bad_actions_are_refused_naming_the_model(out, words) -> None:
    for model in (Acts(out), Sequential(out(np.arange(ROWS)))):
        call = "act" if isinstance(model, Acts) else "act_sequence"
        with pytest.raises(TrainingError, match=rf"model 'my-model': {call} returned .*{words}".replace("(", r"\(")
                           .replace(")", r"\)")):
            _actions(model)


def test_integer_actions_of_any_width_pass_unchanged() -> None:
    for dtype in (np.int8, np.int32, np.int64, np.uint8):
        want = (np.arange(ROWS) % 3).astype(dtype)
        np.testing.assert_array_equal(_actions(Acts(want)), want)
        np.testing.assert_array_equal(_actions(Sequential(want)), want)


def test_evaluate_actions_refuses_what_it_would_have_cast() -> None:
    o = c = np.linspace(100, 110, 20)
    with pytest.raises(ValueError, match="expected integers 0 .* got float64"):
        evaluate_actions(o, c, RANGES, np.full(ROWS, 1.5), EnvConfig())
    with pytest.raises(ValueError, match="from 0 to 256"):
        evaluate_actions(o, c, RANGES, np.r_[np.zeros(ROWS - 1, np.int64), 256], EnvConfig())
