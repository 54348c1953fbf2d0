"""adversarial (K5) with flag-trader at its tiny test size: the windowed observations ``[..., W, F + 4]``
the PPO updates train on (and, with ``rollouts``, those the policy acts on) are moved within epsilon
on the market columns of every window row only, for the first ratio of the envs only, against the
model's own loss; the account columns never move."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import himari_builtin.training.adversarial as adv
from himari_tests_conformance import TINY_MODEL, TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

SETS = [*TINY_ONLINE("flag-trader"), *TINY_MODEL["flag-trader"]]
W, EPS = 16, 0.1


def test_update_observations_move_within_epsilon_on_market_columns_only(small_prepared: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """Each rollout of a flag-trader run: the first 2 of 4 envs' windows move (by up to eps, and
    some by about eps) on the F market columns of every bar of the window, raising the PPO loss on
    them; the other envs and every account column are exactly the collected ones."""
    seen: list = []
    original = adv.perturb_rollout

    def spy(model, buf, ctx, config, count):
        before = buf.obs.clone()
        original(model, buf, ctx, config, count)
        part = {k: v for k, v in buf[torch.arange(2)].items()}
        model.network.eval()
        with torch.no_grad():
            clean = float(model.loss({**part, "obs": before[:, :2]}, ctx)[0])
            attacked = float(model.loss(part, ctx)[0])
        model.network.train()
        seen.append((before, buf.obs.clone(), ctx.model.n_features, clean, attacked))

    monkeypatch.setattr(adv, "perturb_rollout", spy)
    tiny_run("flag-trader", small_prepared, tmp_path / "run", methods="adversarial",
             sets=[*SETS, f"adversarial.epsilon={EPS}", "adversarial.ratio=0.5", "adversarial.attack=fgsm"])
    assert seen
    for before, after, f, clean, attacked in seen:
        assert before.shape[2:] == (W, f + 4)
        d = (after - before).abs()
        assert float(d.max()) <= EPS + 1e-6
        assert float(d[:, :2, :, :f].max()) > 0.9 * EPS  # FGSM's step lands on the box's faces
        assert float(d[:, :2, :, :f].mean()) > 0.5 * EPS  # ... across the window, not only its newest bar
        assert float(d[..., f:].max()) == 0  # account columns: position, PnL, drawdown, time in position
        assert float(d[:, 2:].max()) == 0  # the clean envs stay clean
        assert attacked > clean


def test_rollout_observations_the_policy_acts_on_move_on_market_columns_only(small_prepared: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """With ``rollouts``: at every rollout step the first 2 of 4 envs' observation windows ``[N, W,
    F + 4]`` move within epsilon on market columns only, the policy's taken action loses
    probability, and the rollout stores exactly what the policy saw."""
    steps: list = []
    original = adv.perturb_step

    def spy(obs, starts, state, policy, n_features, config, generator):
        out = original(obs, starts, state, policy, n_features, config, generator)
        with torch.no_grad():
            clean = torch.softmax(policy(obs[:2], None, state)[0].float(), -1)
            moved = torch.softmax(policy(out[:2], None, state)[0].float(), -1)
        taken = clean.argmax(-1)
        steps.append((obs.clone(), out.clone(), n_features, clean.gather(1, taken[:, None]),
                      moved.gather(1, taken[:, None])))
        return out

    stored: list = []
    original_rollout = adv.Adversarial.on_rollout

    def keep(self, buf, ctx):
        stored.append(buf.obs.clone())
        return original_rollout(self, buf, ctx)

    monkeypatch.setattr(adv, "perturb_step", spy)
    monkeypatch.setattr(adv.Adversarial, "on_rollout", keep)
    tiny_run("flag-trader", small_prepared, tmp_path / "run", methods="adversarial",
             sets=[*SETS, f"adversarial.epsilon={EPS}", "adversarial.ratio=0.5", "adversarial.rollouts=true",
                   "adversarial.attack=fgsm"])
    assert len(steps) == 16 * len(stored)  # every step of every rollout
    for obs, out, f, p_clean, p_moved in steps:
        assert obs.shape[1:] == (W, f + 4)
        d = (out - obs).abs()
        assert float(d.max()) <= EPS + 1e-6 and float(d[:2, :, :f].max()) > 0.9 * EPS
        assert float(d[..., f:].max()) == 0 and float(d[2:].max()) == 0
        assert bool((p_moved <= p_clean + 1e-6).all())
    first = torch.stack([out for _, out, *_ in steps[:16]])
    assert torch.equal(stored[0], first)  # the updates train on what the policy saw
    assert np.mean([float((pm < pc).float().mean()) for *_, pc, pm in steps]) > 0.9
