"""PPO-LSTM: an actor-critic with an LSTM core, trained online by PPO in the native
``VecTradingEnv`` (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"; the recurrent
variant of CleanRL's ``ppo_atari_lstm``).

Network (289,636 parameters at 60 features): the env observation (60 features + the 4 account
columns: position, unrealised PnL, drawdown, log bars in position) -> Linear(64, 128) + ReLU ->
Linear(128, 128) + ReLU -> LSTM(128, 200) -> a policy head Linear(200, 3) and a value head
Linear(200, 1). Orthogonal initialisation: gain sqrt(2) for the hidden layers, 0.01 for the
policy head, 1 for the value head; LSTM weights orthogonal, biases 0.

Training (``himari.training.rl`` has the reusable parts): N envs on random windows of the train
split roll out ``rollout_steps`` steps with sampled actions, each env carrying its own LSTM state,
zeroed where an episode starts; GAE(gamma, lambda) advantages; then ``update_epochs`` passes of
``n_minibatches`` minibatches of whole env sequences through the clipped surrogate objective,
clipped value loss, entropy bonus and per-minibatch advantage normalisation, with the Trainer's
gradient-norm clipping and a linearly annealed learning rate. A minibatch's sequences go through
the LSTM in one call per segment between episode starts (an exact equivalent of the per-step loop,
tested), not step by step.

Evaluation: deterministic (arg-max) actions, decided sequentially through each split range by a
1-env ``VecTradingEnv`` from a flat account (``act_sequence``), then scored by the backtester.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from himari.plugin.api import ModelSpec, ParamCount, hookimpl
from himari.plugin.api import PPOConfig, ppo_loss

ACCOUNT_COLUMNS = 4


@dataclass(frozen=True)
class PPOLSTMConfig(PPOConfig):
    encoder_sizes: tuple[int, ...] = (128, 128)
    """Width of each encoder layer (Linear + ReLU) before the LSTM."""
    lstm_hidden: int = 200
    """LSTM hidden size."""
    cpu_threads: int = 1
    """torch intra-op threads on the CPU from the model's construction on (0: torch's default);
    small recurrent batches run fastest on one, and far faster than on two busy cores."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.encoder_sizes or any(h < 1 for h in self.encoder_sizes) or self.lstm_hidden < 1:
            raise ValueError("encoder_sizes and lstm_hidden must be positive")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")


def parameter_count(config: PPOLSTMConfig, n_features: int) -> ParamCount:
    """Encoder Linears, the LSTM (4 gates: input and hidden weights, two biases), two heads."""
    total, width = 0, n_features + ACCOUNT_COLUMNS
    for h in config.encoder_sizes:
        total += width * h + h
        width = h
    H = config.lstm_hidden
    total += 4 * H * (width + H) + 8 * H
    total += H * 3 + 3 + H + 1
    return ParamCount(total, total)


