"""adversarial (K5) on online RL (ppo-lstm): the rollout's update observations perturbed inside
the epsilon box on market columns only, against a hand-worked linear loss; seeded by the
epoch; a real ppo-lstm run trains with it; and training with it makes the policy flip less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari_builtin.training.adversarial import (
    Adversarial,
    AdversarialConfig,
    perturb_rollout,
)

from himari.plugin.api import ModelContext, RolloutBuffer

T, N, F, ACCOUNT = 6, 4, 3, 2
W = np.array([0.5, -2.0, 0.0, 1.0, 1.0])  # the last two (account) columns weigh too: the mask must hold them


class LinearRL:
    """``loss = mean over steps and envs of w . obs``: the worst point of the box is
    ``obs + eps * sign(w)`` on the market columns, exactly FGSM's step (and PGD's end)."""

    paradigm = "online-rl"

    def __init__(self) -> None:
        self.network = torch.nn.Linear(F + ACCOUNT, 1, bias=False)
        with torch.no_grad():
            self.network.weight.copy_(torch.tensor(W, dtype=torch.float32)[None])
        self.seen: list = []

    def loss(self, batch, ctx):
        self.seen.append(tuple(batch["obs"].shape))
        return self.network(batch["obs"]).mean(), {}


class Ctx:
    model = ModelContext(n_features=F)
    seed = 3
    epoch = 0


def rollout(seed: int = 0) -> RolloutBuffer:
    buf = RolloutBuffer(T, N, F + ACCOUNT)
    buf.obs.copy_(torch.from_numpy(np.random.default_rng(seed).normal(size=(T, N, F + ACCOUNT)).astype(np.float32)))
    buf.state = (torch.zeros(1, N, 2),)
    return buf


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_the_first_share_of_envs_moves_to_the_worst_corner_on_market_columns_only(attack: str) -> None:
    model, buf = LinearRL(), rollout()
    clean = buf.obs.clone()
    eps = 0.1
    perturb_rollout(model, buf, Ctx(), AdversarialConfig(attack=attack, epsilon=eps, ratio=0.5, steps=3), 0)
    k = 2  # round(0.5 * 4)
    assert model.seen[0] == (T, k, F + ACCOUNT)  # the loss saw those envs' whole sequences
    want = clean.numpy().copy()
    moving = np.r_[np.sign(W[:F]), np.zeros(ACCOUNT)]
    want[:, :k] += eps * moving
    moved = W[:F] != 0  # PGD keeps its random start where the gradient is zero
    np.testing.assert_allclose(buf.obs.numpy()[:, :k, :F][..., moved], want[:, :k, :F][..., moved], atol=1e-6)
    np.testing.assert_array_equal(buf.obs.numpy()[:, :k, F:], clean.numpy()[:, :k, F:])  # account untouched
    np.testing.assert_array_equal(buf.obs.numpy()[:, k:], clean.numpy()[:, k:])  # the clean envs stay clean
    assert np.abs(buf.obs.numpy() - clean.numpy()).max() <= eps + 1e-6
    with torch.no_grad():
        assert float(model.network(buf.obs[:, :k]).mean()) > float(model.network(clean[:, :k]).mean())


def test_pgd_start_is_seeded_by_epoch_and_rollout_and_reset_each_epoch() -> None:
    cfg = AdversarialConfig(attack="pgd", epsilon=0.1, ratio=1.0, steps=1, step_size=0.01)

    def run(epoch_rollouts: list[int]) -> list[np.ndarray]:
        method, out = Adversarial(cfg), []
        method.model_built(LinearRL(), Ctx())
        for epoch, n in enumerate(epoch_rollouts):
            ctx = Ctx()
            ctx.epoch = epoch
            method.epoch_start(epoch, ctx)
            for _ in range(n):
                buf = rollout()
                method.on_rollout(buf, ctx)
                out.append(buf.obs.numpy().copy())
        return out

    a, b = run([2, 2]), run([2, 2])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])
    resumed = run([0, 2])  # a resumed run redoes epoch 1 from its start
    np.testing.assert_array_equal(resumed[0], a[2])
    np.testing.assert_array_equal(resumed[1], a[3])


def test_zero_ratio_or_epsilon_changes_nothing() -> None:
    for cfg in (AdversarialConfig(ratio=0.0), AdversarialConfig(epsilon=0.0), AdversarialConfig(ratio=0.1)):
        model, buf = LinearRL(), rollout()  # ratio 0.1 of 4 envs rounds to none
        clean = buf.obs.clone()
        perturb_rollout(model, buf, Ctx(), cfg, 0)
        assert torch.equal(buf.obs, clean) and model.seen == []


def test_ppo_with_perturbed_rollouts_moves_weight_to_robust_features_and_flips_less() -> None:
    """A PPO problem whose right action is the sign of a label: feature 0 carries it at a large
    scale (signal 0.5, noise 0.5), twenty small features at a scale of 0.05 each (jointly more
    informative, but an epsilon of 0.05 erases them). Each iteration samples actions from the
    current policy on fresh observations, with advantage +1 for the right action and -1 for the
    wrong one, then runs PPO updates (the real ``ppo_loss``). With the method (FGSM, eps 0.05,
    all envs) the policy leans on feature 0 and FGSM flips fewer of its decisions along a path."""
    from himari.plugin.api import PPOConfig, ppo_loss, sequential_actions
    from himari.trading import EnvConfig
    from himari.training.robustness_sequential import measure_any as measure

    k, steps, envs = 20, 25, 40
    cfg = PPOConfig(clip_range_vf=0.0, ent_coef=0.0)

    def features(n: int, rng):
        sign = rng.choice([-1.0, 1.0], n)
        x = np.empty((n, k + 1), np.float32)
        x[:, 0] = sign * 0.5 + rng.normal(0, 0.5, n)
        x[:, 1:] = sign[:, None] * 0.05 + rng.normal(0, 0.05, (n, k))
        return x, sign

    class PPOLinear:
        paradigm = "online-rl"

        def __init__(self) -> None:
            self.network = torch.nn.Linear(k + 1 + 4, 3, bias=False)
            torch.nn.init.zeros_(self.network.weight)

        def loss(self, batch, ctx):
            logits = self.network(batch["obs"])
            return ppo_loss(logits, torch.zeros_like(batch["values"]), batch, cfg)

        def step_logits(self, obs, starts, state):
            return self.network(obs), None

        def act_sequence(self, features, open_, close, ranges, env, execution=None):
            def step(obs, starts):
                with torch.no_grad():
                    return self.network(torch.tensor(obs)).argmax(-1).numpy()

            return sequential_actions(step, features, open_, close, ranges, env, execution=execution)

    class CtxK:
        model = ModelContext(n_features=k + 1)
        seed = 0
        epoch = 0

    def train(adversarial: bool) -> PPOLinear:
        torch.manual_seed(0)
        model, rng = PPOLinear(), np.random.default_rng(0)
        method = Adversarial(AdversarialConfig(attack="fgsm", epsilon=0.05, ratio=1.0))
        method.model_built(model, CtxK())
        method.epoch_start(0, CtxK())
        opt = torch.optim.Adam(model.network.parameters(), lr=0.02)
        for _ in range(40):
            x, sign = features(steps * envs, rng)
            buf = RolloutBuffer(steps, envs, k + 1 + 4)
            buf.obs[..., :k + 1] = torch.from_numpy(x.reshape(steps, envs, k + 1))
            with torch.no_grad():
                logp = torch.log_softmax(model.network(buf.obs), -1)
            actions = torch.distributions.Categorical(logits=logp).sample()
            buf.actions.copy_(actions)
            buf.logprobs.copy_(logp.gather(-1, actions[..., None])[..., 0])
            right = torch.from_numpy(np.where(sign > 0, 2, 0).reshape(steps, envs))
            buf.advantages.copy_(torch.where(actions == right, 1.0, torch.where(actions == 1, 0.0, -1.0)))
            if adversarial:
                method.on_rollout(buf, CtxK())
            for _ in range(4):
                opt.zero_grad()
                model.loss(buf[torch.arange(envs)], CtxK())[0].backward()
                opt.step()
        return model

    x_test, _ = features(800, np.random.default_rng(1))
    close = np.linspace(100.0, 110.0, 800)
    flips, share = {}, {}
    for adversarial in (False, True):
        model = train(adversarial)
        w = model.network.weight.detach().numpy()[:, :k + 1]
        share[adversarial] = np.abs(w[:, 0]).sum() / np.abs(w).sum()
        out = measure(model, "linear", x_test, close, close, [(0, 800)], EnvConfig(), None, [0.05], pgd_steps=3)
        flips[adversarial] = next(r["flip_rate"] for r in out["results"] if r["attack"] == "fgsm")
    assert share[True] > share[False] + 0.1
    assert flips[True] < 0.7 * flips[False]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_ppo_lstm_run_with_perturbed_rollouts_trains_on_the_gpu(small_prepared: Path, tmp_path: Path) -> None:
    """The attack differentiates the eval-mode LSTM on the GPU (cuDNN's has no such backward)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    summary = tiny_run("ppo-lstm", small_prepared, tmp_path / "adv", methods="adversarial",
                       sets=[*TINY_ONLINE("ppo-lstm"), "adversarial.epsilon=0.1", "adversarial.ratio=0.5",
                             "train.device=cuda"])
    assert summary["device"].startswith("cuda") and summary["steps"] > 0


