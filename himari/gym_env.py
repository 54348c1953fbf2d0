"""TradingEnv: one account of the native env as a single ``gymnasium.Env`` (``himari/Trading-v0``).

For libraries built around single envs (stable-baselines3, gymnasium's own vector wrappers,
anything that expects ``gymnasium.make``). Each instance is one lane of the native
``VecTradingEnv``, so its episodes, observations and rewards are exactly that env's
(docs/semantics.md). For many envs in lock-step use ``VecTradingEnv`` itself, which is also
what ``gymnasium.make_vec("himari/Trading-v0", num_envs=N)`` builds.

The market comes from one of:

- ``market=``: a ``himari.engine.Market`` (CPU);
- ``data=`` (a prepared data directory, or a bars file, prepared once into the cache, as the
  CLI's ``--data``) and ``split=`` (``train`` by default): the split's longest range, features
  standardised with the data set's train-split mean and standard deviation (as the ``zscore``
  preprocessor does, clipped at 10);
- neither: the synthetic default data set (``himari.data.default_prepared_dataset``: synthesised
  and prepared into the cache on first use, a second or two, then reused), train split.

Episode ends follow gymnasium's single-env contract: ``step`` returns the ended episode's final
observation with ``terminated`` (bankruptcy) or ``truncated`` (episode length or end of data),
and the next ``reset()`` returns the first observation of the episode the native env has
already started (same-step autoreset), so no episode is skipped and a seeded run is
reproducible. ``step`` after an episode ended, or before the first ``reset``, raises
``gymnasium.error.ResetNeeded``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from himari.engine.env import VecTradingEnv, checked_seed
from himari.engine.market import Market
from himari.engine.reward import RewardConfig
from himari.errors import ConfigError, DataError, DeviceError, InvalidArgumentError

_TERMS = ("log_return", "drawdown_penalty", "turnover_penalty", "dsr")


def resolve_market(market: Market | None = None, data: str | os.PathLike[str] | None = None,
                   split: str | None = None) -> Market:
    """The market of a gymnasium env: ``market`` as given, else the ``split`` (default ``train``)
    of the prepared data set ``data`` (default: the synthetic one)."""
    if market is not None:
        if data is not None or split is not None:
            raise ConfigError("market: give either a Market or a data set (data=, split=), not both")
        if not isinstance(market, Market):
            raise InvalidArgumentError(f"market: expected a himari.engine.Market, got {type(market).__name__} "
                                       "(give a prepared data directory as data=)")
        return market
    if data is not None and not isinstance(data, (str, os.PathLike)):
        raise ConfigError(f"data: expected the path of a prepared data directory or a bars file, got "
                          f"{type(data).__name__} (give a Market as market=)")
    if split is None:
        split = "train"
    if not isinstance(split, str):
        raise ConfigError(f"split: expected a split name such as 'train', got {split!r}")
    from himari.data.pipeline import resolve_prepared

    path = resolve_prepared(data)
    return _prepared_market(str(path.resolve()), split, (path / "metadata.json").stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _prepared_market(path: str, split: str, stamp: int) -> Market:
    """The longest range of a split as a Market (features standardised with the train-split
    statistics). Cached so that the envs of one process (a sync vector env of N single envs)
    share one copy; ``stamp`` (the metadata's mtime) makes a re-prepared directory a new key."""
    from himari.data.normalize import apply_zscore, fit_zscore
    from himari.data.prepared import PreparedData
    from himari.data.splits import rows_of

    data = PreparedData(path)
    ranges = [r for r in data.split(split) if r[1] - r[0] >= 2]
    if not ranges:
        raise DataError(f"{path}: split {split!r} has no range of at least 2 rows")
    a, b = max(ranges, key=lambda r: r[1] - r[0])
    mean, std = fit_zscore(data.features[rows_of(data.split("train"))])
    features = apply_zscore(data.features[a:b], mean, std, clip=10.0)
    return Market(np.ascontiguousarray(data.open[a:b], dtype=np.float64),
                  np.ascontiguousarray(data.close[a:b], dtype=np.float64),
                  np.ascontiguousarray(features, dtype=np.float32), warmup=0)


def _check_action(action: Any) -> int:
    """One integer in {0, 1, 2} (numpy scalars and one-element arrays too, as SB3 passes them)."""
    a = np.asarray(action)
    if a.size != 1 or a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise InvalidArgumentError(f"action: expected one integer in {{0, 1, 2}} (SELL, HOLD, BUY), got {action!r}")
    value = int(a.reshape(()))
    if not 0 <= value <= 2:
        raise InvalidArgumentError(f"action: expected 0 (SELL), 1 (HOLD) or 2 (BUY), got {value}")
    return value


class TradingEnv(gym.Env[np.ndarray, int]):
    """One trading account over a market, as a single-agent gymnasium env.

    Args:
        market: a CPU ``Market``; or leave it out and give ``data`` / ``split``.
        data: a prepared data directory (or a bars file); ``None`` with no market: the
            synthetic default data set.
        split: the split of ``data`` (``train`` by default).
        episode_length, mode, fee, slippage, reward, window, seed, random_start, warmup: as
            ``VecTradingEnv``.

    Observation: float32 ``[window, n_features + 4]`` (features, then the 4 account columns).
    Actions: ``Discrete(3)`` (0 SELL, 1 HOLD, 2 BUY). Reward: the env's shaped log return.
    ``info``: the reward terms of the step (``log_return``, ``drawdown_penalty``,
    ``turnover_penalty``, ``dsr``) and the account the observation shows (``equity``,
    ``position``, ``drawdown``, ``trades``, ``turnover``, ``bar``); on the step an episode ends,
    the reward terms and the finished episode's ``episode_return`` (log final equity) and
    ``episode_length`` instead of the account. Returned arrays are copies.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        market: Market | None = None,
        *,
        data: str | os.PathLike[str] | None = None,
        split: str | None = None,
        episode_length: int = 2048,
        mode: str = "long_flat",
        fee: float = 1e-3,
        slippage: float = 5e-4,
        reward: RewardConfig | None = None,
        window: int = 1,
        seed: int = 0,
        random_start: bool = True,
        warmup: int | None = None,
    ) -> None:
        market = resolve_market(market, data, split)
        if market.device != "cpu":
            raise DeviceError(f"market: the single env runs on the CPU, got a market on {market.device} "
                              "(use VecTradingEnv for many envs on a GPU)")
        self._vec = VecTradingEnv(market, n_envs=1, episode_length=episode_length, mode=mode, fee=fee,
                                  slippage=slippage, reward=reward, window=window, seed=seed,
                                  random_start=random_start, warmup=warmup, final_obs=True)
        self.market = market
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self._action = np.zeros(1, dtype=np.int64)
        self._needs_reset = True
        # The native env restarts an ended episode in the same step; the next reset() hands out
        # that already-started episode instead of starting (and consuming) another one.
        self._restarted = False

    def _account_info(self) -> dict[str, Any]:
        info = self._vec._info
        return {"equity": float(info["equity"][0]), "position": int(info["position"][0]),
                "drawdown": float(info["drawdown"][0]), "trades": int(info["trades"][0]),
                "turnover": int(info["turnover"][0]), "bar": int(info["bar"][0])}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: ``seed`` reseeds and restarts the episode counter (``reset(seed=s)``
        always gives the same episodes); without it the next episode of the counter."""
        if seed is not None:
            seed = checked_seed(seed)
        super().reset(seed=seed)
        if seed is not None:
            self._vec.reset(seed=seed)
        elif not self._restarted:
            self._vec.reset()
        self._restarted = False
        self._needs_reset = False
        return self._vec._obs[0].copy(), self._account_info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded("step: the episode has ended (or never started); call reset() first")
        self._action[0] = _check_action(action)
        obs, reward, term, trunc, info = self._vec.step(self._action)
        terminated, truncated = bool(term[0]), bool(trunc[0])
        out: dict[str, Any] = {k: float(info[k][0]) for k in _TERMS}
        if terminated or truncated:
            self._needs_reset = True
            self._restarted = True
            out["episode_return"] = float(info["episode_return"][0])
            out["episode_length"] = int(info["episode_length"][0])
            return info["final_obs"][0].copy(), float(reward[0]), terminated, truncated, out
        out.update(self._account_info())
        return obs[0].copy(), float(reward[0]), False, False, out


def make_vec_env(num_envs: int = 1, *, market: Market | None = None, data: str | os.PathLike[str] | None = None,
                 split: str | None = None, **kwargs: Any) -> VecTradingEnv:
    """``gymnasium.make_vec("himari/Trading-v0", num_envs=N)``: the native ``VecTradingEnv``
    of N envs over the same market as ``TradingEnv`` (keyword arguments as ``VecTradingEnv``)."""
    return VecTradingEnv(resolve_market(market, data, split), n_envs=num_envs, **kwargs)
