"""The autoencoders and their conversation (torch).

Each partner is a small MLP autoencoder of the combined window ``[target, its context]``
(``2 x window`` values) through a ``latent``-wide bottleneck. Training is a conversation: at
each step one partner speaks (it fits its own window only) and the others listen (they fit
their windows and are pulled towards the speaker's reconstruction of the target, with
``agreement_weight``, the speaker's output held fixed); the speaker's role rotates every step.
Partners see the same target through different contexts, so what they can agree on is what the
contexts corroborate: the structure of the target rather than its idiosyncratic noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from himari.plugin.api import ConfigError
from himari_builtin.preprocessing.conversational_ae.config import ConversationalAEConfig

EVAL_BATCH = 8192


class Autoencoder(nn.Module):
    """Linear + tanh, Linear to the bottleneck; Linear + tanh, Linear back to the input."""

    def __init__(self, n_in: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Conversation(nn.Module):
    """The partners: partner j reads channels ``[0, j + 1]`` of a ``[B, 1 + K, W]`` window."""

    def __init__(self, n_partners: int, window: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.window = window
        self.partners = nn.ModuleList(Autoencoder(2 * window, hidden, latent) for _ in range(n_partners))

    def inputs(self, x: torch.Tensor, j: int) -> torch.Tensor:
        return x[:, [0, j + 1], :].reshape(len(x), 2 * self.window)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each partner's reconstruction of its ``[B, 2, W]`` window."""
        return [p(self.inputs(x, j)).view(len(x), 2, self.window) for j, p in enumerate(self.partners)]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run on one CPU thread, then give torch back its own count: these networks are far too
    small for intra-op threads to pay, and on a busy machine the threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build(config: ConversationalAEConfig, seed: int) -> Conversation:
    """The partners with weights drawn from ``seed`` (torch's global generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Conversation(len(config.contexts), config.window, config.hidden, config.latent)


def reconstruct(model: Conversation, x: np.ndarray) -> np.ndarray:
    """``[K, n, W]``: each partner's reconstruction of the target channel of windows ``x``."""
    model.eval()
    out = np.zeros((len(model.partners), len(x), model.window), dtype=np.float32)
    with torch.no_grad(), one_thread():
        for i in range(0, len(x), EVAL_BATCH):
            rec = model(torch.from_numpy(x[i:i + EVAL_BATCH]))
            for j, r in enumerate(rec):
                out[j, i:i + EVAL_BATCH] = r[:, 0].numpy()
    return out


def scores(model: Conversation, x: np.ndarray, agreement_weight: float) -> dict[str, float]:
    """Errors on windows ``x`` (standardised units: 1.0 is the error of predicting the mean).

    ``recon_mse``: the partners' mean squared error on their whole window (target and context);
    ``target_mse``: the agreed (mean) reconstruction's error on the target window;
    ``endpoint_mse``: the same at the window's last row, the value ``transform`` outputs;
    ``disagreement``: mean squared distance of each partner's target reconstruction from the
    agreed one; ``partner_corr``: correlation of the partners' outputs at the last row (first
    two partners); ``objective``: ``recon_mse + agreement_weight x disagreement``."""
    model.eval()
    sq, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH):
            xb = torch.from_numpy(x[i:i + EVAL_BATCH])
            for j, r in enumerate(model(xb)):
                sq += float(((r - xb[:, [0, j + 1], :]) ** 2).sum())
            n += len(xb)
    recon = sq / (n * len(model.partners) * 2 * model.window)
    targets = reconstruct(model, x)
    agreed = targets.mean(axis=0)
    disagreement = float(((targets - agreed) ** 2).mean())
    end = targets[:, :, -1].astype(np.float64)
    corr = float(np.corrcoef(end[0], end[1])[0, 1]) if end.shape[1] > 1 and end[:2].std(axis=1).min() > 0 else 0.0
    return {"recon_mse": recon,
            "target_mse": float(((agreed - x[:, 0]) ** 2).mean()),
            "endpoint_mse": float(((agreed[:, -1] - x[:, 0, -1]) ** 2).mean()),
            "disagreement": disagreement,
            "partner_corr": corr,
            "objective": recon + agreement_weight * disagreement}


def converse(config: ConversationalAEConfig, train: np.ndarray, holdout: np.ndarray, seed: int,
             advance: Callable[..., None]) -> tuple[Conversation, dict[str, Any]]:
    """Train the partners on ``train`` windows ``[n, 1 + K, W]``; keep the round with the best
    objective on ``holdout``. Returns the model and what happened (rounds, held-out scores)."""
    with one_thread():
        return _converse(config, train, holdout, seed, advance)


def _converse(config: ConversationalAEConfig, train: np.ndarray, holdout: np.ndarray, seed: int,
              advance: Callable[..., None]) -> tuple[Conversation, dict[str, Any]]:
    model = build(config, seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(seed)
    xt = torch.from_numpy(train)
    k = len(model.partners)
    best, best_state, best_round, since, step, rounds = float("inf"), None, 0, 0, 0, 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(train)))
        for i in range(0, len(order), config.batch_size):
            xb = xt[order[i:i + config.batch_size]]
            recs = model(xb)
            loss = sum(((r - xb[:, [0, j + 1], :]) ** 2).mean() for j, r in enumerate(recs))
            speaker = step % k
            said = recs[speaker][:, 0].detach()
            if config.agreement_weight > 0:
                loss = loss + config.agreement_weight * sum(((r[:, 0] - said) ** 2).mean()
                                                            for j, r in enumerate(recs) if j != speaker)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        rounds = epoch + 1
        objective = scores(model, holdout, config.agreement_weight)["objective"]
        advance()
        if objective < best:
            best, best_round, since = objective, rounds, 0
            best_state = {name: t.detach().clone() for name, t in model.state_dict().items()}
        else:
            since += 1
            if config.patience and since >= config.patience:
                break
    if best_state is None:
        raise ConfigError("conversational-ae: training diverged (the held-out error is not finite); "
                          "lower conversational-ae.lr")
    model.load_state_dict(best_state)
    return model, {"rounds": rounds, "best_round": best_round, "steps": step,
                   "holdout": scores(model, holdout, config.agreement_weight)}
