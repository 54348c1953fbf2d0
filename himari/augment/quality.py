"""How good a synthetic set is, measured the way the TimeGAN paper measures it, plus the
stylised facts of returns a quant checks first.

- **Discriminative score** (Yoon et al. 2019, section 5): a post-hoc recurrent classifier (one GRU
  layer of ``max(k // 2, 4)`` units on ``k`` channels, its last state read by a linear layer) is
  trained to tell real windows from synthetic ones on 80% of each and tested on the other 20%;
  the score is ``|accuracy - 0.5|``: 0 when it cannot tell them apart, 0.5 when it always can.
- **Predictive score** (train on synthetic, test on real): a post-hoc GRU trained on the synthetic
  windows predicts the last channel one step ahead from the other channels (all of them when
  there is one); the score is its mean absolute error on the real windows, in min-max-scaled
  units (the paper's). The same predictor trained on real windows gives the reference.
- **Stylised facts** of the returns channel: excess kurtosis, the autocorrelation of returns and
  of absolute returns at lags 1..50 (volatility clustering), and the tail quantiles. The real
  series is measured whole; generated windows are independent, so their autocorrelations come
  from pairs inside a window (lags up to the window length - 1).

Every input is min-max scaled with the real windows' range before the post-hoc networks see it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = (0.001, 0.01, 0.05, 0.95, 0.99, 0.999)
MAX_LAG = 50


# ------------------------------------------------------------------------ stylised facts


def excess_kurtosis(x: np.ndarray) -> float:
    """Population excess kurtosis ``m4 / m2**2 - 3`` (0 for a normal distribution)."""
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean()
    m2 = float(np.mean(d**2))
    return float(np.mean(d**4) / m2**2 - 3.0) if m2 > 0 else float("nan")


def autocorrelation(x: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Sample autocorrelation at lags 1..max_lag: ``sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2``
    (NaN for lags the series is too short for)."""
    x = np.asarray(x, dtype=np.float64)
    d = x - x.mean()
    denom = float(np.dot(d, d))
    out = np.full(max_lag, np.nan)
    if denom <= 0:
        return out
    for k in range(1, max_lag + 1):
        if k < len(d):
            out[k - 1] = float(np.dot(d[:-k], d[k:])) / denom
    return out