def test_a_ppo_lstm_run_updates_on_perturbed_rollouts(small_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    """The Trainer hands every rollout to the method: the updates of a ppo-lstm run with it see
    observations that differ from the collected ones on market columns only, and the run ends
    elsewhere than the plain one."""
    import sys

    import himari_builtin.training.adversarial as adv

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    seen: list = []
    original = adv.perturb_rollout

    def spy(model, buf, ctx, config, count):
        before = buf.obs.clone()
        original(model, buf, ctx, config, count)
        seen.append((before, buf.obs.clone(), ctx.model.n_features))

    monkeypatch.setattr(adv, "perturb_rollout", spy)
    sets = TINY_ONLINE("ppo-lstm")
    plain = tiny_run("ppo-lstm", small_prepared, tmp_path / "plain", sets=sets)
    robust = tiny_run("ppo-lstm", small_prepared, tmp_path / "adv", methods="adversarial",
                      sets=[*sets, "adversarial.epsilon=0.1", "adversarial.ratio=0.5"])
    assert seen
    for before, after, f in seen:
        d = (after - before).abs()
        assert float(d[:, :2, :f].max()) > 0.05 and float(d.max()) <= 0.1 + 1e-6  # 2 of the 4 envs move
        assert float(d[:, 2:].max()) == 0 and float(d[..., f:].max()) == 0
    a = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", weights_only=False)["network"]
    b = torch.load(tmp_path / "adv" / "checkpoints" / "last.pt", weights_only=False)["network"]
    assert plain and robust and a.keys() == b.keys()
    assert any(not torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_rollout_step_attack_lowers_the_policys_action_on_market_columns_only(attack: str) -> None:
    """policy logits ``[-u, 0, u]``, ``u = w . obs + h`` (h: the recurrent state of each env):
    the attack moves the first ratio of envs by eps against sign(u) * sign(w) on the market
    columns, cuts the state to those envs, and leaves the rest of the observation alone."""
    from himari_builtin.training.adversarial import perturb_step

    n, eps = 6, 0.1
    obs = torch.from_numpy(np.random.default_rng(0).normal(size=(n, F + ACCOUNT)).astype(np.float32))
    w = torch.tensor(W, dtype=torch.float32)
    h = torch.linspace(-1, 1, n)[None, :, None]  # [1, N, 1]: the env axis at dim 1
    seen_states: list = []

    def policy(x, starts, state):
        seen_states.append(state[0].shape)
        u = x @ w + state[0][0, :, 0]
        return torch.stack([-u, torch.zeros_like(u), u], -1), u, state

    clean = obs.clone()
    out = perturb_step(obs, None, (h,), policy, F, AdversarialConfig(attack=attack, epsilon=eps, ratio=0.5, steps=3),
                       torch.Generator().manual_seed(0))
    k = 3
    assert torch.equal(obs, clean)  # a new tensor
    assert all(s == (1, k, 1) for s in seen_states)
    u = clean[:k] @ w + h[0, :k, 0]
    want = clean[:k, :F] - eps * torch.sign(u)[:, None] * torch.sign(w[:F])[None]
    moved = W[:F] != 0
    torch.testing.assert_close(out[:k, :F][:, moved], want[:, moved], atol=1e-6, rtol=0)
    assert torch.equal(out[:k, F:], clean[:k, F:]) and torch.equal(out[k:], clean[k:])
    u_adv = out[:k] @ w + h[0, :k, 0]
    assert torch.all(torch.sign(u) * u_adv < torch.sign(u) * u - 0.24)  # the taken action's margin falls by eps |w|_1


def test_a_ppo_lstm_run_with_perturbed_rollouts_is_seeded_and_differs(small_prepared: Path, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conformance import TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    sets = [*TINY_ONLINE("ppo-lstm"), "adversarial.rollouts=true", "adversarial.epsilon=0.2"]
    nets = []
    for name, extra in (("a", sets), ("b", sets), ("c", [*TINY_ONLINE("ppo-lstm"), "adversarial.epsilon=0.2"])):
        tiny_run("ppo-lstm", small_prepared, tmp_path / name, methods="adversarial", sets=extra)
        nets.append(torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)["network"])
    assert all(torch.equal(nets[0][n], nets[1][n]) for n in nets[0])  # seeded: the same run twice
    assert any(not torch.equal(nets[0][n], nets[2][n]) for n in nets[0])  # rollouts attacked: another run


def test_a_ppo_lstm_run_with_perturbed_rollouts_resumes_exactly(small_prepared: Path, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conformance import check_training_method  # type: ignore[import-not-found]

    check_training_method("adversarial", "ppo-lstm", small_prepared, tmp_path,
                          extra_sets=["adversarial.rollouts=true", "adversarial.attack=pgd", "adversarial.epsilon=0.2"])
