"""CQL, the model plugin instance: the transitions dataset, the loss and sequential acting, with
the loss's pure pieces (tested alone). torch is imported lazily."""

from __future__ import annotations

from typing import Any

from himari_builtin.models.cql.config import ACCOUNT_COLUMNS, CQLConfig


def conservative_gap(q: Any, actions: Any) -> Any:
    """Per-row CQL(H) gap ``logsumexp_a Q(s, a) - Q(s, a_data)`` of ``q [B, A]``, exact over A."""
    import torch

    return torch.logsumexp(q, dim=-1) - q.gather(1, actions.long()[:, None])[:, 0]


def td_targets(reward: Any, done: Any, gamma: float, target_q: tuple[Any, Any],
               online_next_q: tuple[Any, Any] | None, kind: str) -> tuple[Any, Any]:
    """TD targets of the two heads: ``r + gamma (1 - done) V(s')``.

    ``min``: ``V = max_a min(Q'_1, Q'_2)(s', a)``, shared by both heads. ``double-dqn``: head i
    uses ``Q'_i(s', argmax_a Q_i(s', a))`` (``online_next_q`` gives ``Q_i(s', .)``)."""
    import torch

    t1, t2 = target_q
    notdone = 1.0 - done.float()
    if kind == "min":
        v = torch.minimum(t1, t2).max(dim=-1).values
        y = reward + gamma * notdone * v
        return y, y
    if online_next_q is None:
        raise ValueError("double-dqn targets need the online Q values at s'")
    ys = []
    for t, o in zip((t1, t2), online_next_q):
        v = t.gather(1, o.argmax(dim=-1, keepdim=True))[:, 0]
        ys.append(reward + gamma * notdone * v)
    return ys[0], ys[1]


def q_probabilities(q_sum: Any) -> Any:
    """The action probabilities of a row for the confidence threshold: the softmax of the mean
    of the two heads' Q values (``q_sum`` is their sum, whose arg-max is the greedy action), in
    the Q values' own units (rewards times ``reward_scale``), temperature 1."""
    import numpy as np

    q = np.asarray(q_sum, dtype=np.float64) / 2.0
    e = np.exp(q - q.max())
    return e / e.sum()


class _Transitions:
    """``(s, a, r, s', done)`` batches by tensor indexing (what the Trainer's loop needs)."""

    def __init__(self, obs: Any, index: Any, actions: Any, rewards: Any, dones: Any) -> None:
        self.obs, self.index, self.actions, self.rewards, self.dones = obs, index, actions, rewards, dones

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: Any) -> tuple[Any, Any, Any, Any, Any]:
        k = self.index[idx]
        return self.obs[k], self.actions[k], self.rewards[k], self.obs[k + 1], self.dones[k]


