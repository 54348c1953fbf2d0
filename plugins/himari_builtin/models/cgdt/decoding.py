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
    """Incremental policy over G parallel sequences with a fixed-size key/value cache.

    ``logits(rtg [G], state [G, S], prev_action [G] or None)`` (CPU tensors) gives the logits at
    step t (the calls' count; a CPU tensor ``[G, 3]``) from the tokens of steps
    ``window_start(t) .. t``; at a window restart the cache is rebuilt from the recorded
    history in one pass, otherwise only the three new tokens (``a_{t-1}, R_t, s_t``) are
    computed, written into the cache at their slots and attend to the slots filled so far.
    Equal to the policy's full forward on that window.

    Why this shape: acting is sequential (each decision needs the account the last one left),
    so on a GPU a step is bound by launching its few hundred small kernels, not by computing.
    With every step's shapes fixed and its position read from a tensor, the step is recorded
    once and replayed as a CUDA graph (``graphs``; ``himari.plugin.api.GraphReplay``), and each
    step moves one small input row to the device and the logits back. The history stays on the
    host: only a window restart (one step in ``context_length // 2``) reads it."""

    def __init__(self, network: Any, context_length: int, n: int, g: int, graphs: bool = False) -> None:
        import torch

        from himari.plugin.api import GraphReplay

        self.net, self.L = network, context_length
        self.device = network.rtg_scale.device
        s = network.n_features + ACCOUNT_COLUMNS
        self.rtg = torch.zeros(g, n)
        self.states = torch.zeros(g, n, s)
        self.actions = torch.zeros(g, n, dtype=torch.long)
        self.t, self.start = 0, 0
        self.capacity = max(3 * context_length - 1, 2)  # tokens of the longest window, its last action left out
        self.caches: list[tuple[Any, Any]] = []  # per block (k, v) [G, H, capacity, d/H], made by the first pass
        self.slot_index = torch.arange(self.capacity, device=self.device)
        self.new_slots = torch.arange(3, device=self.device)
        # the step's input row: R_t, s_t, a_{t-1}, the step's position in its window (one copy a step)
        self.row = torch.zeros(g, s + 3, pin_memory=self.device.type == "cuda")
        self.step = GraphReplay(self._incremental, device=self.device, name="cgdt acting step",
                                off="set cgdt.acting_cuda_graph=false", enabled=graphs)

    def _full(self, t: int) -> Any:
        import torch

        pol, ws, dev = self.net.policy, self.start, self.device
        x = pol.tokens(self.rtg[:, ws:t + 1].to(dev), self.states[:, ws:t + 1].to(dev),
                       self.actions[:, ws:t + 1].to(dev), 0)
        x = x[:, :-1]  # no action token for step t: not decided yet
        h, caches = pol.run(x, rows=torch.tensor([x.shape[1] - 1], device=dev))
        if not self.caches:
            self.caches = [(k.new_zeros(*k.shape[:2], self.capacity, k.shape[3]),
                            v.new_zeros(*v.shape[:2], self.capacity, v.shape[3])) for k, v in caches]
        for (k_all, v_all), (k, v) in zip(self.caches, caches):
            k_all[:, :, :k.shape[2]].copy_(k)
            v_all[:, :, :v.shape[2]].copy_(v)
        return h[:, -1]

    def _incremental(self, row: Any) -> Any:
        """Logits of the step whose input row is ``row [G, S + 3]`` (on the device): tensor
        operations only, so that it can be recorded as a CUDA graph."""
        import torch

        pol = self.net.policy
        s = row.shape[1] - 3
        step = row[0, s + 2].long()  # t - window start, the same for every sequence
        pos = torch.stack([step - 1, step])
        x = torch.cat([pol.token("action", row[:, None, s + 1].long(), pos[:1]),
                       pol.token("return", row[:, None, 0], pos[1:]),
                       pol.token("state", row[:, None, 1:s + 1], pos[1:])], dim=1)
        slots = 3 * step - 1 + self.new_slots  # the three tokens follow the 3 (t - ws) - 1 cached ones
        mask = self.slot_index[None, :] <= slots[:, None]
        h = pol.drop(pol.embed_ln(x))
        last = len(pol.blocks) - 1
        for i, block in enumerate(pol.blocks):
            h = block.forward_into_cache(h, mask, self.caches[i], slots, first_row=2 if i == last else 0)
        return pol.logits(h[:, -1]).float()

    def logits(self, rtg: Any, state: Any, prev_action: Any = None) -> Any:
        import torch

        t = self.t
        if prev_action is not None and t > 0:
            self.actions[:, t - 1] = prev_action
        self.rtg[:, t] = rtg
        self.states[:, t] = state
        ws = window_start(t, self.L)
        with torch.no_grad():
            if t == 0 or ws != self.start or not self.caches:
                self.start = ws
                out = self.net.policy.logits(self._full(t)).float()
            else:
                s = self.states.shape[2]
                self.row[:, 0] = self.rtg[:, t]
                self.row[:, 1:s + 1] = self.states[:, t]
                self.row[:, s + 1] = self.actions[:, t - 1]
                self.row[:, s + 2] = t - ws
                out = self.step(self.row.to(self.device, non_blocking=True))
            out = out.cpu()  # a replay overwrites its output tensor: copy it before the next step
        self.t += 1
        return out


