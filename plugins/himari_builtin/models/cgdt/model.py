"""CGDT, the model plugin instance: the trajectory windows, critic pre-training, the guided loss
with its pure pieces (tested alone), and acting with the target tuned on validation. torch is
imported lazily."""

from __future__ import annotations

from typing import Any

from himari_builtin.models.cgdt.config import N_ACTIONS, RTG_CLIP_QUANTILES, CGDTConfig
from himari_builtin.models.cgdt.decoding import rollout_targets


def expectile_loss(u: Any, tau: float) -> Any:
    """Asymmetric squared loss ``|tau - 1(u < 0)| * u^2`` (elementwise)."""
    import torch

    weight = torch.where(u < 0, 1.0 - tau, tau)
    return weight * u * u


def gaussian_nll(target: Any, mu: Any, log_sigma: Any) -> Any:
    """Gaussian negative log-likelihood without the constant (elementwise)."""
    import torch

    return 0.5 * ((target - mu) * torch.exp(-log_sigma)) ** 2 + log_sigma


def guidance_coefficient(step: int, config: CGDTConfig) -> float:
    """c after ``step`` policy optimiser steps: linear from 0 to ``guidance_weight`` (the value the
    loss uses, from ``guidance_coefficient_at``: one definition of the schedule)."""
    import torch

    return float(guidance_coefficient_at(torch.tensor(step, dtype=torch.int64), config))


def guidance_coefficient_at(steps: Any, config: CGDTConfig) -> Any:
    """c of the step counter ``steps`` (an int64 tensor), computed where the counter lives
    (float64, then float32): the loss never reads the counter on the host, so a step replayed as
    a CUDA graph sees its clock advance."""
    import torch

    w = float(config.guidance_weight)
    if config.guidance_warmup == 0:
        return torch.full((), w, dtype=torch.float32, device=steps.device)
    return (w * torch.clamp(steps.double() / config.guidance_warmup, max=1.0)).float()


class _Windows:
    """Windows of ``L`` steps by tensor indexing: ``(obs [B, L, F+4], actions [B, L], rtg [B, L],
    rows [B, L])``, ``rows`` the prepared row of each step."""

    def __init__(self, obs: Any, actions: Any, rtg: Any, starts: Any, length: int, rows: Any) -> None:
        import torch

        self.obs, self.actions, self.rtg, self.starts, self.rows = obs, actions, rtg, starts, rows
        self.offsets = torch.arange(length)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: Any) -> tuple[Any, Any, Any, Any]:
        k = self.starts[idx][:, None] + self.offsets
        return self.obs[k], self.actions[k], self.rtg[k], self.rows[k]


