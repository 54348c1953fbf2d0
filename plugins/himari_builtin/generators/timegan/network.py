"""TimeGAN's five recurrent networks (torch), after Yoon, Jarrett and van der Schaar (NeurIPS 2019).

Each network is a stacked GRU (or LSTM) read by a linear layer at every step: the embedder maps
windows to latent sequences, the recovery maps them back, the generator maps noise sequences to
latent sequences, the supervisor predicts the next latent step from the previous ones, and the
discriminator scores each latent step real or fake (logits). Latent values and recovered
windows pass through a sigmoid: the data are min-max scaled to [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class _Recurrent(nn.Module):
    """A stacked recurrent net with a linear read-out at every step, optionally through a sigmoid."""

    def __init__(self, cell: str, d_in: int, hidden: int, layers: int, d_out: int, sigmoid: bool) -> None:
        super().__init__()
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(d_in, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, d_out)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        y = self.out(h)
        return torch.sigmoid(y) if self.sigmoid else y


class TimeGANNetworks(nn.Module):
    """Embedder, recovery, generator, supervisor and discriminator of one TimeGAN."""

    def __init__(self, channels: int, hidden: int, layers: int, cell: str = "gru") -> None:
        super().__init__()
        self.embedder = _Recurrent(cell, channels, hidden, layers, hidden, True)
        self.recovery = _Recurrent(cell, hidden, hidden, layers, channels, True)
        self.generator = _Recurrent(cell, channels, hidden, layers, hidden, True)
        self.supervisor = _Recurrent(cell, hidden, hidden, layers - 1, hidden, True)
        self.discriminator = _Recurrent(cell, hidden, hidden, layers, 1, False)


def moment_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The paper's moment matching: mean absolute gap of the standard deviations and of the means
    over the batch, at every step and channel."""
    std_hat = torch.sqrt(x_hat.var(dim=0, unbiased=False) + 1e-6)
    std = torch.sqrt(x.var(dim=0, unbiased=False) + 1e-6)
    return (std_hat - std).abs().mean() + (x_hat.mean(dim=0) - x.mean(dim=0)).abs().mean()


# ------------------------------------------------------------------------------ the losses
# The paper's objectives with its weights (the authors' reference code), written apart so that
# each can be checked by hand; ``*_mse`` are mean squared errors, ``y_*`` discriminator logits.


def autoencoder_loss(reconstruction_mse: torch.Tensor) -> torch.Tensor:
    """Phase 1, embedder and recovery: ``10 sqrt(MSE(x, x~))``."""
    return 10 * torch.sqrt(reconstruction_mse)


def generator_loss(y_fake: torch.Tensor, y_fake_e: torch.Tensor, supervised_mse: torch.Tensor,
                   moments: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint phase, generator and supervisor: the discriminator fooled on the supervised latents
    h^ and (times ``gamma``) on the generator's own e^, ``100 sqrt(supervised)`` and
    ``100 moments``. Returns the loss and its first term (logged as the unsupervised loss)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    fooled = bce(y_fake, torch.ones_like(y_fake))
    return (fooled + gamma * bce(y_fake_e, torch.ones_like(y_fake_e)) + 100 * torch.sqrt(supervised_mse)
            + 100 * moments), fooled


def embedder_loss(reconstruction_mse: torch.Tensor, supervised_mse: torch.Tensor) -> torch.Tensor:
    """Joint phase, embedder and recovery: ``10 sqrt(reconstruction) + 0.1 supervised``."""
    return 10 * torch.sqrt(reconstruction_mse) + 0.1 * supervised_mse


def discriminator_loss(y_real: torch.Tensor, y_fake: torch.Tensor, y_fake_e: torch.Tensor,
                       gamma: float) -> torch.Tensor:
    """Real latents scored real, h^ and (times ``gamma``) e^ scored fake."""
    bce = nn.functional.binary_cross_entropy_with_logits
    return (bce(y_real, torch.ones_like(y_real)) + bce(y_fake, torch.zeros_like(y_fake))
            + gamma * bce(y_fake_e, torch.zeros_like(y_fake_e)))