def rollout_targets(network: Any, config: CGDTConfig, features: Any, open_: Any, close: Any,
                    targets: Any, env: Any, on_step: Callable[[], None] | None = None,
                    execution: Any = None, decisions: Any = None) -> Any:
    """Greedy actions ``[G, n]`` along one range for each of G target returns-to-go, one env per
    target from a flat account; the last row takes no decision (HOLD). ``on_step`` is called
    after each of the ``n - 1`` decisions (progress).

    With ``execution`` (the run's execution rules) each target's greedy action passes through
    its own row of an ``ExecutionFilter`` over the G envs (the confidence threshold reads the
    softmax of the policy's logits); the env, the realised rewards and the action tokens of the
    history then follow the executed actions, and those are returned.

    ``decisions`` (int8 ``[G, n - 1]``), when given, receives each target's own decisions before
    the rules, and the filter then leaves them uncounted: the caller counts the one target it
    keeps (``record_decisions``), not all G candidates."""
    import numpy as np
    import torch

    from himari.plugin.api import (
        ExecutionFilter,
        Market,
        VecTradingEnv,
        holding_log_returns,
    )

    n, g = len(features), len(targets)
    out = np.ones((g, n), dtype=np.int8)
    if n < 2:
        return out
    market = Market(np.ascontiguousarray(open_, dtype=np.float64), np.ascontiguousarray(close, dtype=np.float64),
                    None, warmup=0)
    venv = VecTradingEnv(market, n_envs=g, episode_length=n - 1, mode=env.mode, fee=env.fee,
                         slippage=env.slippage, reward=env, random_start=False, warmup=0, seed=0)
    obs, _ = venv.reset()
    feats = np.nan_to_num(np.asarray(features, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    account_scale = network.account_scale.cpu().numpy()  # network.states(), on the host
    scale = float(network.rtg_scale)
    low, high = (float(x) for x in network.rtg_bounds)
    rtg = np.asarray(targets, dtype=np.float64)
    held = holding_log_returns(close)  # step t's benchmark, known at bar t+1 like its reward
    graphs = config.acting_cuda_graph and network.rtg_scale.device.type == "cuda"
    decoder = Decoder(network, config.context_length, n, g, graphs=graphs)
    rules = None if execution is None else ExecutionFilter(g, env.mode, execution,
                                                             count_decisions=decisions is None)
    state = np.empty((g, feats.shape[1] + ACCOUNT_COLUMNS), dtype=np.float32)
    prev = None
    for t in range(n - 1):
        state[:, :feats.shape[1]] = feats[t]
        state[:, feats.shape[1]:] = np.asarray(obs[:, -1, -ACCOUNT_COLUMNS:], dtype=np.float32) * account_scale
        logits = decoder.logits(torch.from_numpy((rtg / scale).astype(np.float32)), torch.from_numpy(state), prev)
        act = logits.argmax(-1)
        if decisions is not None:
            decisions[:, t] = act.numpy()
        if rules is None:
            out[:, t] = act.numpy()
        else:
            probs = torch.softmax(logits, -1).numpy() if execution.confidence > 0 else None
            out[:, t] = rules.step(act.numpy(), probs)
            act = torch.from_numpy(out[:, t].astype(np.int64))
        obs, reward, *_ = venv.step(out[:, t].astype(np.int64))
        realised = np.asarray(reward, dtype=np.float64) - config.benchmark_weight * held[t]  # as in training
        rtg = next_return_to_go(rtg, realised * config.reward_scale, config.gamma, low, high)
        prev = act
        if on_step is not None:
            on_step()
    return out