def window_autocorrelation(windows: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """Autocorrelation at lags 1..max_lag of independent windows ``[n, L]`` of one series, from
    the pairs inside each window only: the correlation of the lag-k pairs about the mean ``m`` of
    every value, ``mean(a b) / sqrt(mean(a^2) mean(b^2))`` with ``a = x_t - m`` and ``b = x_{t+k} - m``
    (NaN for lags >= L: no window holds such a pair). Laying generated windows end to end would
    mix in pairs across two unrelated windows. Normalising by the pairs' own spread (not by the
    variance of all values) keeps it within [-1, 1]: a window with a trend has its extremes at
    its ends, and the long-lag pairs are exactly those ends."""
    w = np.asarray(windows, dtype=np.float64)
    d = w - w.mean()
    out = np.full(max_lag, np.nan)
    if float(np.mean(d * d)) <= 0:
        return out
    for k in range(1, min(max_lag, w.shape[1] - 1) + 1):
        a, b = d[:, :-k], d[:, k:]
        scale = float(np.sqrt(np.mean(a * a) * np.mean(b * b)))
        if scale > 0:
            out[k - 1] = float(np.mean(a * b)) / scale
    return out


def stylised_facts(returns: np.ndarray, *, ordered: bool = True, max_lag: int = MAX_LAG) -> dict[str, Any]:
    """Kurtosis, tail quantiles and (for a time-ordered series) the autocorrelation of returns
    and of absolute returns at lags 1..max_lag. ``returns`` is one series, or windows ``[n, L]``
    of one (generated windows), whose autocorrelations come from pairs inside a window."""
    r = np.asarray(returns, dtype=np.float64)
    if ordered and r.ndim == 2:
        w = r[np.isfinite(r).all(axis=1)]
        facts = stylised_facts(w.reshape(-1), ordered=False, max_lag=max_lag)
        facts["acf_returns"] = [_plain(v) for v in window_autocorrelation(w, max_lag)]
        facts["acf_abs_returns"] = [_plain(v) for v in window_autocorrelation(np.abs(w), max_lag)]
        return facts
    r = r.reshape(-1)
    r = r[np.isfinite(r)]
    out: dict[str, Any] = {"n": int(len(r)), "std": float(r.std()) if len(r) else float("nan"),
                           "kurtosis": excess_kurtosis(r) if len(r) > 3 else float("nan"),
                           "quantiles": {str(q): float(np.quantile(r, q)) for q in QUANTILES} if len(r) else {}}
    if ordered:
        out["acf_returns"] = [_plain(v) for v in autocorrelation(r, max_lag)]
        out["acf_abs_returns"] = [_plain(v) for v in autocorrelation(np.abs(r), max_lag)]
    return out


def _plain(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


# ------------------------------------------------------------------------ post-hoc networks


def scale_like(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Min-max scale ``reference`` and ``others`` with ``reference``'s per-channel range."""
    k = reference.shape[-1]
    flat = reference.reshape(-1, k).astype(np.float64)
    lo, span = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0) + 1e-7
    return [((np.asarray(a, np.float64) - lo) / span).astype(np.float32) for a in (reference, *others)]


def _torch_setup(seed: int, device: str) -> tuple[Any, Any]:
    import torch

    from himari.data.windows import torch_generator

    return torch.device(device), torch_generator(seed, device)


class _GRUHead:
    """A one-layer GRU with a linear read-out (built inside a forked RNG so it never disturbs the
    caller's random streams)."""

    @staticmethod
    def build(d_in: int, hidden: int, d_out: int, seed: int, device: Any) -> Any:
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.rnn = nn.GRU(d_in, hidden, batch_first=True)
                self.out = nn.Linear(hidden, d_out)

            def forward(self, x: torch.Tensor, last: bool) -> torch.Tensor:
                h, _ = self.rnn(x)
                return self.out(h[:, -1] if last else h)

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return Net().to(device)


def discriminative_score(real: np.ndarray, synthetic: np.ndarray, *, steps: int = 2000, batch_size: int = 128,
                         seed: int = 0, device: str = "cpu") -> float:
    """``|accuracy - 0.5|`` of a post-hoc GRU classifier of real against synthetic windows
    (``[n, L, k]`` each, already on one scale), trained on 80% of each and tested on the rest."""
    import torch
    import torch.nn.functional as F

    n = min(len(real), len(synthetic))
    if n < 5:
        raise ValueError(f"the discriminative score needs at least 5 windows of each, got {n}")
    dev, g = _torch_setup(seed, device)
    rng = np.random.default_rng(seed)
    r = real[rng.permutation(len(real))[:n]]
    s = synthetic[rng.permutation(len(synthetic))[:n]]
    cut = int(0.8 * n)
    k = real.shape[-1]
    net = _GRUHead.build(k, max(k // 2, 4), 1, seed, dev)
    opt = torch.optim.Adam(net.parameters())
    r_train, s_train = torch.from_numpy(r[:cut]).to(dev), torch.from_numpy(s[:cut]).to(dev)
    b = min(batch_size, cut)
    for _ in range(steps):
        xr = r_train[torch.randint(cut, (b,), generator=g, device=dev)]
        xs = s_train[torch.randint(cut, (b,), generator=g, device=dev)]
        logits = net(torch.cat([xr, xs]), last=True)[:, 0]
        target = torch.cat([torch.ones(b, device=dev), torch.zeros(b, device=dev)])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pr = net(torch.from_numpy(r[cut:]).to(dev), last=True)[:, 0] > 0
        ps = net(torch.from_numpy(s[cut:]).to(dev), last=True)[:, 0] > 0
    correct = int(pr.sum()) + int((~ps).sum())
    return abs(correct / (len(pr) + len(ps)) - 0.5)


def predictive_score(train_on: np.ndarray, test_on: np.ndarray, *, steps: int = 5000, batch_size: int = 128,
                     seed: int = 0, device: str = "cpu") -> float | None:
    """Mean absolute error on ``test_on`` of a post-hoc GRU trained on ``train_on`` to predict the
    last channel one step ahead from the other channels (all channels when there is one). None
    for windows of one step (nothing to predict)."""
    import torch

    L, k = train_on.shape[1], train_on.shape[2]
    if L < 2:
        return None
    inputs = slice(0, k - 1) if k > 1 else slice(0, 1)
    dev, g = _torch_setup(seed, device)
    net = _GRUHead.build(inputs.stop - inputs.start, max(k // 2, 4), 1, seed, dev)
    opt = torch.optim.Adam(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(train_on)).to(dev)
    b = min(batch_size, len(x))
    for _ in range(steps):
        xb = x[torch.randint(len(x), (b,), generator=g, device=dev)]
        pred = torch.sigmoid(net(xb[:, :-1, inputs], last=False))[:, :, 0]
        loss = (pred - xb[:, 1:, -1]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    y = torch.from_numpy(np.ascontiguousarray(test_on)).to(dev)
    with torch.no_grad():
        errors = []
        for a in range(0, len(y), 4096):
            yb = y[a:a + 4096]
            pred = torch.sigmoid(net(yb[:, :-1, inputs], last=False))[:, :, 0]
            errors.append((pred - yb[:, 1:, -1]).abs().mean(dim=1).cpu())
    return float(torch.cat(errors).mean())
