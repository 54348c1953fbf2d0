"""himari robustness on a stateful policy (ppo-lstm's path attack): flips pinned on a hand-made
recurrent policy, the perturbation's box and untouched account columns, the random control,
refusals, and the command on a trained ppo-lstm run."""

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
from himari.trading import EnvConfig
from himari.training.rl import sequential_actions
from himari.training.robustness_sequential import attacked_run
from himari.training.robustness_sequential import measure_any as measure

runner = CliRunner()


class EchoPolicy:
    """A recurrent policy linear in its observation: ``u_t = x0_t + 0.5 * m_{t-1}`` where the
    state ``m`` is the feature 0 the policy saw at the previous step (0 at an episode start),
    plus ``account_weight`` times the account's position column; logits ``[-u, 0, u]``."""

    def __init__(self, account_weight: float = 0.0) -> None:
        self.network = torch.nn.Linear(1, 1)
        self.w = account_weight

    def step_logits(self, obs, starts, state):
        m = torch.zeros(obs.shape[0]) if state is None else state
        m = torch.where(torch.as_tensor(np.asarray(starts, dtype=bool)), torch.zeros_like(m), m)
        u = obs[:, 0] + 0.5 * m + self.w * obs[:, 2]  # column 2: the position (first account column)
        return torch.stack([-u, torch.zeros_like(u), u], -1), obs[:, 0].detach()

    def act_sequence(self, features, open_, close, ranges, env, execution=None):
        holder = {"state": None}

        def step(obs, starts):
            logits, holder["state"] = self.step_logits(torch.tensor(obs), starts, holder["state"])
            return logits.argmax(-1).numpy()

        return sequential_actions(step, features, open_, close, ranges, env, execution=execution)

    def act(self, features, rows):
        raise AssertionError("a stateful policy is not asked for act")


