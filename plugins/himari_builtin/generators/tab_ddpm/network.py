"""Tab-DDPM's denoiser and its two diffusion processes (torch), after Kotelnikov et al.,
"TabDDPM: Modelling Tabular Data with Diffusion Models" (ICML 2023).

- **Denoiser** (``MLPDiffusion``): the noisy row (numerical values and the one-hot categorical
  columns) is projected to ``dim_t``, the sinusoidal timestep embedding (through Linear-SiLU-Linear)
  and the class embedding (through SiLU) are added, and an MLP (Linear-ReLU-Dropout blocks)
  returns the noise of the numerical part and the logits of each categorical column's original
  value.
- **Gaussian diffusion** on the numerical columns: cosine schedule (Nichol and Dhariwal 2021),
  epsilon prediction, MSE loss; ancestral sampling with the variance ``beta_t`` (the posterior
  variance at the first step).
- **Multinomial diffusion** (Hoogeboom et al. 2021) on each categorical column of K classes:
  ``q(x_t | x_{t-1}) = Cat((1 - beta_t) x_{t-1} + beta_t / K)``; the loss is the KL divergence
  between the true posterior and the one given the predicted original (the decoder's negative
  log-likelihood at t = 0), weighted by T as for uniformly drawn timesteps, plus the prior's KL,
  averaged over the categorical columns. Computed in log space.
"""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPDiffusion(nn.Module):
    def __init__(self, d_in: int, num_classes: int, layers: tuple[int, ...], dropout: float, dim_t: int) -> None:
        super().__init__()
        self.dim_t = dim_t
        blocks: list[nn.Module] = []
        width = dim_t
        for w in layers:
            blocks += [nn.Linear(width, w), nn.ReLU(), nn.Dropout(dropout)]
            width = w
        blocks.append(nn.Linear(width, d_in))
        self.mlp = nn.Sequential(*blocks)
        self.proj = nn.Linear(d_in, dim_t)
        self.time_embed = nn.Sequential(nn.Linear(dim_t, dim_t), nn.SiLU(), nn.Linear(dim_t, dim_t))
        self.label_emb = nn.Embedding(num_classes, dim_t)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.dim_t)) + F.silu(self.label_emb(y))
        return self.mlp(self.proj(x) + emb)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """``beta_t = 1 - abar(t + 1) / abar(t)`` with ``abar(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2``."""
    def abar(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - abar(i + 1) / abar(i), max_beta) for i in range(T)], dtype=torch.float64)


class Schedule:
    """Every per-timestep coefficient both processes use (float64, then float32 on the device)."""

    def __init__(self, T: int, device: torch.device) -> None:
        betas = cosine_betas(T)
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        posterior_var = betas * (1 - ac_prev) / (1 - ac)
        f = lambda x: x.to(torch.float32).to(device)  # noqa: E731
        self.T = T
        self.sqrt_ac, self.sqrt_1m_ac = f(ac.sqrt()), f((1 - ac).sqrt())
        self.coef_x0 = f(betas * ac_prev.sqrt() / (1 - ac))
        self.coef_xt = f((1 - ac_prev) * alphas.sqrt() / (1 - ac))
        self.log_var = f(torch.log(torch.cat([posterior_var[1:2], betas[1:]])))
        self.log_alpha, self.log_1m_alpha = f(torch.log(alphas)), f(torch.log1p(-alphas))
        self.log_ac, self.log_1m_ac = f(torch.log(ac)), f(torch.log1p(-ac))


