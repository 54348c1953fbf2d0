"""VecTradingEnv: N trading accounts over one Market, stepping in lock-step in native code.

It is a ``gymnasium.vector.VectorEnv`` with same-step autoreset. Observations, rewards, flags
and info arrays are views of persistent native buffers (allocated once): ``step`` returns the
same array objects every time with new contents, which is what makes a step cheap. Copy what
you keep. The ``info`` dict itself is a new dict at every call (wrappers such as gymnasium's
``RecordEpisodeStatistics`` add keys to it), holding those same views.

An episode that ends at a step restarts in that step, so the returned observation is the next
episode's first; the observation the ended episode would have shown is in
``info["final_obs"]`` (gymnasium's same-step convention, as one dense array ``[n_envs, window,
n_features + 4]`` valid where ``info["_final_obs"]`` is True).

On a CUDA market (``Market(..., device="cuda")``) the env runs on that GPU: the buffers are
device memory, returned as torch tensors viewing them through DLPack (no copies; raw
``DeviceArray`` objects when torch is not installed), and ``step`` takes the actions as a CUDA
array (torch tensor, CuPy array, anything with ``__cuda_array_interface__`` or ``__dlpack__``)
that the kernel reads in place. Work is queued on the caller's current stream (torch's, else
CuPy's, else the default stream) and nothing waits for the GPU: an action outside {0, 1, 2}
makes that env HOLD and is reported by the next ``reset`` or ``check_actions``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from himari.engine import args
from himari.engine._native import _core
from himari.engine.arrays import as_host_array, check_mode
from himari.engine.device import as_framework_array, current_stream
from himari.engine.market import Market
from himari.engine.reward import RewardConfig, native_reward
from himari.errors import InvalidArgumentError


def checked_seed(seed: Any) -> int:
    """Seeds are integers in [0, 2**64 - 1]: they feed a 64-bit counter hash."""
    return args.integer("seed", seed, maximum=args.UINT64_MAX)

def observation_bounds(window: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The bounds ``[window, n_features + 4]`` of one observation: features are finite float32
    values; the account columns (docs/semantics.md) are a position in [-1, 1], an unrealised
    PnL >= -1, a drawdown in [-1, 0] and log1p(bars in position) >= 0."""
    big = float(np.finfo(np.float32).max)
    low = np.full((window, n_features + 4), -big, dtype=np.float32)
    high = np.full((window, n_features + 4), big, dtype=np.float32)
    f = n_features
    low[:, f], high[:, f] = -1.0, 1.0
    low[:, f + 1] = -1.0
    low[:, f + 2], high[:, f + 2] = -1.0, 0.0
    low[:, f + 3] = 0.0
    return low, high