def market(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    x0 = rng.uniform(-0.2, 0.2, n)
    features = np.stack([x0, rng.normal(size=n)], axis=1).astype(np.float32)
    return features, open_, close


def by_hand(x0: np.ndarray, ranges, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean and FGSM-attacked decisions of EchoPolicy (account weight 0), and the decision mask,
    worked out directly: the attack moves x0 by eps against the sign of u on the attacked path."""
    clean, attacked, decided = [], [], []
    for a, b in ranges:
        m_clean = m_att = 0.0
        for t in range(a, b):
            last = t == b - 1
            u = float(x0[t]) + 0.5 * m_clean
            clean.append(1 if last else (2 if u > 0 else 0))
            m_clean = float(x0[t])
            u_att = float(x0[t]) + 0.5 * m_att
            seen = float(x0[t]) - eps * np.sign(u_att)
            u_seen = seen + 0.5 * m_att
            attacked.append(1 if last else (2 if u_seen > 0 else 0))
            m_att = float(np.float32(seen))
            decided.append(not last)
    return np.array(clean), np.array(attacked), np.array(decided)


def test_flips_match_the_hand_worked_path_and_random_flips_less() -> None:
    n, eps = 1200, 0.06
    features, open_, close = market(n)
    ranges = [(0, 500), (500, n)]
    out = measure(EchoPolicy(), "echo", features, open_, close, ranges, EnvConfig(), None, [eps], pgd_steps=4)
    clean, attacked, decided = by_hand(features[:, 0], ranges, eps)
    want = float(np.mean(attacked[decided] != clean[decided]))
    assert 0.05 < want < 0.6
    by = {r["attack"]: r for r in out["results"]}
    assert by["fgsm"]["flip_rate"] == pytest.approx(want, abs=1e-12)
    assert by["pgd"]["flip_rate"] == pytest.approx(want, abs=1e-12)  # monotone loss: PGD ends where FGSM does
    assert 0 < by["random"]["flip_rate"] < by["fgsm"]["flip_rate"]
    # the attacked run's scores are those of the hand-worked attacked actions after the default costs
    m = evaluate_actions(open_, close, ranges, attacked, EnvConfig())
    assert by["fgsm"]["sharpe"] == pytest.approx(m["sharpe"], rel=1e-9)
    assert by["fgsm"]["n_trades"] == m["n_trades"]
    m0 = evaluate_actions(open_, close, ranges, clean, EnvConfig())
    assert out["clean"]["total_return"] == pytest.approx(m0["total_return"], rel=1e-9)
    assert m0["total_return"] != m["total_return"]


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "random"])
def test_perturbation_stays_in_the_box_and_never_moves_the_account(attack: str) -> None:
    features, open_, close = market(300, seed=2)
    record: list = []
    policy = EchoPolicy(account_weight=1.0)  # the loss has a gradient on the position column too
    attacked_run(policy, features, open_, close, [(0, 300)], EnvConfig(), None, attack, 0.05, 3, seed=1,
                 record=record)
    assert len(record) == 299
    clean = np.concatenate([c for c, _ in record])
    seen = np.concatenate([s for _, s in record])
    delta = seen - clean
    assert np.abs(delta[:, :2]).max() <= 0.05 + 1e-6
    assert np.abs(delta[:, 0]).max() > 0.04
    np.testing.assert_array_equal(seen[:, 2:], clean[:, 2:])  # account columns exactly as the env shows them
    np.testing.assert_array_equal(clean[:, :2], features[:299])
    assert np.abs(clean[:, 2]).max() > 0  # the policy did hold positions, so the column could have moved


def test_stateful_models_without_step_logits_are_refused() -> None:
    features, open_, close = market(50)

    class NoStep(EchoPolicy):
        step_logits = None

    class Lying(EchoPolicy):
        def act_sequence(self, *args, **kwargs):
            return 2 - super().act_sequence(*args, **kwargs)

    for model, text in ((NoStep(), "step_logits"), (Lying(), "does not reproduce")):
        with pytest.raises(ConfigError, match=text):
            measure(model, "m", features, open_, close, [(0, 50)], EnvConfig(), None, [0.1], pgd_steps=2)


@pytest.mark.parametrize("model", ["cql"])
def test_other_stateful_builtins_are_refused_by_name(small_prepared: Path, tmp_path: Path, model: str) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import TINY_MODEL, tiny_run  # type: ignore[import-not-found]

    run = tmp_path / "run"
    tiny_run(model, small_prepared, run, sets=TINY_MODEL.get(model, []))
    out = runner.invoke(app, ["robustness", str(run), "--eps", "0.05"], env={"COLUMNS": "200"})
    assert out.exit_code == 2, out.output
    assert f"model {model!r}" in out.output and "step_logits" in out.output and "Traceback" not in out.output


def test_command_on_a_ppo_lstm_run_scores_like_backtest(small_prepared: Path, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    run = tmp_path / "run"
    tiny_run("ppo-lstm", small_prepared, run, sets=TINY_ONLINE("ppo-lstm"))
    out = runner.invoke(app, ["robustness", str(run), "--eps", "0.05,2", "--pgd-steps", "2", "--json"],
                        env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["model"] == "ppo-lstm"
    bt = runner.invoke(app, ["backtest", str(run), "--split", "validation", "--json",
                             "--out", str(tmp_path / "bt.json")], env={"COLUMNS": "200"})
    backtest = json.loads(bt.output)["results"][0]
    assert result["clean"]["sharpe"] == pytest.approx(backtest["sharpe"], rel=1e-9)
    assert result["clean"]["n_trades"] == backtest["n_trades"]
    by = {(r["attack"], r["epsilon"]): r for r in result["results"]}
    assert all(0.0 <= r["flip_rate"] <= 1.0 for r in result["results"])
    # a radius of 2 standard deviations aimed at the decision flips more than a small one
    assert by[("fgsm", 2.0)]["flip_rate"] > by[("fgsm", 0.05)]["flip_rate"]
    assert by[("fgsm", 2.0)]["flip_rate"] > 0