class CGDT:
    """The model plugin instance (see ``himari.plugin.api.Model`` for the lifecycle)."""

    paradigm = "offline-rl"
    cuda_graph_safe = True  # loss: no host reads; its guidance clock is a device buffer (train.cuda_graph)

    def __init__(self, config: CGDTConfig, ctx: Any) -> None:
        from himari_builtin.models.cgdt.network import build_network

        self.config = config
        self.env = ctx.env
        self.n_features = ctx.n_features
        self.network = build_network(config, ctx.n_features)
        self._train: _Windows | None = None
        self._seed = 0
        self._tune_ranges: list[tuple[int, int]] | None = None

    def init_roles(self) -> dict[str, str]:
        """For ``orthogonal-init``: the policy's action head and the critic's (mu, log_sigma)
        head; the critic is frozen during policy training but trained from its initialisation
        first, so it is named (a frozen layer nobody names is left alone). Embeddings and
        LayerNorms keep their own initialisation."""
        return {"policy.head": "policy", "critic": "hidden", "critic.head": "value"}

    # ------------------------------------------------------------------ data

    def dataset(self, ctx: Any, split: str) -> Any:
        """Trajectory windows of the run's ranges of the split (``ctx.splits[split]``, a fold's in a
        walk-forward evaluation; ``TrajectoryDataset``) with the run's features in the
        state; the train split also fits the return-to-go buffers, and the validation split's
        ranges are remembered as the ones the target is tuned on."""
        import numpy as np
        import torch

        from himari.plugin.api import TrajectoryDataset

        c = self.config
        train = split == "train"
        ds = TrajectoryDataset(ctx.data, split, context_length=c.context_length, gamma=c.gamma,
                               stride=c.stride if train else c.context_length, actions=c.behaviour,
                               epsilon=c.epsilon, fee=ctx.env.fee, slippage=ctx.env.slippage, mode=ctx.env.mode,
                               reward=ctx.env, features=ctx.features, seed=ctx.seed * 2 + (0 if train else 1),
                               benchmark_weight=c.benchmark_weight, ranges=ctx.splits[split])
        obs = np.nan_to_num(np.asarray(ds.observations, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        rtg = ds.returns_to_go.astype(np.float32) * np.float32(c.reward_scale)
        if train:
            self._fit_returns(rtg[ds.index])
            self._seed = int(ctx.seed)
        elif split == "validation":
            self._tune_ranges = [(int(a), int(b)) for a, b in ctx.splits["validation"]]
        windows = _Windows(torch.from_numpy(obs), torch.from_numpy(ds.actions.astype(np.int64)),
                           torch.from_numpy(rtg), torch.from_numpy(ds.window_starts.astype(np.int64)),
                           c.context_length, torch.from_numpy(ds.source_rows.astype(np.int64)))
        if train:
            self._train = windows
        return windows

    def _fit_returns(self, rtg: Any) -> None:
        """Return-to-go scale (std), clip range and target grid from the train transitions."""
        import numpy as np
        import torch

        net = self.network
        std = float(np.std(rtg)) if len(rtg) else 1.0
        with torch.no_grad():
            net.rtg_scale.fill_(std if np.isfinite(std) and std > 1e-8 else 1.0)
            net.rtg_bounds.copy_(torch.tensor(np.quantile(rtg, RTG_CLIP_QUANTILES), dtype=torch.float32))
            net.rtg_grid.copy_(torch.tensor(np.quantile(rtg, self.config.target_quantiles), dtype=torch.float32))
            net.target_rtg.fill_(float(net.rtg_grid[-1]))

    # ---------------------------------------------------------------- critic

    def before_training(self, ctx: Any) -> None:
        """Pre-train the critic before the first policy step, outside the loss: its phase
        toggles ``requires_grad`` and steps an optimiser of its own, which ``train.compile``
        cannot trace and ``train.cuda_graph`` must not record. A run resumed after the phase
        finds the flag set in its checkpoint and skips it."""
        if not self.network.critic_is_ready() and self._train is not None:
            self.train_critic(self._train, self.config.critic_steps, self._seed)

    def critic_loss(self, obs: Any, actions: Any, rtg: Any) -> Any:
        """Expectile-weighted Gaussian NLL of the normalised return-to-go at the data actions
        (weight ``2 |tau - 1(R < mu)|``: 1 everywhere at tau = 0.5)."""
        import torch

        net = self.network
        mu, log_sigma = net.critic(net.states(obs), actions)
        target = rtg.float() / net.rtg_scale
        tau = self.config.critic_expectile
        weight = 2.0 * torch.where(target < mu, 1.0 - tau, tau)
        return (weight.detach() * gaussian_nll(target, mu, log_sigma)).mean()

    def train_critic(self, windows: _Windows, steps: int, seed: int) -> float:
        """Pre-train the critic on the train windows with its own Adam (seeded batches), then
        freeze it; returns the mean NLL of the last 10% of the steps."""
        import numpy as np
        import torch

        from himari.plugin.api import phase

        c, net = self.config, self.network
        dev = net.rtg_scale.device
        critic = net.critic
        critic.requires_grad_(True)
        opt = torch.optim.Adam(critic.parameters(), lr=c.critic_lr)
        rng = np.random.default_rng([seed, 17])
        tail: list[float] = []
        try:
            with torch.enable_grad(), torch.autocast(dev.type, enabled=False), \
                    phase(f"cgdt: critic pre-training, {steps:,} steps", total=steps) as advance:
                for i in range(steps):
                    idx = torch.from_numpy(rng.integers(0, len(windows), size=min(c.critic_batch_size, len(windows))))
                    obs, actions, rtg = (x.to(dev) for x in windows[idx][:3])
                    loss = self.critic_loss(obs, actions, rtg)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
                    opt.step()
                    if i >= steps - max(1, steps // 10):
                        tail.append(float(loss.detach()))
                    advance()
        finally:
            critic.requires_grad_(False)
            for p in critic.parameters():
                p.grad = None
        nll = float(np.mean(tail)) if tail else float("nan")
        with torch.no_grad():
            net.critic_nll.fill_(nll)
        net.set_critic_ready()
        return nll

    # ------------------------------------------------------------------ loss

    def relaxed_actions(self, logits: Any) -> Any:
        """The predicted action as critic input weights ``[B, T, 3]`` (``action_relaxation``)."""
        import torch
        import torch.nn.functional as F

        if self.config.action_relaxation == "gumbel-st":
            return F.gumbel_softmax(logits.float(), tau=1.0, hard=True)
        return torch.softmax(logits.float(), dim=-1)

    def guidance(self, obs: Any, actions: Any, rtg: Any, logits: Any) -> tuple[Any, Any]:
        """Expectile loss of ``(R - mu) / sigma`` at the predicted actions (the critic's
        parameters are frozen; the gradient reaches the policy through the relaxed action)."""
        import torch

        net = self.network
        mu, log_sigma = net.critic(net.states(obs), actions, self.relaxed_actions(logits))
        u = (rtg.float() / net.rtg_scale - mu) * torch.exp(-log_sigma)
        return expectile_loss(u, self.config.guidance_expectile).mean(), mu

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        import torch
        import torch.nn.functional as F

        net = self.network
        training = net.training and torch.is_grad_enabled()
        if training:  # for callers without the Trainer, which runs it first; the flag is a host
            # copy (no GPU wait), set when a compiled loss is traced, so the phase is not in its graph
            self.before_training(ctx)
        obs, actions, rtg = batch[:3]
        actions = actions.long()
        logits = net.policy(rtg.float() / net.rtg_scale, net.states(obs.float()), actions)
        nll = F.cross_entropy(logits.float().reshape(-1, N_ACTIONS), actions.reshape(-1))
        guide, mu = self.guidance(obs.float(), actions, rtg, logits)
        c = guidance_coefficient_at(net.policy_steps, self.config)
        loss = (nll + c * guide) / (1.0 + c)
        if training:
            net.count_policy_step()
        with torch.no_grad():  # logs stay on the device: the Trainer copies a step's logs at once
            acc = (logits.argmax(-1) == actions).float().mean()
        return loss, {"action_nll": nll.detach(), "guidance": guide.detach(), "guidance_c": c,
                      "critic_mu": mu.detach().mean(), "critic_nll": net.critic_nll.detach().clone(),
                      "action_accuracy": acc}

    # ----------------------------------------------------------------- trunk

    def trunk_size(self) -> int:
        """Width of the policy's final hidden states (``d_model``)."""
        return int(self.config.d_model)

    def trunk(self, batch: Any) -> tuple[Any, Any]:
        """The policy's final (layer-normed) hidden state at every state token of the batch's
        windows, ``[B, L, d_model]``: what its action head reads; and the steps' prepared rows.
        The same forward as ``loss``, without its step counter or the critic."""
        import torch

        net = self.network
        obs, actions, rtg, rows = batch[0], batch[1].long(), batch[2], batch[3]
        pol = net.policy
        t = rtg.shape[1]
        tokens = pol.tokens(rtg.float() / net.rtg_scale, net.states(obs.float()), actions)[:, :-1]
        h, _ = pol.run(tokens, rows=torch.arange(1, 3 * t, 3, device=rtg.device))
        return pol.ln_f(h), rows

    # ------------------------------------------------------------------- act

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("cgdt decides from the account state and the realised rewards: use "
                          "act_sequence(features, open, close, ranges, env)")

    def _rollout(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any, targets: Any,
                 what: str, execution: Any = None, decisions: list[Any] | None = None) -> Any:
        """Actions ``[G, rows]`` of each target along every range (concatenated), under the
        ``execution`` rules when given, reported as the phase ``what`` (one unit per decision
        step). ``decisions``, when given, collects each range's ``[G, steps]`` own decisions, which
        then go uncounted (``rollout_targets``)."""
        import numpy as np

        from himari.plugin.api import phase

        steps = sum(max(b - a - 1, 0) for a, b in ranges)
        parts = []
        with phase(f"cgdt: {what}, {steps:,} steps", total=steps) as advance:
            for a, b in ranges:
                if b <= a:
                    continue
                raw = None if decisions is None else np.ones((len(targets), max(b - a - 1, 0)), dtype=np.int8)
                parts.append(rollout_targets(self.network, self.config, np.asarray(features[a:b]),
                                             np.asarray(open_[a:b]), np.asarray(close[a:b]), targets, env, advance,
                                             execution, raw))
                if decisions is not None:
                    decisions.append(raw)
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(targets), 0), dtype=np.int8)

    def _tune(self, all_actions: Any, open_: Any, close: Any, ranges: Any, env: Any) -> int:
        """Index of the best validation Sharpe after costs among the targets' actions."""
        import numpy as np

        from himari.plugin.api import evaluate_actions

        sharpe = [evaluate_actions(np.asarray(open_), np.asarray(close), ranges, acts, env)["sharpe"]
                  for acts in all_actions]
        sharpe = [s if np.isfinite(s) else -np.inf for s in sharpe]
        return int(np.argmax(sharpe))

    def act_sequence(self, features: Any, open: Any, close: Any, ranges: Any, env: Any,  # noqa: A002
                     execution: Any = None) -> Any:
        """Greedy actions along each range from a flat account, conditioned on the stored target
        return-to-go; on the validation ranges of this training session, first pick the target
        (package docstring) and store it. Under the ``execution`` rules when given: each
        target's env follows its executed actions, and the target is picked on those."""
        import torch

        env = env if env is not None else self.env
        ranges = [(int(a), int(b)) for a, b in ranges]
        net = self.network
        if self._tune_ranges is not None and ranges == self._tune_ranges:
            from himari.plugin.api import record_decisions

            grid = net.rtg_grid.detach().cpu().numpy()
            # under rules the filter counts decisions: keep the candidates' apart, count the kept one's
            decisions: list[Any] | None = [] if execution is not None else None
            all_actions = self._rollout(features, open, close, ranges, env, grid,
                                        f"choosing the target return-to-go on validation ({len(grid)} targets)",
                                        execution, decisions)
            best = self._tune(all_actions, open, close, ranges, env)
            for raw in decisions or []:
                record_decisions(raw[best])
            with torch.no_grad():
                net.target_rtg.fill_(float(grid[best]))
            return all_actions[best]
        return self._rollout(features, open, close, ranges, env, [float(net.target_rtg)], "acting", execution)[0]