class VecTradingEnv(gym.vector.VectorEnv):
    """Vectorised trading env; semantics in docs/semantics.md.

    Args:
        market: prices and features shared by all envs.
        n_envs: number of envs stepping together.
        episode_length: steps per episode (shorter when the data ends first).
        mode: ``long_flat`` (SELL goes flat) or ``long_short`` (SELL goes short).
        fee: fraction of traded notional paid on every fill.
        slippage: fraction by which each fill price moves against the trader.
        reward: shaping coefficients; the default is the plain log return of equity.
        window: bars of features per observation.
        seed: seed of the counter-based episode-start RNG.
        random_start: draw episode starts at random (else start at the first admissible bar).
        warmup: first admissible start bar; ``None`` takes ``market.warmup``.
        final_obs: keep the final observation of episodes that end (``info["final_obs"]``); it
            costs a second observation-sized buffer, and nothing per step but the copy for the
            envs whose episode ended.

    ``step`` returns ``(obs, reward, terminated, truncated, info)``: the arrays are views of
    persistent native buffers that the next step rewrites; ``info`` is a fresh dict per call
    whose values are such views (``equity``, ``position``, ``drawdown``, ``trades``,
    ``turnover``, ``bar``, the reward terms, ``episode_done``, ``episode_return``,
    ``episode_length``, and ``final_obs`` / ``_final_obs``).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        market: Market,
        n_envs: int = 1,
        episode_length: int = 2048,
        mode: str = "long_flat",
        fee: float = 1e-3,
        slippage: float = 5e-4,
        reward: RewardConfig | None = None,
        window: int = 1,
        seed: int = 0,
        random_start: bool = True,
        warmup: int | None = None,
        final_obs: bool = True,
    ) -> None:
        if not isinstance(market, Market):
            raise InvalidArgumentError(f"market: expected a himari.engine.Market, got {type(market).__name__}")
        check_mode(mode)
        seed = checked_seed(seed)
        n_envs = args.integer("n_envs", n_envs, minimum=args.INT64_MIN)
        self.market = market
        self.reward_config = reward if reward is not None else RewardConfig()
        self.mode = mode
        self.fee = args.real("fee", fee)
        self.slippage = args.real("slippage", slippage)
        self.episode_length = args.integer("episode_length", episode_length, minimum=args.INT64_MIN)
        self.window = args.integer("window", window, minimum=args.INT64_MIN)
        self.random_start = args.flag("random_start", random_start)
        self.warmup = market.warmup if warmup is None else args.integer("warmup", warmup, minimum=args.INT64_MIN)
        self.device = market.device
        self._device_index = market.device_index
        self.final_obs = args.flag("final_obs", final_obs)
        native_args = (n_envs, self.episode_length, self.window, self.warmup, seed, self.random_start,
                       self.fee, self.slippage, mode, native_reward(self.reward_config), self.final_obs)
        if self._device_index is None:
            self._native = _core.TradingEnv(market._native, *native_args)
        else:
            self._native = _core.CudaTradingEnv(market._device_native, *native_args,
                                                stream=current_stream(self._device_index))
        self.num_envs = n_envs
        self.n_features = market.n_features
        self.obs_dim = self.n_features + int(_core.ACCOUNT_COLUMNS)
        low, high = observation_bounds(self.window, self.n_features)
        self.single_observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(3)
        batch = (self.num_envs, *low.shape)
        self.observation_space = gym.spaces.Box(np.broadcast_to(low, batch), np.broadcast_to(high, batch),
                                                dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete(np.full(self.num_envs, 3, dtype=np.int64))
        if self._device_index is None:
            buffers = self._host_buffers()
        else:
            buffers = {k: as_framework_array(v) for k, v in self._native.buffers().items()}
        self._obs = buffers["obs"]
        self._reward = buffers["reward"]
        self._terminated = buffers["terminated"]
        self._truncated = buffers["truncated"]
        # Views into the native state: built once, refreshed in place by every step.
        self._accounts = {name: buffers[f"account.{name}"] for name in _core.ACCOUNT_FIELDS}
        self._info: dict[str, Any] = {
            "equity": self._accounts["equity"],
            "position": self._accounts["position"],
            "drawdown": self._accounts["drawdown"],
            "trades": self._accounts["trades"],
            "turnover": self._accounts["turnover"],
            "bar": buffers["bar"],
            **{name: buffers[f"term.{name}"] for name in _core.TERM_FIELDS},
            "episode_done": buffers["episode_done"],
            "episode_return": buffers["episode_return"],
            "episode_length": buffers["episode_length"],
        }
        # Step info adds the final observation (gymnasium's SAME_STEP keys): valid where an
        # episode ended, which is exactly episode_done.
        self._step_info = dict(self._info)
        if self.final_obs:
            self._step_info["final_obs"] = buffers["final_obs"]
            self._step_info["_final_obs"] = buffers["episode_done"]

    def _host_buffers(self) -> dict[str, Any]:
        n = self._native
        out: dict[str, Any] = {"obs": n.obs, "final_obs": n.final_obs, "reward": n.reward, "terminated": n.terminated,
                               "truncated": n.truncated, "episode_done": n.episode_done, "bar": n.bar,
                               "episode_return": n.episode_return, "episode_length": n.episode_length}
        out.update({f"account.{k}": n.account_field(k) for k in _core.ACCOUNT_FIELDS})
        out.update({f"term.{k}": n.term_field(k) for k in _core.TERM_FIELDS})
        return out

    @property
    def episode_steps(self) -> int:
        """Steps of every episode that bankruptcy does not end first: ``min(episode_length,
        n_bars - 1 - start_min)`` (docs/semantics.md, Episodes: starts never come later than
        ``n_bars - 1 - episode_length`` unless the data is too short for one full episode, and
        then every episode starts at ``start_min``)."""
        start_min = max(self.warmup, self.window - 1)
        return min(self.episode_length, self.market.n_bars - 1 - start_min)

    @property
    def accounts(self) -> dict[str, np.ndarray]:
        """Read-only views ``[n_envs]`` of every account field (cash, units, equity, peak, ...)."""
        return self._accounts

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start a new episode in every env. ``seed`` makes the env as new with that seed (the
        episode counters restart, and every reset before the next step starts the same first
        episode), so what follows depends on the seed alone, not on the env's past."""
        if isinstance(seed, (list, tuple)):
            raise InvalidArgumentError("seed: expected one integer for all envs (starts derive from it per env)")
        value = 0 if seed is None else checked_seed(seed)
        if self._device_index is None:
            self._native.reset(seed is not None, value)
        else:
            stream = current_stream(self._device_index)
            self._native.check(stream)
            self._native.reset(seed is not None, value, stream)
        return self._obs, dict(self._info)

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Apply one action per env (0 SELL, 1 HOLD, 2 BUY), an integer array ``[n_envs]`` of a
        dtype in ``ACTION_DTYPES``; returns views of native buffers (in a new ``info`` dict each
        call)."""
        if self._device_index is None:
            self._native.step(as_host_array(actions))
        else:
            self._native.step(actions, current_stream(self._device_index))
        return self._obs, self._reward, self._terminated, self._truncated, dict(self._step_info)

    def check_actions(self) -> None:
        """CUDA env: wait for the queued steps and raise if one saw an action outside {0, 1, 2}
        (a CPU env checks every step before applying it, so this returns at once)."""
        if self._device_index is not None:
            self._native.check(current_stream(self._device_index))

    def close(self, **kwargs: Any) -> None:  # nothing to release beyond normal GC
        self.closed = True
