"""CGDT's acting: the window schedule, the return-to-go update, the key/value-cached decoder and
the rollout of target returns-to-go through a ``VecTradingEnv`` (torch is imported lazily)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from himari_builtin.models.cgdt.config import ACCOUNT_COLUMNS, CGDTConfig


def next_return_to_go(rtg: Any, reward: Any, gamma: float, low: float, high: float) -> Any:
    """The return-to-go token after a realised (scaled) reward: ``(R - r) / gamma``, clipped to
    ``[low, high]`` (numpy arrays)."""
    import numpy as np

    return np.clip((rtg - reward) / gamma, low, high)


def window_start(t: int, context_length: int) -> int:
    """First step of the inference window at step t: windows restart every ``H = L // 2``
    steps and keep the previous H steps, so ``t - start`` stays in ``[H, L - 1]`` once t >= H."""
    h = max(1, context_length // 2)
    return max(0, (t // h - 1) * h) if context_length > 1 else t


class Decoder:
    """Incremental policy over G parallel sequences with a key/value cache.

    ``logits(rtg [G], state [G, S], prev_action [G] or None)`` gives the logits at step t (the
    calls' count) from the tokens of steps ``window_start(t) .. t``; at a window restart the
    cache is rebuilt from the recorded history in one pass, otherwise only the three new tokens
    (``a_{t-1}, R_t, s_t``) are computed. Equal to the policy's full forward on that window."""

    def __init__(self, network: Any, context_length: int, n: int, g: int) -> None:
        import torch

        self.net, self.L = network, context_length
        dev = network.rtg_scale.device
        self.rtg = torch.zeros(g, n, device=dev)
        self.states = torch.zeros(g, n, network.n_features + ACCOUNT_COLUMNS, device=dev)
        self.actions = torch.zeros(g, n, dtype=torch.long, device=dev)
        self.t, self.start, self.caches = 0, 0, None

    def _full(self, t: int) -> Any:
        import torch

        pol, ws = self.net.policy, self.start
        x = pol.tokens(self.rtg[:, ws:t + 1], self.states[:, ws:t + 1], self.actions[:, ws:t + 1], 0)
        x = x[:, :-1]  # no action token for step t: not decided yet
        h, self.caches = pol.run(x, rows=torch.tensor([x.shape[1] - 1], device=x.device))
        return h[:, -1]

    def _incremental(self, t: int) -> Any:
        import torch

        pol, ws = self.net.policy, self.start
        pos = torch.tensor([t - 1 - ws, t - ws], device=self.rtg.device)
        x = torch.cat([pol.token("action", self.actions[:, t - 1:t], pos[:1]),
                       pol.token("return", self.rtg[:, t:t + 1], pos[1:]),
                       pol.token("state", self.states[:, t:t + 1], pos[1:])], dim=1)
        p = self.caches[0][0].shape[2]
        mask = torch.ones(3, p + 3, dtype=torch.bool, device=x.device).tril(diagonal=p)
        h, self.caches = pol.run(x, mask, self.caches, rows=torch.tensor([2], device=x.device))
        return h[:, -1]

    def logits(self, rtg: Any, state: Any, prev_action: Any = None) -> Any:
        t = self.t
        if prev_action is not None and t > 0:
            self.actions[:, t - 1] = prev_action
        self.rtg[:, t] = rtg
        self.states[:, t] = state
        ws = window_start(t, self.L)
        if t == 0 or ws != self.start or self.caches is None:
            self.start = ws
            h = self._full(t)
        else:
            h = self._incremental(t)
        self.t += 1
        return self.net.policy.logits(h).float()


def rollout_targets(network: Any, config: CGDTConfig, features: Any, open_: Any, close: Any,
                    targets: Any, env: Any, on_step: Callable[[], None] | None = None,
                    execution: Any = None) -> Any:
    """Greedy actions ``[G, n]`` along one range for each of G target returns-to-go, one env per
    target from a flat account; the last row takes no decision (HOLD). ``on_step`` is called
    after each of the ``n - 1`` decisions (progress).

    With ``execution`` (the run's execution rules) each target's greedy action passes through
    its own row of an ``ExecutionFilter`` over the G envs (the confidence threshold reads the
    softmax of the policy's logits); the env, the realised rewards and the action tokens of the
    history then follow the executed actions, and those are returned."""
    import numpy as np
    import torch

    from himari.plugin.api import ExecutionFilter, Market, VecTradingEnv

    n, g = len(features), len(targets)
    out = np.ones((g, n), dtype=np.int8)
    if n < 2:
        return out
    dev = network.rtg_scale.device
    market = Market(np.ascontiguousarray(open_, dtype=np.float64), np.ascontiguousarray(close, dtype=np.float64),
                    None, warmup=0)
    venv = VecTradingEnv(market, n_envs=g, episode_length=n - 1, mode=env.mode, fee=env.fee,
                         slippage=env.slippage, reward=env, random_start=False, warmup=0, seed=0)
    obs, _ = venv.reset()
    feats = torch.from_numpy(np.nan_to_num(np.asarray(features, dtype=np.float32), nan=0.0, posinf=0.0,
                                           neginf=0.0)).to(dev)
    scale = float(network.rtg_scale)
    low, high = (float(x) for x in network.rtg_bounds)
    rtg = np.asarray(targets, dtype=np.float64)
    decoder = Decoder(network, config.context_length, n, g)
    rules = None if execution is None else ExecutionFilter(g, env.mode, execution)
    prev = None
    for t in range(n - 1):
        account = torch.from_numpy(np.array(obs[:, -1, -ACCOUNT_COLUMNS:], dtype=np.float32)).to(dev)
        obs_t = torch.cat([feats[t].expand(g, -1), account], dim=1)
        r_in = torch.from_numpy((rtg / scale).astype(np.float32)).to(dev)
        logits = decoder.logits(r_in, network.states(obs_t), prev)
        act = logits.argmax(-1)
        if rules is None:
            out[:, t] = act.cpu().numpy()
        else:
            probs = torch.softmax(logits, -1).cpu().numpy() if execution.confidence > 0 else None
            out[:, t] = rules.step(act.cpu().numpy(), probs)
            act = torch.from_numpy(out[:, t].astype(np.int64)).to(dev)
        obs, reward, *_ = venv.step(out[:, t].astype(np.int64))
        rtg = next_return_to_go(rtg, np.asarray(reward, dtype=np.float64) * config.reward_scale, config.gamma,
                                low, high)
        prev = act
        if on_step is not None:
            on_step()
    return out
