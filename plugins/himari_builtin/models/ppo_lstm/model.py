"""PPOLSTM, the model plugin instance: rollouts, the PPO loss and sequential acting (torch is
imported lazily)."""

from __future__ import annotations

from typing import Any

from himari.plugin.api import ppo_loss
from himari_builtin.models.ppo_lstm.config import ACCOUNT_COLUMNS, PPOLSTMConfig


class PPOLSTM:
    """The model plugin instance (see ``himari.plugin.api.Model``; online-RL hooks ``rollout``
    and ``act_sequence``)."""

    paradigm = "online-rl"

    def __init__(self, config: PPOLSTMConfig, ctx: Any) -> None:
        from himari_builtin.models.ppo_lstm.network import ActorCritic

        self.config = config
        self.n_actions = ctx.n_actions
        self.obs_dim = ctx.n_features + ACCOUNT_COLUMNS
        self._threads("cpu")  # the network is built on the CPU (orthogonal init runs QR)
        self.network = ActorCritic(self.obs_dim, ctx.n_actions, tuple(config.encoder_sizes), config.lstm_hidden)
        self._rollouts: Any = None

    def init_roles(self) -> dict[str, str]:
        """For ``orthogonal-init``: the actor and critic heads; the encoder and the LSTM are
        ``hidden`` (the LSTM with the recurrent gain), as the network's own initialisation."""
        return {"actor": "policy", "critic": "value"}

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

    def task_rollout(self, ctx: Any) -> Any:
        """One rollout like ``rollout``'s, with the current weights, in fresh envs built from
        ``ctx.env_source`` and seeded by ``(ctx.seed, ctx.epoch)``, from a zero LSTM state; the
        training rollouts' envs and state are left as they are (meta-learning's task rollouts)."""
        from himari.plugin.api import EnvRollout

        net = self.network
        device = next(net.parameters()).device
        self._threads(device)
        was_training = net.training
        net.eval()
        try:
            return EnvRollout(self.config, self.obs_dim).collect(ctx, True, net.step, net.initial_state, device)
        finally:
            net.train(was_training)

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        """PPO loss (``himari.training.ppo.ppo_loss``) of a minibatch of whole env sequences
        (``RolloutBuffer`` items), the LSTM run over each sequence from its saved start state."""
        logits, values, _ = self.network.forward_sequence(batch["obs"], batch["starts"], batch["state"])
        return ppo_loss(logits, values, batch, self.config)

    def trunk_size(self) -> int:
        """The LSTM's width (its output feeds the actor and the critic)."""
        return int(self.config.lstm_hidden)

    def trunk(self, batch: Any) -> tuple[Any, Any]:
        """The LSTM's output at every step of a minibatch of env sequences ``[T, B, H]`` (the
        representation the actor and critic read), and each step's prepared row."""
        out, _ = self.network.core_sequence(batch["obs"], batch["starts"], batch["state"])
        return out, batch["rows"]

    def trunk_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any) -> Any:
        """The LSTM's output at each row as the policy acts (arg-max) through ``ranges``."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_trunk

        net = self.network
        device = next(net.parameters()).device
        holder: dict[str, Any] = {}
        self._threads(device)

        def step(obs: np.ndarray, starts: np.ndarray) -> Any:
            if "state" not in holder:
                holder["state"] = net.initial_state(len(obs), device)
            x = torch.tensor(obs, device=device)
            s = torch.from_numpy(starts.astype(np.float32)).to(device) if starts.any() else None
            logits, _, holder["state"] = net.step(x, s, holder["state"])
            return logits.argmax(-1).cpu().numpy(), holder["state"][0][0]

        with torch.no_grad():
            return sequential_trunk(step, features, open_, close, ranges, env)

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("ppo-lstm decides from the account state and its LSTM state: use "
                          "act_sequence(features, open, close, ranges, env)")

    def step_logits(self, obs: Any, starts: Any, state: Any) -> tuple[Any, Any]:
        """One step of the policy as ``act_sequence`` takes it: the action logits ``[n, A]`` on
        ``obs`` (a float tensor ``[n, D]`` on the network's device, differentiable: attacks take
        its gradient) from the LSTM ``state`` (None: a fresh zero state), the state zeroed first
        where ``starts`` (bool ``[n]``) marks an episode start; and the state after the step."""
        import numpy as np
        import torch

        net = self.network
        if state is None:
            state = net.initial_state(obs.shape[0], obs.device)
        s = np.asarray(starts, dtype=bool)
        s = torch.from_numpy(s.astype(np.float32)).to(obs.device) if s.any() else None
        logits, _, state = net.step(obs, s, state)
        return logits, state

    def act_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any, execution: Any = None) -> Any:
        """Deterministic (arg-max) actions through each range from a flat account and a zero
        LSTM state (``himari.training.rl.sequential_actions``), under the ``execution`` rules
        when given (the confidence threshold reads the softmax of the policy's logits)."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_actions

        probabilities = execution is not None and execution.confidence > 0

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
            if probabilities:
                return logits.argmax(-1).cpu().numpy(), torch.softmax(logits.float(), -1).cpu().numpy()
            return logits.argmax(-1).cpu().numpy()

        with torch.no_grad():
            return sequential_actions(step, features, open_, close, ranges, env, execution=execution)
