"""online-augment (A8): random jitter, scaling, magnitude warping and Gaussian noise on the
training inputs, fresh at every batch (Um et al. 2017, "Data augmentation of wearable sensor data
for Parkinson's disease monitoring using convolutional neural networks"; Iwana & Uchida 2021,
"An empirical survey of data augmentation for time series classification with neural
networks"; for RL, Laskin et al. 2020, "Reinforcement learning with augmented data", RAD).

Each transform is applied to each sample with its own probability ``*_p`` and strength:

- **scaling**: the sample's features times a factor per feature, ``N(1, scaling_std^2)``, the
  same at every step of the sample;
- **magnitude warping**: times a smooth random curve per feature along the time axis: values
  ``N(1, warp_std^2)`` at ``warp_knots + 2`` evenly spaced knots (both ends included), joined by
  piecewise-cubic interpolation (torch's bicubic kernel, continuous with a continuous slope).
  Only where there is a time axis (windows, rollouts); single rows and transitions have none;
- **jitter**: plus i.i.d. ``N(0, (jitter_std * s_f)^2)`` on every element, ``s_f`` the standard
  deviation of feature f over the train split's rows (of the preprocessed features): the
  perturbation follows each feature's own spread, also after a preprocessor that does not
  standardise;
- **noise**: plus i.i.d. ``N(0, noise_std^2)`` in the features' own units: ``input-noise``'s
  transform (after ``zscore``, whose train-split std is 1, it equals jitter; off by default).

In that order: the multiplicative transforms, then the additive ones. Only the market features
(the first ``n_features`` columns) change; the account columns of RL observations (position,
equity, ...) are the exact state of the account and stay as they are.

Where it applies, by batch shape (``x`` is the batch's first item):

- supervised rows ``x [B, F]``: jitter, scaling, noise per row;
- windows ``x [B, L, F]`` (sequence models, CGDT's trajectory windows ``[B, L, F + 4]``): all
  four, the window's steps as the time axis;
- offline-RL transitions ``(s, a, r, s', done)``: ``s`` and ``s'`` consistently: one decision per
  transition and transform, one scaling factor for both, independent jitter and noise per step
  (as for two steps of a window); no warping;
- online-RL rollouts (the ``on_rollout`` hook), ``obs [T, N, D]`` (PPO-LSTM): all four, each env's
  sequence of T steps as one sample; ``obs [T, N, W, D]`` (FLAG-TRADER's windows): each window
  as one sample, its W bars as the time axis.

Train split only: the ``epoch_dataset`` hook wraps the epoch's train data (validation data is
never wrapped) and augments copies, never the run's features; evaluation and backtests act on
the clean features. Online RL is augmented RAD-style: the rollout's stored observations are
augmented after collection, before the PPO updates, so the policy that collected them acted on
the clean observations and its stored log-probabilities and values are of those; the updates'
probability ratio compares the current policy on the augmented observation with the old one
on the clean observation (Raileanu et al. 2021, DrAC, found this can hurt PPO; PPO's clipping
bounds the effect).

Random numbers come from a generator seeded with (run seed, rank, batch or rollout counter); the
counters are the method's state, saved in the checkpoints, so a resumed run draws what an
uninterrupted one would, and the run's other random streams are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl

NAME = "online-augment"


@dataclass(frozen=True)
class OnlineAugmentConfig:
    jitter_p: float = 0.5
    """Probability that a sample gets jitter."""
    jitter_std: float = 0.03
    """Jitter std as a fraction of each feature's train-split std."""
    scaling_p: float = 0.5
    """Probability that a sample is scaled."""
    scaling_std: float = 0.1
    """Std of the scaling factors around 1 (one per feature and sample)."""
    warp_p: float = 0.5
    """Probability that a sample with a time axis is magnitude-warped."""
    warp_std: float = 0.2
    """Std around 1 of the warping curve at its knots."""
    warp_knots: int = 4
    """Interior knots of the warping curve (the two ends are knots too)."""
    noise_p: float = 0.0
    """Probability that a sample gets Gaussian noise in absolute units (input-noise's transform)."""
    noise_std: float = 0.05
    """Std of that noise, in the features' units (standard deviations after zscore)."""

    def __post_init__(self) -> None:
        for name in ("jitter_p", "scaling_p", "warp_p", "noise_p"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        for name in ("jitter_std", "scaling_std", "warp_std", "noise_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.warp_knots < 1:
            raise ValueError(f"warp_knots must be >= 1, got {self.warp_knots}")


def _on(p: float, std: float) -> bool:
    return p > 0 and std > 0


def augment(x: Any, config: OnlineAugmentConfig, generator: Any, feature_std: Any, *, warp: bool = True) -> Any:
    """An augmented copy of ``x [S, L, C]`` (S samples of L steps and C features; L = 1: no time
    axis), drawing from ``generator`` (on ``x``'s device); ``feature_std [C]`` scales the jitter;
    ``warp`` False: no magnitude warping whatever L."""
    import torch
    import torch.nn.functional as F

    S, L, C = x.shape
    dev, dt = x.device, x.dtype

    def chosen(p: float) -> Any:
        return (torch.rand(S, 1, 1, generator=generator, device=dev) < p).to(dt)

    def normal(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator, device=dev, dtype=dt)

    out = x
    c = config
    if _on(c.scaling_p, c.scaling_std):
        m = chosen(c.scaling_p)
        out = out * (1.0 + m * c.scaling_std * normal(S, 1, C))
    if warp and L > 1 and _on(c.warp_p, c.warp_std):
        m = chosen(c.warp_p)
        knots = 1.0 + c.warp_std * normal(S * C, 1, 1, c.warp_knots + 2)
        curve = F.interpolate(knots.float(), size=(1, L), mode="bicubic", align_corners=True)
        curve = curve.to(dt).reshape(S, C, L).transpose(1, 2)
        out = out * (1.0 + m * (curve - 1.0))
    if _on(c.jitter_p, c.jitter_std):
        m = chosen(c.jitter_p)
        out = out + m * (c.jitter_std * feature_std.to(device=dev, dtype=dt)) * normal(S, L, C)
    if _on(c.noise_p, c.noise_std):
        m = chosen(c.noise_p)
        out = out + m * c.noise_std * normal(S, L, C)
    return out if out is not x else x.clone()


def seeded_generator(seed: int, rank: int, stream: int, counter: int, device: Any) -> Any:
    """A torch generator on ``device`` seeded from (run seed, rank, stream, counter)."""
    import numpy as np
    import torch

    state = int(np.random.SeedSequence([int(seed), int(rank), int(stream), int(counter)]).generate_state(
        1, dtype=np.uint64)[0]) % 2**63
    return torch.Generator(device=device).manual_seed(state)


class _Augmented:
    """The epoch's train data with each batch's inputs augmented (a copy; the data is unchanged)."""

    def __init__(self, inner: Any, method: OnlineAugment, ctx: Any) -> None:
        self.inner, self.method, self.ctx = inner, method, ctx

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, idx: Any) -> Any:
        return self.method.augment_batch(self.inner[idx], self.ctx)


class OnlineAugment:
    def __init__(self, config: OnlineAugmentConfig) -> None:
        self.config = config
        self.batches = 0
        self.rollouts = 0
        self.paradigm: str | None = None
        self._std: Any = None

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rollouts": self.rollouts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches, self.rollouts = int(state["batches"]), int(state["rollouts"])

    # ------------------------------------------------------------------ hooks

    def model_built(self, model: Any, ctx: Any) -> None:
        self.paradigm = getattr(model, "paradigm", None)

    def epoch_dataset(self, dataset: Any, ctx: Any) -> Any:
        return _Augmented(dataset, self, ctx)

    def on_rollout(self, rollout: Any, ctx: Any) -> None:
        obs = rollout.obs
        gen = seeded_generator(ctx.seed, ctx.rank, 1, self.rollouts, obs.device)
        self.rollouts += 1
        n = self._n_features(ctx, obs.shape[-1], "rollout observations")
        if obs.dim() == 3:  # [T, N, D]: each env's T steps are one sample
            seq = obs[..., :n].transpose(0, 1)
            new = augment(seq, self.config, gen, self._feature_std(ctx, obs.device)).transpose(0, 1)
        elif obs.dim() == 4:  # [T, N, W, D]: each window is one sample
            T, N, W, _ = obs.shape
            new = augment(obs[..., :n].reshape(T * N, W, n), self.config, gen,
                          self._feature_std(ctx, obs.device)).reshape(T, N, W, n)
        else:
            from himari.plugin.api import ConfigError

            raise ConfigError(f"{NAME}: rollout observations of shape {tuple(obs.shape)}; expected [T, N, D] or "
                              f"[T, N, W, D]")
        rollout.obs = self._replace(obs, new, n)

    # ------------------------------------------------------------------ batches

    def augment_batch(self, batch: Any, ctx: Any) -> Any:
        """The batch with its inputs augmented (see the module docstring for each shape)."""
        import torch

        from himari.plugin.api import ConfigError

        if not isinstance(batch, (tuple, list)) or not batch or not hasattr(batch[0], "dim"):
            raise ConfigError(f"{NAME}: expected a batch whose first item is the input tensor, got "
                              f"{type(batch).__name__}")
        x = batch[0]
        gen = seeded_generator(ctx.seed, ctx.rank, 0, self.batches, x.device)
        self.batches += 1
        n = self._n_features(ctx, x.shape[-1], "batch inputs")
        std = self._feature_std(ctx, x.device)
        items = list(batch)
        if self.paradigm == "offline-rl" and len(batch) == 5 and x.dim() == 2 and batch[3].shape == x.shape:
            s2 = batch[3]
            pair = augment(torch.stack([x[:, :n], s2[:, :n]], dim=1), self.config, gen, std, warp=False)
            items[0], items[3] = self._replace(x, pair[:, 0], n), self._replace(s2, pair[:, 1], n)
        elif x.dim() == 2:
            items[0] = self._replace(x, augment(x[:, None, :n], self.config, gen, std)[:, 0], n)
        elif x.dim() == 3:
            items[0] = self._replace(x, augment(x[..., :n], self.config, gen, std), n)
        else:
            raise ConfigError(f"{NAME}: batch inputs of shape {tuple(x.shape)}; expected rows [B, F] or "
                              f"windows [B, L, F]")
        return type(batch)(items) if isinstance(batch, tuple) else items

    @staticmethod
    def _replace(x: Any, new: Any, n: int) -> Any:
        """``x`` with its first ``n`` columns replaced by ``new`` (a new tensor)."""
        import torch

        if n == x.shape[-1]:
            return new.to(x.dtype)
        return torch.cat([new.to(x.dtype), x[..., n:]], dim=-1)

    def _n_features(self, ctx: Any, width: int, what: str) -> int:
        from himari.plugin.api import ConfigError

        n = int(ctx.model.n_features) if ctx.model is not None else width
        if width < n:
            raise ConfigError(f"{NAME}: {what} have {width} columns, fewer than the run's {n} features")
        return n

    def _feature_std(self, ctx: Any, device: Any) -> Any:
        """Std of each feature over the train split's rows (finite values only; 0 where none)."""
        if self._std is None:
            import numpy as np
            import torch

            from himari.plugin.api import rows_of

            x = np.asarray(ctx.features, dtype=np.float64)[rows_of(ctx.splits["train"])]
            finite = np.isfinite(x)
            count = finite.sum(axis=0)
            x = np.where(finite, x, 0.0)
            mean = x.sum(axis=0) / np.maximum(count, 1)
            std = np.sqrt((np.where(finite, x - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1))
            self._std = torch.from_numpy(std.astype(np.float32))
        return self._std.to(device)


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name=NAME, code="A8",
                                    summary="jitter, scaling, magnitude warping, noise on train inputs and "
                                            "rollouts (epoch_dataset, on_rollout hooks)",
                                    config=OnlineAugmentConfig, factory=OnlineAugment))
