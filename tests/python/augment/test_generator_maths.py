"""The generators' arithmetic against the papers' formulas, each worked out here on its own:
Tab-DDPM's cosine schedule (Nichol and Dhariwal 2021) through its telescoping product, the
Gaussian posterior (Ho et al. 2020) by conditioning the joint Gaussian of x_{t-1} and x_t, the
sampler's "fixed large" variance of Tab-DDPM's reference code, the multinomial posterior and
loss (Hoogeboom et al. 2021) by Bayes' rule on a hand-picked batch, and TimeGAN's losses with
their weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from himari_builtin.generators.tab_ddpm.network import (
    Multinomial,
    Schedule,
    cosine_betas,
    gaussian_q_sample,
)

T = 1000


def abar(t: float) -> float:
    """The paper's f(t) / f(0) before normalising: cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008."""
    return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2


def schedule_numpy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    betas = cosine_betas(T).numpy()
    alphas = 1.0 - betas
    return betas, alphas, np.cumprod(alphas)


def test_cosine_schedule_telescopes_and_only_its_last_step_is_capped() -> None:
    betas, _, ac = schedule_numpy()
    assert betas[0] == pytest.approx(1 - abar(1) / abar(0), rel=1e-12)
    for t in (0, 1, 10, 500, 900, 998):  # alpha_0 ... alpha_t multiply to abar(t + 1) / abar(0)
        assert ac[t] == pytest.approx(abar(t + 1) / abar(0), rel=1e-9), t
    assert betas[-1] == 0.999 and betas[:-1].max() < 0.9  # cos(pi/2) = 0 at t = T: beta 1, capped


def test_gaussian_coefficients_are_the_forward_process_posterior() -> None:
    """x_{t-1} | x_0 ~ N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}) and x_t = sqrt(a_t) x_{t-1} + sqrt(1 - a_t) z:
    E[x_{t-1} | x_t, x_0] = sqrt(ab_{t-1}) x_0 + g (x_t - sqrt(ab_t) x_0) with g = cov / var(x_t)."""
    s = Schedule(T, torch.device("cpu"))
    betas, alphas, ac = schedule_numpy()
    posterior_var = {}
    for t in (1, 7, 300, 998):
        cov = math.sqrt(alphas[t]) * (1 - ac[t - 1])
        var_t = alphas[t] * (1 - ac[t - 1]) + (1 - alphas[t])
        gain = cov / var_t
        assert float(s.coef_xt[t]) == pytest.approx(gain, rel=1e-5), t
        assert float(s.coef_x0[t]) == pytest.approx(math.sqrt(ac[t - 1]) - gain * math.sqrt(ac[t]), rel=1e-5), t
        posterior_var[t] = (1 - ac[t - 1]) - gain * cov
        # the sampler's variance is beta_t ("fixed large", as Tab-DDPM's reference code), not the posterior's
        assert float(s.log_var[t]) == pytest.approx(math.log(betas[t]), rel=1e-5), t
    assert float(s.log_var[0]) == pytest.approx(math.log(posterior_var[1]), rel=1e-5)  # t = 0 borrows t = 1's
    assert float(s.coef_x0[0]) == pytest.approx(1.0, rel=1e-6) and abs(float(s.coef_xt[0])) < 1e-7  # x_0 itself
    x0, eps, t = torch.ones(2, 3), torch.full((2, 3), 2.0), torch.tensor([10, 600])
    want = [math.sqrt(ac[k]) + 2 * math.sqrt(1 - ac[k]) for k in (10, 600)]
    np.testing.assert_allclose(gaussian_q_sample(s, x0, t, eps)[:, 0].numpy(), want, rtol=1e-6)


def _bayes(x0: np.ndarray, xt: np.ndarray, t: int, alphas: np.ndarray, ac: np.ndarray, K: int) -> np.ndarray:
    """q(x_{t-1} = k | x_t, x_0) over k for one column: q(x_{t-1} | x_0) = ab_{t-1} x_0 + (1 - ab_{t-1}) / K
    times q(x_t | x_{t-1} = k) = a_t [x_t = k] + (1 - a_t) / K, normalised; at t = 0, x_0 times the latter."""
    prior = x0 if t == 0 else ac[t - 1] * x0 + (1 - ac[t - 1]) / K
    like = alphas[t] * xt + (1 - alphas[t]) / K
    post = prior * like
    return post / post.sum()