def _at(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return v[t][:, None]


# ---------------------------------------------------------------------------- Gaussian part


def gaussian_q_sample(s: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return _at(s.sqrt_ac, t) * x0 + _at(s.sqrt_1m_ac, t) * eps


# The quantile transform maps every train value into [-X0_BOUND, X0_BOUND] (scikit-learn clips the
# normal's tails at probability 1e-7), so no original x_0 lies outside it.
X0_BOUND = statistics.NormalDist().inv_cdf(1.0 - 1e-7)


def gaussian_p_sample(s: Schedule, x_t: torch.Tensor, t: torch.Tensor, eps_hat: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step. The predicted x_0 is clipped to the data's range first (DDPM's
    ``clip_denoised``): in the first reverse steps x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    divides the network's error by sqrt(abar) ~ 1e-3, and the posterior mean at t = T - 1 passes
    it on about 30-fold (beta is capped at 0.999 there), so an error of 0.5 in eps made the
    samples' standard deviation 15 after one step and ~10^4 at the end: every generated value then
    mapped back to a column's train minimum or maximum."""
    x0 = ((x_t - _at(s.sqrt_1m_ac, t) * eps_hat) / _at(s.sqrt_ac, t)).clamp(-X0_BOUND, X0_BOUND)
    mean = _at(s.coef_x0, t) * x0 + _at(s.coef_xt, t) * x_t
    nonzero = (t > 0).float()[:, None]
    return mean + nonzero * torch.exp(0.5 * _at(s.log_var, t)) * noise


# ------------------------------------------------------------------------- multinomial part


def _log_add_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = torch.maximum(a, b)
    return m + torch.log(torch.exp(a - m) + torch.exp(b - m))


class Multinomial:
    """Multinomial diffusion of ``n`` categorical columns of ``K`` classes each, in log space;
    tensors are ``[B, n * K]`` (column after column)."""

    def __init__(self, s: Schedule, n: int, K: int) -> None:
        self.s, self.n, self.K = s, n, K

    def _norm(self, log_p: torch.Tensor) -> torch.Tensor:
        b = log_p.shape[0]
        v = log_p.view(b, self.n, self.K)
        return (v - torch.logsumexp(v, dim=-1, keepdim=True)).view(b, -1)

    def log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return self._norm(logits)

    def q_pred(self, log_x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_t | x_0) = log(abar_t x_0 + (1 - abar_t) / K)."""
        return _log_add_exp(log_x0 + _at(self.s.log_ac, t), _at(self.s.log_1m_ac, t) - math.log(self.K))

    def q_pred_one_step(self, log_x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_t | x_{t-1}) as a function of x_{t-1}'s class: log(alpha_t x_t + (1 - alpha_t) / K)."""
        return _log_add_exp(log_x_t + _at(self.s.log_alpha, t), _at(self.s.log_1m_alpha, t) - math.log(self.K))

    def q_posterior(self, log_x0: torch.Tensor, log_x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_{t-1} | x_t, x_0), normalised per column (x_0 itself at t = 0)."""
        prev = self.q_pred(log_x0, (t - 1).clamp(min=0))
        prev = torch.where((t == 0)[:, None], log_x0, prev)
        return self._norm(prev + self.q_pred_one_step(log_x_t, t))

    def sample(self, log_p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One class per column drawn from ``log_p`` (Gumbel-max), returned as a log one-hot."""
        return self.sample_with(log_p, torch.rand(log_p.shape, generator=g, device=log_p.device))

    def sample_with(self, log_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``sample`` with its uniform noise ``u`` (shape of ``log_p``) drawn by the caller: a step
        replayed as a CUDA graph draws its noise outside the graph."""
        b = log_p.shape[0]
        gumbel = -torch.log(-torch.log(u + 1e-30) + 1e-30)
        idx = (log_p + gumbel).view(b, self.n, self.K).argmax(-1)
        return self.log_onehot(idx)

    def log_onehot(self, idx: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(idx, self.K).float().view(idx.shape[0], -1)
        return torch.log(onehot.clamp(min=1e-30))

    def loss(self, log_x0: torch.Tensor, log_x_t: torch.Tensor, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-row loss: T x KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) (at t = 0 the decoder's
        negative log-likelihood) plus the prior's KL, averaged over the columns."""
        b = log_x0.shape[0]
        log_true = self.q_posterior(log_x0, log_x_t, t)
        log_model = self.q_posterior(self.log_softmax(logits), log_x_t, t)
        kl = (log_true.exp() * (log_true - log_model)).view(b, self.n, self.K).sum((1, 2))
        nll = -(log_x0.exp() * log_model).view(b, self.n, self.K).sum((1, 2))
        lt = torch.where(t == 0, nll, kl)
        last = torch.full_like(t, self.s.T - 1)
        log_qT = self.q_pred(log_x0, last)
        prior = (log_qT.exp() * (log_qT + math.log(self.K))).view(b, self.n, self.K).sum((1, 2))
        return (lt * self.s.T + prior) / self.n
