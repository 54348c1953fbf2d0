"""``ppo_loss`` on a hand-worked minibatch: 4 samples, 3 actions, ratios inside and outside the
clip range, advantages of both signs; with advantage normalisation on and off, value clipping on
and off. Every expected number comes from plain-Python arithmetic on the chosen inputs (the
probabilities are simple fractions), so a mistake in the sign, the clipping side, the
normalisation or the diagnostics cannot be shared with the implementation.

Clipped surrogate (Schulman et al. 2017): per sample ``min(r * A, clip(r, 1-eps, 1+eps) * A)``;
policy loss = minus its mean. Value loss: ``0.5 * mean((V - R)^2)``, or with value clipping
``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from himari.training.loop import host_floats  # noqa: E402
from himari.training.ppo import PPOConfig, ppo_loss  # noqa: E402

LN = math.log
# Logits are logs of unnormalised weights, so the softmax is the weights over their sum:
#   sample 0: weights 1, 2, 1 -> p = 1/4, 1/2, 1/4   action 1 -> p = 1/2
#   sample 1: weights 3, 1, 1 -> p = 3/5, 1/5, 1/5   action 0 -> p = 3/5
#   sample 2: weights 1, 1, 1 -> p = 1/3 each        action 2 -> p = 1/3
#   sample 3: weights 1, 1, 2 -> p = 1/4, 1/4, 1/2   action 2 -> p = 1/2
WEIGHTS = [(1, 2, 1), (3, 1, 1), (1, 1, 1), (1, 1, 2)]
ACTIONS = [1, 0, 2, 2]
P_NEW = [1 / 2, 3 / 5, 1 / 3, 1 / 2]
# Old probabilities of those actions give the ratios p_new / p_old:
#   0: 0.5 / 0.4  = 1.25      above 1 + 0.2
#   1: 0.6 / 0.55 = 1.0909..  inside
#   2: (1/3) / 0.5 = 2/3      below 1 - 0.2
#   3: 0.5 / 0.25 = 2         above 1 + 0.2
P_OLD = [0.4, 0.55, 0.5, 0.25]
RATIO = [1.25, 0.6 / 0.55, 2 / 3, 2.0]
ADV = [1.0, -0.5, -2.0, -1.0]
VALUES = [0.5, -0.3, 1.0, 0.0]
OLD_VALUES = [0.4, 0.0, 0.5, 0.3]
RETURNS = [1.0, -0.5, 0.2, 0.1]


def batch(adv=ADV, actions=ACTIONS, p_old=P_OLD) -> dict:
    return {"actions": torch.tensor(actions), "logprobs": torch.tensor([LN(p) for p in p_old]),
            "values": torch.tensor(OLD_VALUES), "advantages": torch.tensor(adv),
            "returns": torch.tensor(RETURNS)}


def logits(weights=WEIGHTS) -> torch.Tensor:
    return torch.tensor([[LN(w) for w in ws] for ws in weights], requires_grad=True)


# Entropy: -sum p ln p per sample, averaged.
#   0 and 3: -(2 * 1/4 ln 1/4 + 1/2 ln 1/2) = ln 2 + ln 2 / 2 = 1.5 ln 2
#   1: -(3/5 ln 3/5 + 2 * 1/5 ln 1/5);  2: ln 3
ENTROPY = (1.5 * LN(2) * 2 - (0.6 * LN(0.6) + 0.4 * LN(0.2)) + LN(3)) / 4
# approx_kl = mean((r - 1) - ln r); clipfrac: |r - 1| > 0.2 for samples 0, 2 and 3
APPROX_KL = sum((r - 1) - LN(r) for r in RATIO) / 4
CLIPFRAC = 0.75
# Value loss, unclipped: (V - R)^2 = 0.25, 0.04, 0.64, 0.01 -> 0.5 * 0.94 / 4
V_LOSS_PLAIN = 0.5 * (0.25 + 0.04 + 0.64 + 0.01) / 4
# Clipped (c = 0.2) around the old values: V_old + clip(V - V_old) = 0.5, -0.2, 0.7, 0.1
#   (clipped - R)^2 = 0.25, 0.09, 0.25, 0.0; the max with the unclipped: 0.25, 0.09, 0.64, 0.01
V_LOSS_CLIPPED = 0.5 * (0.25 + 0.09 + 0.64 + 0.01) / 4


def test_raw_advantages_clipped_surrogate_and_diagnostics() -> None:
    # Per sample min(r A, clip(r) A) with A = 1, -0.5, -2, -1:
    #   0: min(1.25, 1.2) = 1.2 (clipped)            1: r * -0.5 (inside, clip changes nothing)
    #   2: min(-2/3 * 2, -0.8 * 2) = -1.6 (clipped)  3: min(-2, -1.2) = -2 (the unclipped, worse one)
    surrogate = [1.2, RATIO[1] * -0.5, -1.6, -2.0]
    pg = -sum(surrogate) / 4  # = 0.7363..
    cfg = PPOConfig(normalize_advantage=False)  # clip 0.2, value clip 0.2, ent 0.01, vf 0.5
    loss, info = ppo_loss(logits(), torch.tensor(VALUES), batch(), cfg)
    info = host_floats(info)  # the values the Trainer logs
    assert info["policy_loss"] == pytest.approx(pg, rel=1e-6)
    assert info["value_loss"] == pytest.approx(V_LOSS_CLIPPED, rel=1e-6)
    assert info["entropy"] == pytest.approx(ENTROPY, rel=1e-6)
    assert info["approx_kl"] == pytest.approx(APPROX_KL, rel=1e-5)
    assert info["clipfrac"] == CLIPFRAC
    assert float(loss.detach()) == pytest.approx(pg - 0.01 * ENTROPY + 0.5 * V_LOSS_CLIPPED, rel=1e-6)


def test_normalised_advantages() -> None:
    # mean(A) = -2.5 / 4 = -0.625; deviations 1.625, 0.125, -1.375, -0.375; squares sum to
    # 4.6875; sample std (n - 1 = 3) = sqrt(1.5625) = 1.25. Normalised A = 1.3, 0.1, -1.1, -0.3.
    #   0: min(1.25 * 1.3, 1.2 * 1.3) = 1.56          1: r * 0.1 (sign flipped, still inside)
    #   2: min(-2/3 * 1.1, -0.8 * 1.1) = -0.88        3: min(-2 * 0.3, -1.2 * 0.3) = -0.6
    surrogate = [1.56, RATIO[1] * 0.1, -0.88, -0.6]
    pg = -sum(surrogate) / 4  # = -0.0472..
    cfg = PPOConfig(clip_range_vf=0.0, ent_coef=0.05, vf_coef=0.25)
    loss, info = ppo_loss(logits(), torch.tensor(VALUES), batch(), cfg)
    info = host_floats(info)  # the values the Trainer logs
    assert info["policy_loss"] == pytest.approx(pg, rel=1e-6)
    assert info["value_loss"] == pytest.approx(V_LOSS_PLAIN, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(pg - 0.05 * ENTROPY + 0.25 * V_LOSS_PLAIN, rel=1e-6)
    # the diagnostics do not depend on the advantages
    assert info["approx_kl"] == pytest.approx(APPROX_KL, rel=1e-5) and info["clipfrac"] == CLIPFRAC


def test_sequence_shape_gives_the_same_loss() -> None:
    """[T, B] rollouts of a recurrent model and the flat [T * B] samples give one loss."""
    cfg = PPOConfig()
    flat, _ = ppo_loss(logits(), torch.tensor(VALUES), batch(), cfg)
    b = {k: v.reshape(2, 2) for k, v in batch().items()}
    seq, _ = ppo_loss(logits().reshape(2, 2, 3), torch.tensor(VALUES).reshape(2, 2), b, cfg)
    assert float(seq.detach()) == pytest.approx(float(flat.detach()), rel=1e-6)


def test_gradient_direction_inside_and_outside_the_clip_range() -> None:
    """Policy term only (no entropy, no value weight, raw advantages). Per sample, the gradient
    of -r A / N on the logits is -(A / N) r (onehot(a) - p) where the unclipped term is the one
    taken, and exactly 0 where the clipped term is (clip(r) A does not depend on the logits)."""
    cfg = PPOConfig(normalize_advantage=False, ent_coef=0.0, vf_coef=0.0)
    adv = [1.0, 1.0, -2.0, -1.0]  # sample 1: positive advantage, ratio inside the range
    x = logits()
    loss, _ = ppo_loss(x, torch.tensor(VALUES), batch(adv=adv), cfg)
    loss.backward()
    grad = x.grad
    # sample 0: A > 0, r = 1.25 > 1.2 -> clipped; sample 2: A < 0, r = 2/3 < 0.8 -> clipped
    assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[2]) == 0
    probs = [[w / sum(ws) for w in ws] for ws in WEIGHTS]
    for i in (1, 3):  # sample 3: A < 0, r = 2 -> the unclipped term is taken
        want = [-(adv[i] / 4) * RATIO[i] * ((j == ACTIONS[i]) - probs[i][j]) for j in range(3)]
        assert grad[i].tolist() == pytest.approx(want, rel=1e-5)
    # one gradient step raises the probability of the positively-advantaged action (sample 1)
    # and lowers that of the negatively-advantaged one (sample 3); clipped samples do not move
    with torch.no_grad():
        stepped = torch.softmax(x - 0.5 * grad, -1)
    assert float(stepped[1, ACTIONS[1]]) > P_NEW[1]
    assert float(stepped[3, ACTIONS[3]]) < P_NEW[3]
    assert float(stepped[0, ACTIONS[0]]) == pytest.approx(P_NEW[0], rel=1e-6)
    assert float(stepped[2, ACTIONS[2]]) == pytest.approx(P_NEW[2], rel=1e-6)