@lru_cache(maxsize=1)
def _network_class() -> type:
    import math

    import torch
    from torch import nn

    class ActorCritic(nn.Module):
        def __init__(self, obs_dim: int, n_actions: int, encoder_sizes: tuple[int, ...], hidden: int) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            width = obs_dim
            for h in encoder_sizes:
                lin = nn.Linear(width, h)
                nn.init.orthogonal_(lin.weight, math.sqrt(2))
                nn.init.zeros_(lin.bias)
                layers += [lin, nn.ReLU()]
                width = h
            self.encoder = nn.Sequential(*layers)
            self.lstm = nn.LSTM(width, hidden)
            for name, p in self.lstm.named_parameters():
                if "bias" in name:
                    nn.init.zeros_(p)
                else:
                    nn.init.orthogonal_(p, 1.0)
            self.actor = nn.Linear(hidden, n_actions)
            nn.init.orthogonal_(self.actor.weight, 0.01)
            nn.init.zeros_(self.actor.bias)
            self.critic = nn.Linear(hidden, 1)
            nn.init.orthogonal_(self.critic.weight, 1.0)
            nn.init.zeros_(self.critic.bias)
            self.hidden = hidden

        def initial_state(self, n: int, device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.zeros(1, n, self.hidden, device=device)
            return z, z.clone()

        def forward_sequence(self, obs: torch.Tensor, starts: torch.Tensor,
                             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
            """``obs [T, B, D]``, ``starts [T, B]`` (1 where an episode begins: the state is
            zeroed before that step), ``state`` ``(h, c)`` each ``[1, B, H]``. The LSTM runs once
            per segment between the steps where some env starts an episode."""
            T, B = obs.shape[0], obs.shape[1]
            x = self.encoder(obs.reshape(T * B, -1)).reshape(T, B, -1)
            h, c = state
            reset = (starts > 0).any(dim=1)
            cuts = sorted({0, T, *[int(t) + 1 for t in torch.nonzero(reset[1:]).flatten().tolist()]})
            outs = []
            for t0, t1 in zip(cuts[:-1], cuts[1:]):
                if bool(reset[t0]):
                    keep = (1.0 - starts[t0].to(h.dtype)).view(1, B, 1)
                    h, c = h * keep, c * keep
                out, (h, c) = self.lstm(x[t0:t1], (h, c))
                outs.append(out)
            out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
            return self.actor(out), self.critic(out)[..., 0], (h, c)

        def step(self, obs: torch.Tensor, starts: torch.Tensor | None,
                 state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
            """One step of every env (``obs [B, D]``; ``starts [B]`` or None when no env starts an
            episode): the LSTM cell with the same weights, without ``nn.LSTM``'s per-call overhead
            (rollouts and evaluation; training goes through ``forward_sequence``)."""
            h, c = state[0][0], state[1][0]
            if starts is not None:
                keep = (1.0 - starts.to(h.dtype))[:, None]
                h, c = h * keep, c * keep
            lstm = self.lstm
            h, c = torch.lstm_cell(self.encoder(obs), (h, c), lstm.weight_ih_l0, lstm.weight_hh_l0,
                                   lstm.bias_ih_l0, lstm.bias_hh_l0)
            return self.actor(h), self.critic(h)[:, 0], (h[None], c[None])

    return ActorCritic


class PPOLSTM:
    """The model plugin instance (see ``himari.plugin.api.Model``; online-RL hooks ``rollout``
    and ``act_sequence``)."""

    paradigm = "online-rl"

    def __init__(self, config: PPOLSTMConfig, ctx: Any) -> None:
        self.config = config
        self.n_actions = ctx.n_actions
        self.obs_dim = ctx.n_features + ACCOUNT_COLUMNS
        self._threads("cpu")  # the network is built on the CPU (orthogonal init runs QR)
        self.network = _network_class()(self.obs_dim, ctx.n_actions, tuple(config.encoder_sizes), config.lstm_hidden)
        self._rollouts: Any = None

    def _threads(self, device: Any) -> None:
        import torch  # set process-wide: the Trainer's update steps run with it too

        if self.config.cpu_threads and str(device) == "cpu" and torch.get_num_threads() != self.config.cpu_threads:
            torch.set_num_threads(self.config.cpu_threads)

    def dataset(self, ctx: Any, split: str) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("ppo-lstm learns online from VecTradingEnv rollouts (rollout()); it has no dataset")

    def rollout(self, ctx: Any, reset: bool) -> Any:
        """Collect ``rollout_steps`` steps of each env with sampled actions
        (``himari.training.rollout.EnvRollout``: on the GPU end to end with ``--device cuda``);
        returns the ``RolloutBuffer`` with GAE advantages and episode statistics in ``stats``."""
        from himari.plugin.api import EnvRollout

        net = self.network
        device = next(net.parameters()).device
        self._threads(device)
        if self._rollouts is None:
            self._rollouts = EnvRollout(self.config, self.obs_dim)
        was_training = net.training
        net.eval()
        try:
            return self._rollouts.collect(ctx, reset, net.step, net.initial_state, device)
        finally:
            net.train(was_training)

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, float]]:
        """PPO loss (``himari.training.ppo.ppo_loss``) of a minibatch of whole env sequences
        (``RolloutBuffer`` items), the LSTM run over each sequence from its saved start state."""
        logits, values, _ = self.network.forward_sequence(batch["obs"], batch["starts"], batch["state"])
        return ppo_loss(logits, values, batch, self.config)

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("ppo-lstm decides from the account state and its LSTM state: use "
                          "act_sequence(features, open, close, ranges, env)")

    def act_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any) -> Any:
        """Deterministic (arg-max) actions through each range from a flat account and a zero
        LSTM state (``himari.training.rl.sequential_actions``)."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_actions

        net = self.network
        device = next(net.parameters()).device
        holder: dict[str, Any] = {}
        self._threads(device)

        def step(obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
            if "state" not in holder:
                holder["state"] = net.initial_state(len(obs), device)
            x = torch.tensor(obs, device=device)
            s = torch.from_numpy(starts.astype(np.float32)).to(device) if starts.any() else None
            logits, _, holder["state"] = net.step(x, s, holder["state"])
            return logits.argmax(-1).cpu().numpy()

        with torch.no_grad():
            return sequential_actions(step, features, open_, close, ranges, env)


def build(config: PPOLSTMConfig, ctx: Any) -> PPOLSTM:
    return PPOLSTM(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="ppo-lstm",
        summary="PPO actor-critic with an LSTM core, trained online in the native VecTradingEnv",
        config=PPOLSTMConfig,
        factory=build,
        paradigm="online-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
    ))
