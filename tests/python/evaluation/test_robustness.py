"""himari robustness (K6): flip rates pinned on a hand-made linear policy, the random control,
after-cost scores of the perturbed actions, refusals and the command's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner

from himari.cli import app
from himari.errors import ConfigError
from himari.evaluation.policy import evaluate_actions
from himari.evaluation.robustness import measure, parse_epsilons
from himari.trading import EnvConfig

runner = CliRunner()


class SignPolicy:
    """Logits ``[-x0, 0, x0]``: BUY when feature 0 is positive, SELL when negative; feature 1
    weighs nothing. The cross-entropy against the taken action is monotone in x0, so FGSM and
    PGD move x0 by exactly eps towards the other side: a decision flips iff ``|x0| < eps``."""

    def __init__(self) -> None:
        self.network = torch.nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.network.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]))

    def act(self, features, rows):
        x = torch.from_numpy(np.ascontiguousarray(features[rows], dtype=np.float32))
        with torch.no_grad():
            return self.network(x).argmax(-1).numpy().astype(np.int8)

    def action_logits(self, batch):
        return self.network(batch[0])


def market(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    x0 = rng.uniform(-0.2, 0.2, n)
    x0[np.abs(x0) < 1e-3] = 0.15  # no ties at zero
    features = np.stack([x0, rng.normal(size=n)], axis=1).astype(np.float32)
    return features, open_, close


def test_flip_rate_matches_the_hand_count_and_random_flips_less() -> None:
    n, eps = 2000, 0.05
    features, open_, close = market(n)
    ranges = [(0, n // 2), (n // 2, n)]
    out = measure(SignPolicy(), "sign", features, open_, close, ranges, EnvConfig(), None, [eps], pgd_steps=4)
    x0 = features[:, 0].astype(np.float64)
    decided = np.ones(n, dtype=bool)
    decided[[n // 2 - 1, n - 1]] = False  # the last row of each range takes no decision
    near = np.abs(x0) < eps
    want = near[decided].mean()
    by = {r["attack"]: r for r in out["results"]}
    assert by["fgsm"]["flip_rate"] == pytest.approx(want, abs=1e-12)
    assert by["pgd"]["flip_rate"] == pytest.approx(want, abs=1e-12)
    # the random corner flips a near row only when its sign points across (half the time), a far row never
    assert 0 < by["random"]["flip_rate"] < by["fgsm"]["flip_rate"]
    assert by["random"]["flip_rate"] == pytest.approx(want / 2, abs=4 * np.sqrt(want / 4 / decided.sum()) + 1e-3)

    # the scores are those of the hand-flipped actions, after the default costs
    clean = np.where(x0 > 0, 2, 0)
    flipped = np.where(near, 2 - clean, clean)
    m = evaluate_actions(open_, close, ranges, flipped, EnvConfig())
    assert by["fgsm"]["sharpe"] == pytest.approx(m["sharpe"], rel=1e-9)
    assert by["fgsm"]["total_return"] == pytest.approx(m["total_return"], rel=1e-9)
    assert by["fgsm"]["n_trades"] == m["n_trades"]
    m0 = evaluate_actions(open_, close, ranges, clean, EnvConfig())
    assert out["clean"]["sharpe"] == pytest.approx(m0["sharpe"], rel=1e-9) and m0["sharpe"] != m["sharpe"]


def test_larger_epsilon_flips_more_and_results_are_seeded() -> None:
    features, open_, close = market(600, seed=3)
    args = (SignPolicy(), "sign", features, open_, close, [(0, 600)], EnvConfig(), None, [0.02, 0.1])
    a = measure(*args, pgd_steps=3, seed=7)
    b = measure(*args, pgd_steps=3, seed=7)
    assert a == b
    fgsm = [r["flip_rate"] for r in a["results"] if r["attack"] == "fgsm"]
    assert fgsm[0] < fgsm[1]


def test_models_that_cannot_be_attacked_are_refused() -> None:
    features, open_, close = market(50)

    class Sequential(SignPolicy):
        def act_sequence(self, *args, **kwargs):
            raise AssertionError("not called")

    class NoLogits:
        network = torch.nn.Linear(2, 3)

        def act(self, features, rows):
            return np.zeros(len(rows), dtype=np.int8)

    class Lying(SignPolicy):
        def act(self, features, rows):
            return 2 - super().act(features, rows)

    for model, text in ((Sequential(), "decides sequentially"), (NoLogits(), "action_logits"),
                        (Lying(), "is not the action it takes")):
        with pytest.raises(ConfigError, match=text):
            measure(model, "m", features, open_, close, [(0, 50)], EnvConfig(), None, [0.1], pgd_steps=2)
    with pytest.raises(ConfigError, match="--pgd-steps 0: expected an integer >= 1"):
        measure(SignPolicy(), "m", features, open_, close, [(0, 50)], EnvConfig(), None, [0.1], pgd_steps=0)


@pytest.mark.parametrize("text", ["", "0.1,x", "-0.1", "0", "nan", "0.1,0.1"])
def test_bad_epsilons_are_refused(text) -> None:
    with pytest.raises(ConfigError, match="--eps"):
        parse_epsilons(text)
    assert parse_epsilons("0.01, 0.05,0.1") == [0.01, 0.05, 0.1]


def test_command_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    for args, text in ((["robustness", str(tmp_path / "nope")], "not a himari run directory"),
                       (["robustness", str(tmp_path), "--eps", "a"], "--eps"),
                       (["robustness", str(tmp_path), "--split", "train"], "--split"),
                       (["robustness", str(tmp_path), "--pgd-steps", "0"], "--pgd-steps")):
        out = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert out.exit_code == 2, out.output
        assert text in out.output and "Traceback" not in out.output


def test_command_on_a_trained_run_scores_like_backtest(small_prepared: Path, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import tiny_run  # type: ignore[import-not-found]

    run = tmp_path / "run"
    tiny_run("baseline-mlp", small_prepared, run)
    out = runner.invoke(app, ["robustness", str(run), "--eps", "0.05,0.5", "--pgd-steps", "2", "--json"],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert [(r["attack"], r["epsilon"]) for r in result["results"]] == \
        [(a, e) for e in (0.05, 0.5) for a in ("fgsm", "pgd", "random")]
    assert all(0.0 <= r["flip_rate"] <= 1.0 for r in result["results"])
    bt = runner.invoke(app, ["backtest", str(run), "--split", "validation", "--json",
                             "--out", str(tmp_path / "bt.json")], env={"COLUMNS": "200"})
    backtest = json.loads(bt.output)["results"][0]
    assert result["clean"]["sharpe"] == pytest.approx(backtest["sharpe"], rel=1e-9)
    assert result["clean"]["n_trades"] == backtest["n_trades"]
    table = runner.invoke(app, ["robustness", str(run), "--eps", "0.5", "--pgd-steps", "2", "--split", "test"],
                          env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "flip rate" in table.output and "random" in table.output
