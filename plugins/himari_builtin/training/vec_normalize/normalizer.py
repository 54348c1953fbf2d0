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
        """Fold in ``batch`` ``[B, *shape]`` (B samples): SB3's ``update_from_moments``, with the
        batch's moments by two passes (as ``np.var``), in float64. Written as few small tensor
        operations as it takes: a rollout calls it twice per env step, on the GPU without a host
        round trip."""
        buffers = self._buffers
        mean, var, count = buffers["mean"], buffers["var"], buffers["count"]
        n = batch.shape[0]
        x = batch.to(torch.float64)
        batch_mean = x.sum(0).div_(n)
        dev = x - batch_mean
        batch_var = dev.mul_(dev).sum(0).div_(n)
        delta = batch_mean.sub_(mean)
        total = count + n
        w_new = n / total
        w_old = count / total
        # (var count + batch_var n + delta^2 count n / total) / total, SB3's new variance
        var.mul_(w_old).add_(batch_var.mul_(w_new)).add_(delta.square().mul_(w_old * w_new))
        mean.add_(delta.mul_(w_new))
        count.copy_(total)

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
        self._frozen: tuple[Any, ...] | None = None

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
        rms = self.obs_rms
        if rms._buffers["mean"].shape[-1] != obs.shape[-1]:
            self._check_width(obs.shape[-1])
        if update:
            rms.update(obs[:, -1, :] if obs.dim() == 3 else obs)
        buffers = rms._buffers
        scaled = (obs.to(torch.float64) - buffers["mean"]).div_((buffers["var"] + self.epsilon).sqrt_())
        return scaled.clamp_(-self.clip_obs, self.clip_obs).to(obs.dtype)

    def rewards(self, rewards: Any, dones: Any, update: bool) -> Any:
        r = rewards.to(torch.float64, copy=True)  # divided in place below: never the caller's tensor
        if update:
            if self.returns is None or self.returns.shape[0] != rewards.shape[0]:
                self.reset(rewards.shape[0])
            self.returns = self.returns.mul_(self.gamma).add_(r)
            self.ret_rms.update(self.returns)
            self._buffers["steps"].add_(1)
        out = rewards
        if self.norm_reward:
            scale = (self.ret_rms._buffers["var"] + self.epsilon).sqrt_()
            out = r.div_(scale).clamp_(-self.clip_reward, self.clip_reward).to(rewards.dtype)
        if update:
            self.returns.masked_fill_(dones.to(torch.bool), 0.0)
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
        change (a sequential evaluation calls this once per bar, so the common case is a few
        dictionary lookups and three array operations). A change is a new or rewritten
        statistics tensor: an update, a loaded checkpoint, an edit in place."""
        buffers = self._modules["obs_rms"]._buffers  # not self.obs_rms: nn.Module's __getattr__ is slow
        mean_t, var_t = buffers["mean"], buffers["var"]
        cache = self._frozen
        if (cache is None or cache[0] is not mean_t or cache[1] is not var_t or cache[2] != mean_t._version
                or cache[3] != var_t._version or cache[4].shape[0] != obs.shape[-1]):
            self._check_width(obs.shape[-1])
            mean_t, var_t = buffers["mean"], buffers["var"]
            mean = mean_t.detach().cpu().numpy().copy()
            std = np.sqrt(var_t.detach().cpu().numpy() + self.epsilon)
            cache = self._frozen = (mean_t, var_t, mean_t._version, var_t._version, mean, std)
        out = obs - cache[4]
        out /= cache[5]
        np.minimum(np.maximum(out, -self.clip_obs, out=out), self.clip_obs, out=out)  # np.clip, without its overhead
        return out.astype(np.float32)

    def extra_repr(self) -> str:
        return (f"clip_obs={self.clip_obs}, clip_reward={self.clip_reward}, gamma={self.gamma}, "
                f"epsilon={self.epsilon}, norm_obs={self.norm_obs}, norm_reward={self.norm_reward}")