class CQL:
    """The model plugin instance (see ``himari.plugin.api.Model`` for the lifecycle)."""

    paradigm = "offline-rl"
    cuda_graph_safe = True  # loss: no host reads, no Python state (train.cuda_graph)

    def __init__(self, config: CQLConfig, ctx: Any) -> None:
        from himari_builtin.models.cql.network import CQLNetwork

        self.config = config
        self.n_features = ctx.n_features
        self.env = ctx.env
        self.network = CQLNetwork(config, ctx.n_features)

    def init_roles(self) -> dict[str, str]:
        """For ``orthogonal-init``: the stacked weights ``w{i} [2, in, out]`` (hidden, the last
        the Q-value heads) and their biases ``b{i}``; ``log_alpha`` is not a layer."""
        last = self.network.n_layers - 1
        return {**{f"w{i}": "value" if i == last else "hidden" for i in range(last + 1)},
                **{f"b{i}": "bias" for i in range(last + 1)}}

    def reinitialised(self) -> None:
        """The target networks start as copies of the Q networks (as at construction)."""
        self.network.copy_targets()

    # ------------------------------------------------------------------ data

    def dataset(self, ctx: Any, split: str) -> Any:
        """Transitions of the run's ranges of the split (``ctx.splits[split]``, a fold's in a
        walk-forward evaluation; ``TransitionDataset``): states are the run's
        features ++ the env's account columns along the behaviour policy's path."""
        import numpy as np
        import torch

        from himari.plugin.api import TransitionDataset

        c = self.config
        ds = TransitionDataset(ctx.data, split, actions=c.behaviour, epsilon=c.epsilon, fee=ctx.env.fee,
                               slippage=ctx.env.slippage, mode=ctx.env.mode, reward=ctx.env, features=ctx.features,
                               seed=ctx.seed * 2 + (0 if split == "train" else 1), benchmark_weight=c.benchmark_weight,
                               ranges=ctx.splits[split])
        obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return _Transitions(torch.from_numpy(obs), torch.from_numpy(ds.index.astype(np.int64)),
                            torch.from_numpy(ds.actions.astype(np.int64)),
                            torch.from_numpy(ds.rewards.astype(np.float32) * np.float32(c.reward_scale)),
                            torch.from_numpy(ds.dones.astype(np.float32)))

    # ------------------------------------------------------------------ loss

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        c, net = self.config, self.network
        s, a, r, s2, done = batch
        if net.training and torch.is_grad_enabled():
            net.polyak(c.tau)  # after the previous optimiser step (see the package docstring)
        x, x2 = net.inputs(s.float()), net.inputs(s2.float())
        q = net(x).float()
        q1, q2 = q[0], q[1]
        with torch.no_grad():
            tq = net.target_forward(x2).float()
            oq = net(x2).float() if c.target == "double-dqn" else None
            y1, y2 = td_targets(r.float(), done, c.gamma, (tq[0], tq[1]),
                                None if oq is None else (oq[0], oq[1]), c.target)
        a = a.long()
        qa1 = q1.gather(1, a[:, None])[:, 0]
        qa2 = q2.gather(1, a[:, None])[:, 0]
        td = F.mse_loss(qa1, y1) + F.mse_loss(qa2, y2)
        gap1, gap2 = conservative_gap(q1, a).mean(), conservative_gap(q2, a).mean()
        gap = 0.5 * (gap1 + gap2)
        alpha = net.log_alpha.exp().clamp(max=1e6)
        if c.lagrangian:
            loss = td + alpha.detach() * (gap1 + gap2) - alpha * (gap.detach() - c.target_gap)
        else:
            loss = td + alpha * (gap1 + gap2)
        qs = q.detach()
        # Logs stay on the device: the Trainer copies a step's logs to the host at once.
        logs = {"td_loss": td.detach(), "cql_gap": gap.detach(), "alpha": alpha.detach(),
                "q_data": (0.5 * (qa1 + qa2).mean()).detach(), "q_mean": qs.mean(),
                "q_max": qs.max(dim=-1).values.mean(), "td_target": y1.mean()}
        return loss, logs

    # ------------------------------------------------------------------- act

    def _numpy_heads(self) -> list[tuple[Any, Any, Any, list[tuple[Any, Any]]]]:
        """Per head: (first layer's feature weights [F, h], account weights (scaled) [4, h],
        bias [h], the later layers [(w [in, out], b [out])])."""
        net = self.network
        F = self.n_features
        scale = net.account_scale.detach().cpu().numpy()
        layers = [(w.detach().cpu().float().numpy(), b.detach().cpu().float().numpy()) for w, b in net.layers()]
        out = []
        for k in range(2):
            w0, b0 = layers[0][0][k], layers[0][1][k, 0]
            rest = [(w[k].T.copy(), b[k, 0]) for w, b in layers[1:]]
            out.append((w0[:F].copy(), (w0[F:] * scale[:, None]).T.copy(), b0, rest))
        return out

    def _act_episode(self, features: Any, open_: Any, close: Any, heads: Any, env_cfg: Any,
                     execution: Any = None) -> Any:
        """Greedy actions along one episode of consecutive rows, from a flat account, stepping a
        one-env VecTradingEnv on ``open_``/``close`` (any common scale). With ``execution`` the
        greedy action passes through an ``ExecutionFilter`` before it reaches the env; its
        confidence threshold reads ``q_probabilities`` of the row's Q values. The last row decides
        nothing (HOLD, as every policy's last row of a range): it is neither computed nor counted
        among the filter's decisions."""
        import numpy as np

        from himari.plugin.api import ExecutionFilter, Market, VecTradingEnv

        n = len(features)
        xf = np.nan_to_num(np.asarray(features, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        pre = [xf @ wf + b for wf, _, b, _ in heads]
        open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
        # one dummy bar at the end so an episode of n rows fits without truncating
        market = Market(np.append(open_, close[-1]), np.append(close, close[-1]), np.zeros((n + 1, 1), np.float32))
        env = VecTradingEnv(market, n_envs=1, episode_length=n, mode=env_cfg.mode, fee=env_cfg.fee,
                            slippage=env_cfg.slippage, window=1, seed=0, random_start=False, warmup=0)
        obs, _ = env.reset()
        out = np.empty(n, dtype=np.int8)
        step_action = np.zeros(1, dtype=np.int8)
        rules = None if execution is None else ExecutionFilter(1, env_cfg.mode, execution)
        confidence = execution is not None and execution.confidence > 0
        out[n - 1:] = 1
        for t in range(n - 1):
            acc = obs[0, 0, 1:1 + ACCOUNT_COLUMNS]
            q = np.zeros(3, dtype=np.float32)
            for (wf, wa, b, rest), p in zip(heads, pre):
                h = np.maximum(p[t] + wa @ acc, 0.0)
                for i, (w, bb) in enumerate(rest):
                    h = w @ h + bb
                    if i < len(rest) - 1:
                        h = np.maximum(h, 0.0)
                q += h
            a = int(np.argmax(q))
            if rules is not None:
                a = int(rules.step([a], q_probabilities(q)[None] if confidence else None)[0])
            out[t] = a
            step_action[0] = a
            obs, *_ = env.step(step_action)
        return out

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("cql decides from the account state: use act_sequence(features, open, close, ranges, env)")

    def act_sequence(self, features: Any, open: Any, close: Any, ranges: Any, env: Any,  # noqa: A002
                     execution: Any = None) -> Any:
        """Sequential greedy actions along each ``(a, b)`` range from a flat account, on the true
        prices, under the ``execution`` rules when given (each range from a fresh filter). The
        last row of each range takes no decision: HOLD."""
        import numpy as np

        heads = self._numpy_heads()
        parts = []
        for a, b in ranges:
            if b <= a:
                continue
            acts = self._act_episode(np.asarray(features[a:b]), np.asarray(open[a:b]), np.asarray(close[a:b]),
                                     heads, env if env is not None else self.env, execution)
            acts[-1] = 1
            parts.append(acts)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)
