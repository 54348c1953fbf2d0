"""CQL: Conservative Q-Learning (Kumar et al. 2020, "Conservative Q-Learning for Offline
Reinforcement Learning"), discrete actions, on the transitions dataset.

The state is one bar's features plus the env's 4 account columns (position, unrealised PnL,
drawdown, log1p(bars in position)); the actions are SELL, HOLD, BUY. Two independent Q networks
(``hidden_sizes`` each, ReLU) with target copies updated by Polyak averaging (``tau``); the TD
target is either the clipped double-Q value ``max_a min_i Q'_i(s', a)`` (``target: min``) or the
Double-DQN value ``Q'_i(s', argmax_a Q_i(s', a))`` per head (``target: double-dqn``). The
conservative term ``alpha * (logsumexp_a Q_i(s, a) - Q_i(s, a_data))`` is computed exactly over
the three actions for each head; with ``lagrangian: true`` alpha is learned (as ``log_alpha``) so
that the mean gap settles at ``target_gap`` (the CQL(lagrange) variant). 117,186 parameters at
60 features (117,187 with the Lagrangian alpha).

Data: a ``TransitionDataset`` over each split, built from the run's preprocessed features
(``zscore`` by default: himari's one train-split normaliser), behaviour actions from the labels
(``behaviour``) mixed with ``epsilon`` seeded uniform actions for coverage; rewards and account
columns come from ``replay_actions``, i.e. the native env's reward function with the run's fee,
slippage, mode and reward shaping (the ``env:`` section), so the model optimises what the
backtester measures. Rewards are multiplied by ``reward_scale`` (5-minute log returns are ~1e-3).

Acting is sequential because the account state depends on the policy's own earlier actions:
``act_sequence(features, open, close, ranges, env)`` steps a one-env ``VecTradingEnv``
(``random_start=False``, one episode covering each range) on the true prices the Trainer and
``himari backtest`` hand over, taking at each row the greedy action (arg-max of the mean of the
two Q heads) given the row's features and the env's account columns. The action at row t reads
rows ``<= t`` only. The first layer's feature part is computed for all rows in one matrix
product; the per-row work is small NumPy matrix-vector products (about 30 us a row).

Polyak averaging runs at the start of each training ``loss`` call (network in train mode, grad
enabled), i.e. after the previous optimiser step, since the Trainer has no after-step hook; the
first call is a no-op because the targets start as copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from himari.plugin.api import ModelSpec, ParamCount, hookimpl

ACCOUNT_COLUMNS = 4
ACCOUNT_SCALE = (1.0, 10.0, 10.0, 0.2)
"""Fixed scales of the account columns (position, unrealised PnL, drawdown, log1p(bars))."""


@dataclass(frozen=True)
class CQLConfig:
    hidden_sizes: tuple[int, ...] = (210, 210)
    """Width of each hidden layer of each of the two Q networks."""
    gamma: float = 0.99
    """Discount factor."""
    target: Literal["min", "double-dqn"] = "min"
    """TD target: min (clipped double-Q, max_a min_i Q'_i) or double-dqn (Q'_i at argmax_a Q_i)."""
    tau: float = 0.005
    """Polyak averaging rate of the target networks per optimiser step."""
    alpha: float = 1.0
    """Weight of the conservative term (the initial value when lagrangian)."""
    lagrangian: bool = False
    """Learn alpha (log_alpha, one extra parameter) so that the mean gap settles at target_gap."""
    target_gap: float = 1.0
    """Target of logsumexp_a Q(s, a) - Q(s, a_data) for the Lagrangian alpha."""
    reward_scale: float = 100.0
    """Rewards (5-minute log returns) are multiplied by this."""
    behaviour: Literal["labels", "random"] = "labels"
    """Behaviour actions of the transitions dataset: the labels or seeded uniform actions."""
    epsilon: float = 0.2
    """Share of behaviour actions replaced by seeded uniform actions (coverage)."""
    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        if self.target not in ("min", "double-dqn"):
            raise ValueError(f"target must be min or double-dqn, got {self.target!r}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.alpha < 0 or (self.lagrangian and self.alpha <= 0):
            raise ValueError(f"alpha must be >= 0 (> 0 when lagrangian), got {self.alpha}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.reward_scale <= 0:
            raise ValueError("reward_scale must be > 0")


def parameter_count(config: CQLConfig, n_features: int) -> ParamCount:
    """Two Q networks (weights and biases of each Linear) plus log_alpha when it is learned;
    the target copies are buffers, not parameters."""
    head, width = 0, n_features + ACCOUNT_COLUMNS
    for h in config.hidden_sizes:
        head += width * h + h
        width = h
    head += width * 3 + 3
    total = 2 * head + (1 if config.lagrangian else 0)
    return ParamCount(total, total)


# ----------------------------------------------------------------- pure pieces (tested alone)

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


def polyak_(targets: list[Any], sources: list[Any], tau: float) -> None:
    """In place: ``target <- (1 - tau) target + tau source`` for each pair."""
    import torch

    with torch.no_grad():
        for t, s in zip(targets, sources):
            t.mul_(1.0 - tau).add_(s.detach(), alpha=tau)


def _build_network(config: CQLConfig, n_features: int) -> Any:
    import math

    import torch
    from torch import nn

    class CQLNetwork(nn.Module):
        """Two Q networks over (features ++ scaled account columns), stored stacked
        (layer i: weight ``w{i} [2, in, out]``, bias ``b{i} [2, 1, out]``) so both heads run in
        one batched matrix product per layer; their Polyak target copies are the buffers
        ``target_w{i}``/``target_b{i}``; alpha is ``log_alpha``."""

        def __init__(self) -> None:
            super().__init__()
            self.n_features = n_features
            self.register_buffer("account_scale", torch.tensor(ACCOUNT_SCALE, dtype=torch.float32))
            sizes = [n_features + ACCOUNT_COLUMNS, *config.hidden_sizes, 3]
            self.n_layers = len(sizes) - 1
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                # nn.Linear's default initialisation, per head
                bound = 1.0 / math.sqrt(a)
                w = torch.empty(2, a, b).uniform_(-bound, bound)
                bias = torch.empty(2, 1, b).uniform_(-bound, bound)
                setattr(self, f"w{i}", nn.Parameter(w))
                setattr(self, f"b{i}", nn.Parameter(bias))
                self.register_buffer(f"target_w{i}", w.clone())
                self.register_buffer(f"target_b{i}", bias.clone())
            log_alpha = torch.tensor(math.log(max(config.alpha, 1e-30)), dtype=torch.float32)
            if config.lagrangian:
                self.log_alpha = nn.Parameter(log_alpha)
            else:
                self.register_buffer("log_alpha", log_alpha)

        def inputs(self, s: Any) -> Any:
            return torch.cat([s[:, :self.n_features], s[:, self.n_features:] * self.account_scale], dim=1)

        def layers(self, target: bool = False) -> list[tuple[Any, Any]]:
            pre = "target_" if target else ""
            return [(getattr(self, f"{pre}w{i}"), getattr(self, f"{pre}b{i}")) for i in range(self.n_layers)]

        def _q(self, x: Any, target: bool) -> Any:
            layers = self.layers(target)
            w0, b0 = layers[0]
            h = torch.matmul(x, w0) + b0  # [2, B, h]: x broadcast over the heads
            for w, b in layers[1:]:
                h = torch.baddbmm(b, torch.relu(h), w)
            return h

        def forward(self, x: Any) -> Any:
            """Q values of both heads, ``[2, B, 3]``."""
            return self._q(x, False)

        def target_forward(self, x: Any) -> Any:
            return self._q(x, True)

        def polyak(self, tau: float) -> None:
            targets, sources = [], []
            for (tw, tb), (w, b) in zip(self.layers(True), self.layers(False)):
                targets += [tw, tb]
                sources += [w, b]
            polyak_(targets, sources, tau)

    return CQLNetwork()


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

    def __init__(self, config: CQLConfig, ctx: Any) -> None:
        self.config = config
        self.n_features = ctx.n_features
        self.env = ctx.env
        self.network = _build_network(config, ctx.n_features)

    # ------------------------------------------------------------------ data

    def dataset(self, ctx: Any, split: str) -> Any:
        """Transitions of the split's ranges (``TransitionDataset``): states are the run's
        features ++ the env's account columns along the behaviour policy's path."""
        import numpy as np
        import torch

        from himari.plugin.api import TransitionDataset

        c = self.config
        ds = TransitionDataset(ctx.data, split, actions=c.behaviour, epsilon=c.epsilon, fee=ctx.env.fee,
                               slippage=ctx.env.slippage, mode=ctx.env.mode, reward=ctx.env, features=ctx.features,
                               seed=ctx.seed * 2 + (0 if split == "train" else 1))
        obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return _Transitions(torch.from_numpy(obs), torch.from_numpy(ds.index.astype(np.int64)),
                            torch.from_numpy(ds.actions.astype(np.int64)),
                            torch.from_numpy(ds.rewards.astype(np.float32) * np.float32(c.reward_scale)),
                            torch.from_numpy(ds.dones.astype(np.float32)))

    # ------------------------------------------------------------------ loss

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        c, net = self.config, self.network
        s, a, r, s2, done = batch
        if net.training and torch.is_grad_enabled():
            net.polyak(c.tau)  # after the previous optimiser step (see the module docstring)
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
        logs = {"td_loss": float(td.detach()), "cql_gap": float(gap.detach()), "alpha": float(alpha.detach()),
                "q_data": float(0.5 * (qa1 + qa2).mean().detach()), "q_mean": float(qs.mean()),
                "q_max": float(qs.max(dim=-1).values.mean()), "td_target": float(y1.mean())}
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

    def _act_episode(self, features: Any, open_: Any, close: Any, heads: Any, env_cfg: Any) -> Any:
        """Greedy actions along one episode of consecutive rows, from a flat account, stepping a
        one-env VecTradingEnv on ``open_``/``close`` (any common scale)."""
        import numpy as np

        from himari.plugin.api import Market, VecTradingEnv

        n = len(features)
        xf = np.nan_to_num(np.asarray(features, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        pre = [xf @ wf + b for wf, _, b, _ in heads]
        open_, close = np.asarray(open_, dtype=np.float64), np.asarray(close, dtype=np.float64)
        # one dummy bar at the end so the episode covers all n decisions without truncating
        market = Market(np.append(open_, close[-1]), np.append(close, close[-1]), np.zeros((n + 1, 1), np.float32))
        env = VecTradingEnv(market, n_envs=1, episode_length=n, mode=env_cfg.mode, fee=env_cfg.fee,
                            slippage=env_cfg.slippage, window=1, seed=0, random_start=False, warmup=0)
        obs, _ = env.reset()
        out = np.empty(n, dtype=np.int8)
        step_action = np.zeros(1, dtype=np.int8)
        for t in range(n):
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
            out[t] = a
            if t < n - 1:
                step_action[0] = a
                obs, *_ = env.step(step_action)
        return out

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("cql decides from the account state: use act_sequence(features, open, close, ranges, env)")

    def act_sequence(self, features: Any, open: Any, close: Any, ranges: Any, env: Any) -> Any:  # noqa: A002
        """Sequential greedy actions along each ``(a, b)`` range from a flat account, on the true
        prices. The last row of each range takes no decision: HOLD."""
        import numpy as np

        heads = self._numpy_heads()
        parts = []
        for a, b in ranges:
            if b <= a:
                continue
            acts = self._act_episode(np.asarray(features[a:b]), np.asarray(open[a:b]), np.asarray(close[a:b]),
                                     heads, env if env is not None else self.env)
            acts[-1] = 1
            parts.append(acts)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def build(config: CQLConfig, ctx: Any) -> CQL:
    return CQL(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="cql",
        summary="Conservative Q-Learning (discrete, double Q, Polyak targets) on env-reward transitions",
        config=CQLConfig,
        factory=build,
        paradigm="offline-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
    ))