def test_multinomial_posterior_and_loss_by_bayes_rule() -> None:
    K, n = 3, 2
    s = Schedule(T, torch.device("cpu"))
    _, alphas, ac = schedule_numpy()
    alphas, ac = alphas.astype(np.float32).astype(np.float64), ac.astype(np.float32).astype(np.float64)
    m = Multinomial(s, n, K)
    x0_idx = torch.tensor([[0, 2], [1, 1], [2, 0], [0, 1]])
    xt_idx = torch.tensor([[1, 2], [1, 0], [0, 0], [2, 2]])
    t = torch.tensor([0, 5, 400, 900])
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.1, 0.2, -0.3], [1.0, 1.0, 1.0, -2.0, 0.0, 2.0],
                           [0.0, 3.0, -1.0, 0.4, 0.4, 0.0], [-1.0, 0.0, 1.0, 2.0, -2.0, 0.5]])
    log_x0, log_xt = m.log_onehot(x0_idx), m.log_onehot(xt_idx)
    loss = m.loss(log_x0, log_xt, logits, t).numpy()
    eye = np.eye(K)
    for i in range(4):
        ti = int(t[i])
        lt = prior = 0.0
        for c in range(n):
            x0, xt = eye[int(x0_idx[i, c])], eye[int(xt_idx[i, c])]
            z = logits[i, c * K:(c + 1) * K].double().numpy()
            pred = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            model = _bayes(pred, xt, ti, alphas, ac, K)
            posterior = m.q_posterior(m.log_softmax(logits[i:i + 1]), log_xt[i:i + 1], t[i:i + 1]).exp()
            np.testing.assert_allclose(posterior[0, c * K:(c + 1) * K].numpy(), model, rtol=2e-3, atol=1e-6)  # float32
            if ti == 0:
                lt += -math.log(model[int(x0_idx[i, c])])  # the decoder's negative log-likelihood
            else:
                true = _bayes(x0, xt, ti, alphas, ac, K)
                lt += float((true * (np.log(true) - np.log(model))).sum())  # KL(true || model)
            q_last = ac[T - 1] * x0 + (1 - ac[T - 1]) / K
            prior += float((q_last * np.log(q_last * K)).sum())  # KL(q(x_T | x_0) || uniform)
        assert loss[i] == pytest.approx((T * lt + prior) / n, rel=2e-3, abs=1e-4), i  # float32 in the model
    assert loss[3] > 0 and loss[1] > 0


def test_timegan_losses_carry_the_paper_s_weights() -> None:
    """TimeGAN's objectives by hand on picked logits and errors: BCE with logits is
    log(1 + e^-y) for a "real" target and log(1 + e^y) for a "fake" one; the weights are the
    reference code's (10 sqrt(reconstruction), 100 sqrt(supervised), 100 moments, 0.1 supervised
    for the embedder, gamma on the generator's own latents)."""
    from himari_builtin.generators.timegan.network import (
        autoencoder_loss,
        discriminator_loss,
        embedder_loss,
        generator_loss,
    )

    def real(y: list[float]) -> float:
        return float(np.mean([math.log1p(math.exp(-v)) for v in y]))

    def fake(y: list[float]) -> float:
        return float(np.mean([math.log1p(math.exp(v)) for v in y]))

    y_real, y_fake, y_fake_e = [0.5, -1.0, 2.0], [1.5, 0.0, -0.5], [-2.0, 0.3, 1.0]
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    gamma, sup, mom, rec = 0.7, t(0.04), t(0.02), t(0.09)
    assert float(autoencoder_loss(rec)) == pytest.approx(10 * 0.3)
    assert float(embedder_loss(rec, sup)) == pytest.approx(10 * 0.3 + 0.1 * 0.04)
    loss, fooled = generator_loss(t(y_fake), t(y_fake_e), sup, mom, gamma)
    assert float(loss) == pytest.approx(real(y_fake) + gamma * real(y_fake_e) + 100 * 0.2 + 100 * 0.02)
    assert float(fooled) == pytest.approx(real(y_fake))  # the logged unsupervised term
    assert float(discriminator_loss(t(y_real), t(y_fake), t(y_fake_e), gamma)) == pytest.approx(
        real(y_real) + fake(y_fake) + gamma * fake(y_fake_e))


def test_timegan_moment_loss_by_hand() -> None:
    """Mean absolute gap of the batch's standard deviations (population, with 1e-6 under the root)
    and of its means, at each step and channel."""
    from himari_builtin.generators.timegan.network import moment_loss

    x = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]], [[4.0, 4.0]]], dtype=torch.float64)  # [batch 3, step 1, 2]
    x_hat = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 3.0]]], dtype=torch.float64)
    std = [math.sqrt(8 / 3 + 1e-6), math.sqrt(2 + 1e-6)]
    std_hat = [math.sqrt(0 + 1e-6), math.sqrt(2 + 1e-6)]
    means, means_hat = [2.0, 2.0], [1.0, 1.0]
    want = np.mean(np.abs(np.subtract(std_hat, std))) + np.mean(np.abs(np.subtract(means_hat, means)))
    assert float(moment_loss(x_hat, x)) == pytest.approx(want, rel=1e-12)
