"""FlagTrader, the model plugin instance: rollouts with the optional warm start, the PPO loss and
sequential acting (torch is imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from himari.plugin.api import graph_recording, ppo_loss
from himari_builtin.models.flag_trader.config import ACCOUNT_COLUMNS, FlagTraderConfig


def _require_llm_packages() -> None:
    import importlib.util

    from himari.plugin.api import HimariError

    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise HimariError(f"flag-trader needs {' and '.join(missing)}: pip install transformers peft")


class FlagTrader:
    """The model plugin instance (``himari.plugin.api.Model``; online-RL hooks ``rollout`` and
    ``act_sequence``)."""

    paradigm = "online-rl"

    def __init__(self, config: FlagTraderConfig, ctx: Any) -> None:
        import torch

        from himari_builtin.models.flag_trader.network import FlagTraderNetwork

        _require_llm_packages()
        self.config = config
        self.obs_dim = ctx.n_features + ACCOUNT_COLUMNS
        self.network = FlagTraderNetwork(config, self.obs_dim, ctx.n_actions)
        counts = torch.tensor(ctx.class_counts, dtype=torch.float32).clamp(min=1.0)
        self.class_weight = counts.sum() / (len(counts) * counts)  # as baseline-mlp's class-weighted loss
        self._rollouts: Any = None
        self._graphed_policy: Any = None

    def init_roles(self) -> dict[str, str]:
        """For ``orthogonal-init``: the GPT-2 backbone is left alone (pretrained or not, as is
        LoRA's zero ``B``, so the adapted model starts equal to the backbone), LoRA's ``A``
        matrices are ``hidden``; the bar embedding is ``hidden``; the heads as ``head()`` builds
        them (a hidden layer, then the policy or value output)."""
        net = self.network
        roles = {"backbone": "skip"}
        roles.update({name: "hidden" for name, _ in net.backbone.named_modules(prefix="backbone")
                      if name.endswith(".lora_A")})
        for head, role in (("policy_head", "policy"), ("value_head", "value")):
            roles[head] = role
            if self.config.head_hidden:
                roles[f"{head}.0"] = "hidden"
        return roles

    def _device(self) -> Any:
        """The network's device, after setting the CPU thread count there (process-wide: the
        Trainer's update steps run with it too, as for ppo-lstm)."""
        import torch

        device = next(self.network.parameters()).device
        threads = self.config.cpu_threads
        if threads and device.type == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return device

    def dataset(self, ctx: Any, split: str) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("flag-trader learns online from VecTradingEnv rollouts (rollout()); it has no dataset")

    @property
    def observation_window(self) -> int:
        """Bars each observation spans: a training market must be longer than this (curriculum
        keeps its stage markets long enough)."""
        return int(self.config.context_length)

    def rollout(self, ctx: Any, reset: bool) -> Any:
        """``rollout_steps`` steps of each env with sampled actions over windows of
        ``context_length`` bars (``EnvRollout``; on the GPU end to end with ``--device cuda``),
        preceded at the run's first rollout by the warm start when configured."""
        from himari.plugin.api import EnvRollout

        net = self.network
        device = self._device()
        warm = {}
        if reset and int(ctx.epoch) == 0 and self.config.warm_start_epochs:
            warm = self.warm_start(ctx, device)
        if self._rollouts is None:
            self._rollouts = EnvRollout(self.config, self.obs_dim, window=self.config.context_length)
        was_training = net.training
        net.eval()
        try:
            buf = self._rollouts.collect(ctx, reset, self._rollout_policy(ctx, device), net.initial_state, device)
        finally:
            net.train(was_training)
        buf.stats.update(warm)
        return buf

    def _rollout_policy(self, ctx: Any, device: Any) -> Any:
        """The policy the rollout steps call: on CUDA (and ``rollout_cuda_graph``) a graph
        replay of ``network.policy`` at the rollout's batch (``GraphedPolicy``), else the network's
        own. Not when a training method views the observations (``ctx.rollout_observations``,
        the adversarial one differentiates through the policy). The graph reads the parameters
        where they are, so optimiser steps and in-place state loads need no re-capture; it is
        captured again if a parameter moves to new storage. It is captured at the first step,
        after the rollout has built its envs: a market too short for the context is then a
        ``DataError``, not a capture of a context-sized attention that may not fit."""
        from himari.plugin.api import cuda_available

        net = self.network
        if (device.type != "cuda" or not self.config.rollout_cuda_graph or not cuda_available()
                or getattr(ctx, "rollout_observations", None) is not None):
            return net.policy
        shape = (self.config.n_envs, self.config.context_length, self.obs_dim)

        def graphed_policy(*args: Any) -> Any:
            if self._graphed_policy is None or not self._graphed_policy.valid_for(shape):
                self._graphed_policy = GraphedPolicy(net, shape, device)
            return self._graphed_policy(*args)

        return graphed_policy

    def task_rollout(self, ctx: Any) -> Any:
        """One rollout like ``rollout``'s (no warm start), with the current weights, in fresh envs
        built from ``ctx.env_source`` and seeded by ``(ctx.seed, ctx.epoch)``; the training
        rollouts' envs are left as they are (meta-learning's task rollouts)."""
        from himari.plugin.api import EnvRollout

        net = self.network
        device = self._device()
        was_training = net.training
        net.eval()
        try:
            collector = EnvRollout(self.config, self.obs_dim, window=self.config.context_length)
            return collector.collect(ctx, True, net.policy, net.initial_state, device)
        finally:
            net.train(was_training)

    def warm_start(self, ctx: Any, device: Any) -> dict[str, float]:
        """Supervised warm start: ``warm_start_epochs`` passes of class-weighted cross-entropy
        of the train labels from flat-account windows (the labels are decisions taken from a flat
        account), with its own AdamW over the trainable parameters and an order seeded by
        ``ctx.seed``. Then the collapse guard: the warm-started policy's action shares on the
        validation windows (no labels read); one action above 90% is warned about. Written to
        ``RUN_DIR/warm_start.json``; returns the numbers logged with the first rollout."""
        import numpy as np
        import torch
        import torch.nn.functional as F

        from himari.plugin.api import DataError

        cfg, net = self.config, self.network
        labels = np.asarray(ctx.labels)
        ends = _window_ends(ctx.splits["train"], cfg.context_length)
        ends = ends[labels[ends] >= 0]
        if not len(ends):
            raise DataError(f"flag-trader warm start: no labelled train row has {cfg.context_length} bars before it")
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.warm_start_lr)
        gen = torch.Generator().manual_seed(int(ctx.seed))
        weight = self.class_weight.to(device)
        was_training = net.training
        net.train()
        history = []
        for epoch in range(cfg.warm_start_epochs):
            order = ends[torch.randperm(len(ends), generator=gen).numpy()]
            loss_sum, correct = 0.0, 0
            for s in range(0, len(order), cfg.warm_start_batch_size):
                rows = order[s:s + cfg.warm_start_batch_size]
                y = torch.from_numpy(labels[rows].astype(np.int64)).to(device)
                with net.inference_autocast(torch.device(device)):
                    logits, _ = net(_windows(ctx.features, rows, cfg.context_length).to(device))
                loss = F.cross_entropy(logits.float(), y, weight=weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                loss_sum += float(loss.detach()) * len(rows)
                correct += int((logits.argmax(-1) == y).sum())
            history.append({"epoch": epoch + 1, "loss": loss_sum / len(order), "accuracy": correct / len(order)})
        net.train(was_training)
        return self._warm_start_report(ctx, device, history)

    def _warm_start_report(self, ctx: Any, device: Any, history: list[dict[str, float]]) -> dict[str, float]:
        """The collapse guard on the validation windows, the report file and the logged stats."""
        import warnings

        from himari.plugin.api import collapse

        shares = self._action_shares(ctx.features, _window_ends(ctx.splits["validation"], self.config.context_length),
                                     device)
        guard = collapse(shares)
        if ctx.run_dir is not None and getattr(ctx, "rank", 0) == 0:  # one writer in a data-parallel run
            Path(ctx.run_dir, "warm_start.json").write_text(
                json.dumps({"epochs": history, "validation_actions": shares, **guard}, indent=2), encoding="utf-8")
        if guard["collapsed"]:
            warnings.warn(f"flag-trader warm start: {guard['dominant_action']} takes "
                          f"{100 * guard['dominant_share']:.1f}% of validation decisions (> 90%); PPO starts "
                          f"from a collapsed policy", stacklevel=2)
        last = history[-1]
        return {"warm_start_loss": last["loss"], "warm_start_accuracy": last["accuracy"],
                **{f"warm_start_{k.lower()}": v for k, v in shares.items()},
                "warm_start_collapsed": float(guard["collapsed"])}

    def _action_shares(self, features: Any, ends: Any, device: Any) -> dict[str, float]:
        """Shares of the arg-max actions at flat-account windows ending at ``ends``."""
        import numpy as np
        import torch

        counts = np.zeros(3, dtype=np.int64)
        net, bs = self.network, self.config.warm_start_batch_size
        net.eval()
        with torch.no_grad():
            for s in range(0, len(ends), bs):
                logits, _, _ = net.policy(_windows(features, ends[s:s + bs], self.config.context_length).to(device),
                                          None, ())
                counts += np.bincount(logits.argmax(-1).cpu().numpy(), minlength=3)
        total = max(int(counts.sum()), 1)
        return {name: float(c) / total for name, c in zip(("SELL", "HOLD", "BUY"), counts)}

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        """PPO loss of a minibatch of whole env sequences, flattened to independent windows."""
        obs = batch["obs"]
        n = obs.shape[0] * obs.shape[1]
        logits, values = self.network(obs.reshape(n, *obs.shape[2:]))
        flat = {k: batch[k].reshape(n) for k in ("actions", "logprobs", "values", "advantages", "returns")}
        return ppo_loss(logits, values, flat, self.config)

    def trunk_size(self) -> int:
        """The backbone's width (its newest-bar hidden state feeds both heads)."""
        return int(self.network.embed.out_features)

    def trunk(self, batch: Any) -> tuple[Any, Any]:
        """The backbone's newest-bar hidden state of every window of a minibatch ``[T, B, width]``
        (what the policy and value heads read), and each window's prepared row."""
        obs = batch["obs"]
        n = obs.shape[0] * obs.shape[1]
        h = self.network.hidden(obs.reshape(n, *obs.shape[2:]))
        return h.reshape(obs.shape[0], obs.shape[1], -1), batch["rows"]

    def trunk_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any) -> Any:
        """The newest-bar hidden state at each row as the policy acts (arg-max) through ``ranges``."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_trunk

        net = self.network
        device = self._device()

        def step(obs: np.ndarray, starts: np.ndarray) -> Any:
            x = torch.from_numpy(np.array(obs, dtype=np.float32)).to(device)
            with net.inference_autocast(device):
                h = net.hidden(x)
                logits = net.policy_head(h)
            return logits.argmax(-1).cpu().numpy(), h.float()

        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return sequential_trunk(step, features, open_, close, ranges, env, window=self.config.context_length)
        finally:
            net.train(was_training)

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("flag-trader decides from the account state in its window: use "
                          "act_sequence(features, open, close, ranges, env)")

    def act_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any, execution: Any = None) -> Any:
        """Deterministic (arg-max) actions through each range from a flat account, each decision
        from the last ``context_length`` bars (``sequential_actions`` with that window), under the
        ``execution`` rules when given (the confidence threshold reads the softmax of the
        policy's logits)."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_actions

        net = self.network
        device = self._device()
        graphed: dict[str, Any] = {}
        probabilities = execution is not None and execution.confidence > 0

        def decide(logits: Any) -> Any:
            if probabilities:
                return logits.argmax(-1).cpu().numpy(), torch.softmax(logits.float(), -1).cpu().numpy()
            return logits.argmax(-1).cpu().numpy()

        def step(obs: np.ndarray, starts: np.ndarray) -> Any:
            # a copy: the env's observation is a read-only view (torch warns on those)
            x = torch.from_numpy(np.array(obs, dtype=np.float32)).to(device, non_blocking=True)
            if device.type == "cuda" and self.config.rollout_cuda_graph:
                if "run" not in graphed:
                    graphed["run"] = GraphedPolicy(net, tuple(x.shape), device)
                return decide(graphed["run"](x, None, ())[0])
            logits, _, _ = net.policy(x, None, ())
            return decide(logits)

        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return sequential_actions(step, features, open_, close, ranges, env,
                                          window=self.config.context_length, execution=execution)
        finally:
            net.train(was_training)


class GraphedPolicy:
    """``network.policy`` at one batch shape captured in a CUDA graph: ``(obs, starts, state) ->
    (logits, value, state)`` like the policy, for the rollout's steps and the sequential
    evaluation's batch-1 decisions.

    A policy call of the full model is about 600 small kernels: launched one by one from Python
    it is launch-bound (the GPU idles between them): a batch-1 decision, 0.1 ms of GPU work, took
    24 ms on an H100, which made evaluating a 30k-bar split take 12 minutes, and a rollout of 128
    steps cost seconds. The replay launches the same kernels at once. Calls at another batch shape
    (the truncated episodes' final observations) run the network eagerly. Outputs are copies: the
    graph's own output tensors are overwritten by the next replay."""

    def __init__(self, net: Any, shape: tuple[int, ...], device: Any) -> None:
        import torch

        self.net, self.shape = net, tuple(shape)
        self._storage = _parameter_storage(net)
        self._in = torch.zeros(self.shape, device=device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # warm-up outside the capture (cuBLAS handles, autotuning)
                net.policy(self._in, None, ())
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with (graph_recording("flag-trader: recording the policy as a CUDA graph",
                              "set flag-trader.rollout_cuda_graph=false to run it eagerly"),
              torch.cuda.graph(self._graph), torch.no_grad()):
            self._logits, self._value, _ = net.policy(self._in, None, ())

    def valid_for(self, shape: tuple[int, ...]) -> bool:
        """Captured at ``shape`` and every parameter still at the storage the graph reads."""
        return tuple(shape) == self.shape and _parameter_storage(self.net) == self._storage

    def __call__(self, obs: Any, starts: Any, state: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
        if tuple(obs.shape) != self.shape:
            return self.net.policy(obs, starts, state)
        self._in.copy_(obs)
        self._graph.replay()
        return self._logits.clone(), self._value.clone(), state


def _parameter_storage(net: Any) -> tuple[tuple[int, Any], ...]:
    """Each parameter's data address and device (what a captured graph reads)."""
    return tuple((p.data_ptr(), p.device) for p in net.parameters())


def _window_ends(ranges: Any, window: int) -> Any:
    """Rows of ``ranges`` with ``window - 1`` rows before them in the data (windows may reach
    back before a range's start: earlier rows are the past)."""
    from himari.plugin.api import rows_of

    rows = rows_of(ranges)
    return rows[rows >= window - 1]


def _windows(features: Any, ends: Any, window: int) -> Any:
    """Flat-account observation windows ``[B, W, F + 4]`` ending at rows ``ends`` (account
    columns zero: no position, no PnL, no drawdown, as at an episode start)."""
    import numpy as np
    import torch

    idx = np.asarray(ends)[:, None] + np.arange(1 - window, 1)
    f = np.asarray(features)[idx]
    out = np.zeros((*f.shape[:2], f.shape[2] + ACCOUNT_COLUMNS), dtype=np.float32)
    out[..., :f.shape[2]] = f
    return torch.from_numpy(out)
