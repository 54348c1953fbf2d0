"""PPO rollouts of any policy network in ``VecTradingEnv``, on the CPU or entirely on the GPU.

PPO-LSTM and FLAG-TRADER both collect experience through ``EnvRollout``: the model supplies a
``policy`` function ``(obs, starts, state) -> (logits, value, state)`` and an ``initial_state``
function; ``EnvRollout`` owns the env, the sampling, the ``RolloutBuffer``, GAE and the episode
statistics.

On ``device="cuda"`` the market lives on the GPU and the env is the CUDA ``VecTradingEnv``:
observations, rewards and done flags are torch views of the env's persistent device buffers
(DLPack, no copies) and the sampled actions are read by the env kernel straight from the torch
tensor. A step is then: policy forward, sampling, one env kernel, a few buffer writes, all on
the GPU and all asynchronous, with no host round trip until the rollout ends (episode statistics
are accumulated on the device and read once per rollout).

On the CPU the env outputs are numpy views and cross into torch with ``torch.from_numpy``.

With a run's ``ObservationFilter`` (``ctx.observation_filter``, installed by a training method
such as ``vec-normalize``) every observation the envs return passes through
``filter.observations(obs, update=True)`` before the policy sees it and the buffer stores it,
the final observation of a truncated episode through ``update=False`` (after that step's update,
as stable-baselines3's VecNormalize normalises its ``terminal_observation``), and every step's
rewards through ``filter.rewards(rewards, dones, update=True)`` before they enter the buffer;
``filter.reset(n_envs)`` runs whenever the envs are rebuilt. On the GPU the filter runs on the
device tensors, still without a host round trip. ``stats["reward_mean"]`` stays the mean of the
env's own rewards; ``stats["reward_mean_filtered"]`` is the mean of those the policy learns from.

Truncated episodes (cut by their length, not by bankruptcy) bootstrap from the value of their
final observation (the env's ``info["final_obs"]``), evaluated with the recurrent state the
episode had before the reset zeroes it. Those observations and states are kept as the rollout
runs (a few slots per env: an env truncates at most once every ``episode_steps`` steps) and
evaluated in one batched policy call at its end, so the GPU path still needs no host round
trip per step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from himari.evaluation.execution import RolloutExecutionFilter
from himari.training.rl import OnlineRLConfig, RolloutBuffer, train_env

TERMS = ("log_return", "drawdown_penalty", "turnover_penalty", "dsr")
"""The env's reward terms (docs/semantics.md); their means over a rollout are in its ``stats``
as ``reward_<term>`` (``dsr`` unweighted, the penalties as subtracted)."""

PolicyFn = Callable[[Any, Any, tuple[Any, ...]], tuple[Any, Any, tuple[Any, ...]]]
"""``policy(obs, starts, state) -> (logits [N, A], value [N], state)``: ``obs`` is ``[N, D]``
when the env window is 1 and ``[N, W, D]`` otherwise; ``starts`` ``[N]`` float (1.0 where obs
begins an episode) or ``None`` when no env starts one; ``state`` the recurrent state (a tuple,
possibly empty)."""

StateFn = Callable[[int, Any], tuple[Any, ...]]
"""``initial_state(n_envs, device) -> state`` (an empty tuple for a stateless policy)."""


def _is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


class FinalObservations:
    """The final observations (and recurrent states) of the episodes a rollout truncates, for
    ``gae``'s bootstrap ``final_values``.

    ``slots`` per env bound how many truncations an env can have in one rollout. ``record``
    takes whole-batch tensors and a mask, so it needs no host sync; ``values`` evaluates every
    slot in one policy call each.
    """

    def __init__(self, steps: int, n_envs: int, slots: int, device: Any) -> None:
        import torch

        self.steps, self.n_envs, self.slots = steps, n_envs, slots
        self.env = torch.arange(n_envs, device=device)
        self.step = torch.full((slots, n_envs), -1, dtype=torch.long, device=device)
        self.count = torch.zeros(n_envs, dtype=torch.long, device=device)
        self.obs: Any = None
        self.state: tuple[Any, ...] = ()

    def record(self, t: int, truncated: Any, final_obs: Any, state: tuple[Any, ...]) -> None:
        """Keep ``final_obs [N, ...]`` and ``state`` (tensors with the env axis at dim 1) of the
        envs where ``truncated [N]`` (bool) for step ``t``: each env's next free slot. Whole-slot
        selects rather than gathers and scatters, so a step adds only a few small kernels (three
        plus one per state tensor with one slot)."""
        import torch

        if self.obs is None:
            self.obs = torch.zeros((self.slots, *final_obs.shape), dtype=final_obs.dtype, device=final_obs.device)
            self.state = tuple(torch.zeros((self.slots, *s.movedim(1, 0).shape), dtype=s.dtype, device=s.device)
                               for s in state)
        if self.slots == 1:
            mask = truncated[None]
        else:
            slot = self.count.clamp(max=self.slots - 1)
            mask = (slot[None] == torch.arange(self.slots, device=slot.device)[:, None]) & truncated[None]

        def keep(new: Any, old: Any) -> Any:  # new [N, ...] where mask, else old [slots, N, ...]
            return torch.where(mask.view(*mask.shape, *([1] * (new.dim() - 1))), new[None], old)

        self.obs = keep(final_obs, self.obs)
        self.step = torch.where(mask, t, self.step)
        self.state = tuple(keep(s.movedim(1, 0), kept) for kept, s in zip(self.state, state))
        self.count += truncated

    def values(self, policy: Any, all_slots: bool) -> Any:
        """``final_values [T, N]``: V(final observation) at the steps that truncated, 0 elsewhere.
        ``all_slots`` evaluates every slot (no host sync to learn which are used)."""
        import torch

        out = torch.zeros(self.steps, self.n_envs, device=self.env.device)
        if self.obs is None:
            return out
        used = self.slots if all_slots else min(self.slots, int(self.count.max()))
        for j in range(used):
            state = tuple(s[j].movedim(0, 1).contiguous() for s in self.state)
            _, value, _ = policy(self.obs[j], None, state)
            valid = self.step[j] >= 0
            out.index_put_((self.step[j].clamp(min=0), self.env), torch.where(valid, value.float(), 0.0),
                           accumulate=True)
        return out

    def overflowed(self) -> Any:
        """A 0-d bool tensor: some env truncated more often than ``slots`` (values were lost)."""
        return (self.count > self.slots).any()


class EnvRollout:
    """Collects ``cfg.rollout_steps`` steps of ``cfg.n_envs`` envs per call to ``collect``.

    The env is rebuilt from ``(ctx.seed, ctx.epoch)`` when ``collect(reset=True)`` so a resumed
    run redoes an epoch exactly; otherwise episodes carry on across rollouts.
    """

    def __init__(self, cfg: OnlineRLConfig, obs_dim: int, window: int = 1) -> None:
        self.cfg = cfg
        self.obs_dim = int(obs_dim)
        self.window = int(window)
        self._env: Any = None

    # ---- env and buffers -------------------------------------------------------------------
    def _obs_tensor(self, obs: Any, device: Any) -> Any:
        """The policy's view of the env observation (``[N, D]`` for window 1)."""
        import torch

        if not isinstance(obs, torch.Tensor):
            with warnings.catch_warnings():  # a read-only view of the env's buffer, never written
                warnings.simplefilter("ignore", UserWarning)
                obs = torch.from_numpy(obs)
        obs = obs.to(device, non_blocking=True)
        return obs[:, -1, :] if self.window == 1 else obs

    @staticmethod
    def _bar_tensor(bar: Any, device: Any) -> Any:
        """A copy of the env's ``bar`` buffer (the bar each env's observation ends at) on ``device``."""
        import torch

        if not isinstance(bar, torch.Tensor):
            bar = torch.from_numpy(np.array(bar, dtype=np.int64))
        return bar.to(device=device, dtype=torch.long, copy=True)

    def _start(self, ctx: Any, device: Any, initial_state: StateFn) -> None:
        import torch

        cfg = self.cfg
        seed = (int(ctx.seed) * 1_000_003 + int(ctx.epoch)) % (2**31)
        seed = (seed + 7_919 * int(getattr(ctx, "rank", 0))) % (2**31)  # a distinct env shard per rank
        from himari.engine import cuda_available

        # The env runs where the policy runs when this build has the CUDA kernels; otherwise on
        # the CPU with its outputs copied to the policy's device each step.
        self._cuda = _is_cuda(device) and cuda_available()
        self._env = train_env(ctx, cfg, seed, window=self.window, device=str(device) if self._cuda else "cpu")
        obs, info = self._env.reset(seed=seed)
        self._obs = self._obs_tensor(obs, device).clone()
        # The prepared row of each bar of the env's market (-1 where it is none), and the bar of
        # each env's current observation: the rows a rollout records beside its observations.
        rows = getattr(ctx.env_source, "rows", None)
        n_bars = len(ctx.env_source.close)
        rows = np.full(n_bars, -1, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        self._row_of_bar = torch.from_numpy(np.ascontiguousarray(rows)).to(device)
        filter_ = getattr(ctx, "observation_filter", None)
        if filter_ is not None:
            filter_.reset(cfg.n_envs)
            self._obs = filter_.observations(self._obs, update=True)
        self._bars = self._bar_tensor(info["bar"], device)
        rules = getattr(ctx, "rollout_execution", None)
        self._rules = (None if rules is None
                       else RolloutExecutionFilter(cfg.n_envs, ctx.env_source.config.mode, rules, device))
        self._state = initial_state(cfg.n_envs, device)
        self._starts = torch.ones(cfg.n_envs, device=device)
        shape = (self.obs_dim,) if self.window == 1 else (self.window, self.obs_dim)
        self._buf = RolloutBuffer(cfg.rollout_steps, cfg.n_envs, shape, str(device))
        # An env truncates at most once every episode_steps steps.
        self._final_slots = (cfg.rollout_steps - 1) // self._env.episode_steps + 1

    # ---- collection ------------------------------------------------------------------------
    def collect(self, ctx: Any, reset: bool, policy: PolicyFn, initial_state: StateFn, device: Any) -> RolloutBuffer:
        """One rollout with actions sampled from ``policy``; returns the ``RolloutBuffer`` with
        GAE advantages and returns, the bar of each step (``bars``), and ``stats`` (mean reward,
        the mean of each reward term, action shares, mean return and length of the episodes
        that ended)."""
        import torch

        if reset or self._env is None:
            self._start(ctx, device, initial_state)
        cfg, env, buf = self.cfg, self._env, self._buf
        T = cfg.rollout_steps
        filter_ = getattr(ctx, "observation_filter", None)
        seen = getattr(ctx, "rollout_observations", None)
        raw_rewards = torch.zeros_like(buf.rewards) if filter_ is not None else buf.rewards
        buf.state = tuple(s.clone() for s in self._state)
        obs_t, state, starts, bars = self._obs, self._state, self._starts, self._bars
        ended = torch.zeros((), device=device)
        overruled = torch.zeros((), device=device)  # steps whose executed action is not the sampled one
        term_sum = torch.zeros(len(TERMS), dtype=torch.float64, device=device) if self._cuda else np.zeros(len(TERMS))
        return_sum = torch.zeros((), dtype=torch.float64, device=device)
        length_sum = torch.zeros((), dtype=torch.float64, device=device)
        any_start = True
        finals = FinalObservations(T, cfg.n_envs, self._final_slots, device)
        with torch.no_grad():
            for t in range(T):
                if seen is not None:  # a training method's view of the observations (adversarial)
                    obs_t = seen(obs_t, starts if any_start else None, state, policy)
                logits, value, state = policy(obs_t, starts if any_start else None, state)
                logp_all = torch.log_softmax(logits.float(), -1)
                action = torch.multinomial(logp_all.exp(), 1)[:, 0]
                executed = action
                if self._rules is not None:  # the policy learns from its sample; the env gets the rules' action
                    top = logp_all.max(-1).values.exp() if self._rules.needs_probabilities else None
                    executed = self._rules.step(action, top)
                    overruled += (executed != action).sum()
                buf.obs[t] = obs_t
                buf.rows[t] = self._row_of_bar[bars]
                buf.starts[t] = starts
                buf.actions[t] = action
                buf.logprobs[t] = logp_all.gather(1, action[:, None])[:, 0]
                buf.values[t] = value.float()
                buf.bars[t] = bars
                if self._cuda:
                    obs, reward, _term, trunc, info = env.step(executed)
                    done = info["episode_done"]
                    if self._rules is not None:
                        self._rules.restart(done.bool())
                    obs_t = obs[:, -1, :] if self.window == 1 else obs
                    final_obs = self._obs_tensor(info["final_obs"], device)
                    if filter_ is not None:  # obs first: the final obs is normalised with this step's update
                        obs_t = filter_.observations(obs_t, update=True)
                        final_obs = filter_.observations(final_obs, update=False)
                        raw_rewards[t] = reward
                        reward = filter_.rewards(reward, done.bool(), update=True)
                    # Before the next step rewrites final_obs (the same stream orders them).
                    finals.record(t, trunc, final_obs, state)
                    buf.rewards[t] = reward
                    term_sum += torch.stack([info[k].double().sum() for k in TERMS])
                    bars = self._bar_tensor(info["bar"], device)
                    starts = done.float()
                    ended += starts.sum()
                    return_sum += (info["episode_return"] * done).sum()
                    length_sum += (info["episode_length"] * done).sum()
                    any_start = True  # no host sync to find out
                else:
                    obs, reward, term, trunc, info = env.step(executed.cpu().numpy())
                    term_sum += [float(info[k].sum()) for k in TERMS]
                    bars = self._bar_tensor(info["bar"], device)
                    done = term | trunc
                    if self._rules is not None:
                        self._rules.restart(torch.from_numpy(done).to(device))
                    # A view of the env's buffer: used by the next policy call, before the next step.
                    obs_t = self._obs_tensor(obs, device)
                    reward_t = torch.from_numpy(reward).to(device)
                    if filter_ is not None:
                        obs_t = filter_.observations(obs_t, update=True)
                        raw_rewards[t] = reward_t
                        reward_t = filter_.rewards(reward_t, torch.from_numpy(done).to(device), update=True)
                    buf.rewards[t] = reward_t
                    if trunc.any():
                        final_obs = self._obs_tensor(info["final_obs"], device)
                        if filter_ is not None:
                            final_obs = filter_.observations(final_obs, update=False)
                        finals.record(t, torch.from_numpy(trunc).to(device), final_obs, state)
                    starts = torch.from_numpy(done.astype(np.float32)).to(device)
                    any_start = bool(done.any())
                    if any_start:
                        d = torch.from_numpy(done)
                        ended += d.sum().to(device)
                        return_sum += torch.from_numpy(info["episode_return"])[d].sum().to(device)
                        length_sum += torch.from_numpy(info["episode_length"])[d].double().sum().to(device)
            obs_t = obs_t.clone()  # the env buffer is overwritten by the next step
            _, last_value, _ = policy(obs_t, starts if any_start else None, state)
            buf.final_values = finals.values(policy, all_slots=self._cuda)
        buf.finish(last_value.float(), starts, cfg.gamma, cfg.gae_lambda)
        self._obs, self._state, self._starts, self._bars = obs_t, state, starts, bars
        counts = torch.bincount(buf.actions.flatten(), minlength=3).double() / buf.actions.numel()
        summary = torch.stack([raw_rewards.double().mean(), counts[0], counts[1], counts[2], ended.double(),
                               return_sum, length_sum, finals.overflowed().double(), buf.rewards.double().mean(),
                               overruled.double(),
                               *torch.as_tensor(term_sum, dtype=torch.float64, device=device)]).cpu().tolist()  # the one host sync
        if summary[7]:
            raise RuntimeError("rollout: an env truncated more episodes than the env's episode_steps allow")
        buf.stats = {"reward_mean": summary[0], "action_sell": summary[1], "action_hold": summary[2],
                     "action_buy": summary[3], **{f"reward_{k}": v / (T * cfg.n_envs) for k, v in zip(TERMS, summary[10:])}}
        if self._rules is not None:  # the share of sampled actions the execution rules turned into HOLD
            buf.stats["rules_overruled"] = summary[9] / (T * cfg.n_envs)
        if filter_ is not None:
            buf.stats["reward_mean_filtered"] = summary[8]
        if summary[4] > 0:
            buf.stats["episode_return"] = summary[5] / summary[4]
            buf.stats["episode_length"] = summary[6] / summary[4]
        return buf
