"""The torch modules of ``vec-normalize``: running statistics and the observation filter.

Written against stable-baselines3's ``RunningMeanStd`` and ``VecNormalize`` (SB3 is a test
dependency only, and its statistics are NumPy: they could not follow a rollout that lives on the
GPU), with the statistics in float64 torch buffers so that they move to the run's device with
the module, update there without a host round trip, and travel in the checkpoints as module
buffers. tests/python/builtin/test_vec_normalize.py checks the numbers against SB3's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Running mean and (population) variance of a stream of batches: Chan et al.'s parallel
    update, starting from mean 0, variance 1 and a count of ``count_epsilon`` (1e-4), exactly as
    SB3's ``RunningMeanStd``. ``shape`` ``(0,)`` means "sized by the first batch" (a model's
    observation width is known only once its env runs); a saved state of any shape loads."""

    def __init__(self, shape: tuple[int, ...] = (), count_epsilon: float = 1e-4) -> None:
        super().__init__()
        self.count_epsilon = float(count_epsilon)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(self.count_epsilon, dtype=torch.float64))

    def size_to(self, width: int) -> None:
        """Give unsized statistics (shape ``(0,)``) ``width`` columns at mean 0 and variance 1."""
        if self.mean.dim() == 1 and self.mean.numel() == 0 and width > 0:
            device = self.mean.device
            self.mean = torch.zeros(width, dtype=torch.float64, device=device)
            self.var = torch.ones(width, dtype=torch.float64, device=device)

    def update(self, batch: Any) -> None:
        """Fold in ``batch`` ``[B, *shape]`` (B samples)."""
        x = batch.to(torch.float64)
        n = x.shape[0]
        batch_mean = x.mean(0)
        batch_var = x.var(0, correction=0)
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.copy_(self.mean + delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("mean", "var"):  # adopt the saved width (statistics sized by their first batch)
            saved = state_dict.get(prefix + name)
            current = getattr(self, name)
            if saved is not None and saved.shape != current.shape and current.numel() == 0:
                setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args)


class VecNormalizer(nn.Module):
    """An ``ObservationFilter`` (``himari.plugin.api``) with SB3 ``VecNormalize``'s arithmetic.

    Observations: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` per column,
    the statistics updated (``update=True``, training only) with every observation the envs
    return before it is normalised. A windowed observation ``[N, W, D]`` is normalised per
    feature column with the same ``[D]`` statistics in every window row, which are updated with
    the newest row of each window only, so each bar counts once, as with window 1.

    Rewards: the discounted return ``R = gamma R + r`` of each env feeds a running variance, and
    the reward the policy learns from is ``clip(r / sqrt(var_R + epsilon), -clip_reward,
    clip_reward)`` (scaled, not centred); ``R`` restarts at 0 after an env's episode ends and
    whenever the envs are rebuilt (``reset``: SB3's reset does the same; it is not saved).

    The buffers (``obs_rms``, ``ret_rms``, ``steps``) are the state the checkpoints keep.
    """

    def __init__(self, *, clip_obs: float = 10.0, clip_reward: float = 10.0, gamma: float = 0.99,
                 epsilon: float = 1e-8, norm_obs: bool = True, norm_reward: bool = True) -> None:
        super().__init__()
        self.clip_obs, self.clip_reward = float(clip_obs), float(clip_reward)
        self.gamma, self.epsilon = float(gamma), float(epsilon)
        self.norm_obs, self.norm_reward = bool(norm_obs), bool(norm_reward)
        self.obs_rms = RunningMeanStd(shape=(0,))
        self.ret_rms = RunningMeanStd(shape=())
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.returns: Any = None
        self._frozen: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None

    # ---- the ObservationFilter protocol ------------------------------------------------------
    def reset(self, n_envs: int) -> None:
        self.returns = torch.zeros(int(n_envs), dtype=torch.float64, device=self.ret_rms.mean.device)

    def observations(self, obs: Any, update: bool) -> Any:
        if not self.norm_obs:
            return obs
        if isinstance(obs, np.ndarray):
            if update:
                raise ValueError("vec-normalize: statistics update from torch tensors only (training rollouts)")
            return self._frozen_numpy(obs)
        self._check_width(obs.shape[-1])
        if update:
            self.obs_rms.update(obs[:, -1, :] if obs.dim() == 3 else obs)
        scaled = (obs.to(torch.float64) - self.obs_rms.mean) / torch.sqrt(self.obs_rms.var + self.epsilon)
        return scaled.clamp(-self.clip_obs, self.clip_obs).to(obs.dtype)

    def rewards(self, rewards: Any, dones: Any, update: bool) -> Any:
        if update:
            if self.returns is None or self.returns.shape[0] != rewards.shape[0]:
                self.reset(rewards.shape[0])
            self.returns = self.returns * self.gamma + rewards.to(torch.float64)
            self.ret_rms.update(self.returns)
            self.steps += 1
        out = rewards
        if self.norm_reward:
            scaled = rewards.to(torch.float64) / torch.sqrt(self.ret_rms.var + self.epsilon)
            out = scaled.clamp(-self.clip_reward, self.clip_reward).to(rewards.dtype)
        if update:
            self.returns = torch.where(dones.to(torch.bool), 0.0, self.returns)
        return out

    # ---- helpers -----------------------------------------------------------------------------
    def _check_width(self, width: int) -> None:
        self.obs_rms.size_to(int(width))
        have = self.obs_rms.mean.shape[-1]
        if have != width:
            from himari.plugin.api import ConfigError

            raise ConfigError(f"vec-normalize: its statistics have {have} observation columns, the observations "
                              f"{width} (a state saved for another feature set)")

    def _frozen_numpy(self, obs: np.ndarray) -> np.ndarray:
        """Evaluation: NumPy in, NumPy out, with the statistics copied off the device once per
        change (a sequential evaluation calls this once per bar). A change is any new or
        rewritten statistics tensor (an update, a loaded checkpoint, an edit in place)."""
        self._check_width(obs.shape[-1])
        mean_t, var_t = self.obs_rms.mean, self.obs_rms.var
        key = (id(mean_t), mean_t._version, id(var_t), var_t._version)
        if self._frozen is None or self._frozen[0] != key:
            mean = mean_t.detach().cpu().numpy().copy()
            std = np.sqrt(var_t.detach().cpu().numpy() + self.epsilon)
            self._frozen = (key, mean, std)
        _, mean, std = self._frozen
        return np.clip((obs - mean) / std, -self.clip_obs, self.clip_obs).astype(np.float32)

    def extra_repr(self) -> str:
        return (f"clip_obs={self.clip_obs}, clip_reward={self.clip_reward}, gamma={self.gamma}, "
                f"epsilon={self.epsilon}, norm_obs={self.norm_obs}, norm_reward={self.norm_reward}")
