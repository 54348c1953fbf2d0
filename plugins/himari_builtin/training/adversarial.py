"""adversarial: train on inputs perturbed inside an L-infinity ball of radius ``epsilon``
(in the preprocessed feature space, i.e. standard deviations after ``zscore``) by FGSM
(Goodfellow et al. 2015) or k-step PGD with a random start (Madry et al. 2018), mixed with
clean rows: in each training batch the first ``ratio`` of the rows (the batch order is already
a seeded shuffle) are replaced by their adversarial versions (Kurakin et al. 2017's mixed
batches; ``ratio = 1`` is Madry's pure adversarial training).

Uses the ``model_built`` hook (to keep the model) and the ``dataset`` hook: the train split's
dataset is wrapped so each batch it hands out carries the perturbation, computed against the
model's own loss (``model.loss``) with the network in eval mode (dropout off, batch-norm
running statistics used and left alone, no training side effect of the loss runs: the same
choice as TRADES, Zhang et al. 2019) and gradients taken only with respect to the input.
The validation split (and every evaluation, which reads the run's features) is never perturbed.

Which tensor moves: the first item of a training batch is the model's input (baseline-mlp's
rows ``[B, F]``, cql's states ``[B, F + 4]``, cgdt's state windows ``[B, L, F + 4]``); only the
first ``F`` columns of its last axis (the market features, ``ctx.model.n_features``) move. The
columns after them are the env's account state (position, unrealised PnL, drawdown, time in
position): the agent's own state, never perturbed.

Online-RL models (ppo-lstm, flag-trader): the ``on_rollout`` hook perturbs the PPO updates'
observations. After each rollout, the observations of the first ``round(ratio * n_envs)`` envs
of the ``RolloutBuffer`` (envs are independent random windows, so this is a random share; each
update minibatch is a random set of envs, so it mixes clean and perturbed sequences) are replaced
by their adversarial versions: FGSM or PGD on those envs' whole sequences at once, maximising the
model's own loss on them (``model.loss``: for ppo-lstm the PPO loss, clipped surrogate + value
loss - entropy bonus, the LSTM run over each sequence from its saved start state), in the
network's eval mode, against the policy that collected the rollout. Only the market-feature
columns move (the first ``F`` of the observation's last axis); the account columns after them
never do. The update passes then train on the buffer as it is: the PPO ratio compares the
policy on the perturbed observation with the behaviour policy's probability on the clean one, so
a policy whose action changes under the perturbation is pushed back towards the action it took.
The rollouts themselves are collected on clean observations. PGD's random starts come from a
generator seeded by (run seed, epoch, rollout of the epoch), so a resumed run (which redoes its
interrupted epoch) perturbs exactly as the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl


@dataclass(frozen=True)
class AdversarialConfig:
    attack: str = "pgd"
    """fgsm (one step of epsilon) or pgd (steps signed-gradient steps from a random start)."""
    epsilon: float = 0.05
    """Radius of the L-infinity ball, in preprocessed units (z-score standard deviations)."""
    steps: int = 3
    """PGD steps (each one forward and backward pass); ignored by fgsm."""
    step_size: float = 0.0
    """PGD step; 0 means 2.5 * epsilon / steps (Madry et al.)."""
    ratio: float = 0.5
    """Share of each training batch replaced by adversarial rows (1: adversarial only)."""
    random_start: bool = True
    """PGD starts from a uniform random point of the ball (Madry et al.) instead of the clean input."""
    rollouts: bool = False
    """Online RL: the policy acts on perturbed observations during rollouts (the first ratio of
    the envs, attacked at every step against the action it would take on the clean one), and the
    updates train on what it saw; false: rollouts are clean and only the updates' observations
    are perturbed (against the PPO loss)."""

    def __post_init__(self) -> None:
        if self.attack not in ("fgsm", "pgd"):
            raise ValueError(f"attack must be fgsm or pgd, got {self.attack!r}")
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise ValueError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not (math.isfinite(self.step_size) and self.step_size >= 0):
            raise ValueError(f"step_size must be a finite number >= 0, got {self.step_size}")
        if not (math.isfinite(self.ratio) and 0 <= self.ratio <= 1):
            raise ValueError(f"ratio must be in [0, 1], got {self.ratio}")


def perturb_batch(model: Any, batch: Any, ctx: Any, config: AdversarialConfig) -> Any:
    """``batch`` with its first ``round(ratio * B)`` rows' market features replaced by their
    adversarial versions (on the model's device); the other items and the account columns are
    unchanged."""
    import torch

    from himari.plugin.api import ConfigError, linf_attack

    if not isinstance(batch, (tuple, list)) or not batch or not torch.is_tensor(batch[0]) \
            or not batch[0].is_floating_point() or batch[0].dim() < 2:
        raise ConfigError("adversarial: the model's training batches must start with a float tensor of inputs "
                          "[batch, ..., features]")
    n_features = ctx.model.n_features
    x = batch[0]
    if x.shape[-1] < n_features:
        raise ConfigError(f"adversarial: the model's inputs have {x.shape[-1]} columns, fewer than its "
                          f"{n_features} features")
    size = int(x.shape[0])
    n_adv = round(config.ratio * size)
    if n_adv == 0 or config.epsilon == 0:
        return batch
    net = model.network
    device = next(net.parameters()).device
    batch = type(batch)(t.to(device) if torch.is_tensor(t) else t for t in batch)
    part = type(batch)(t[:n_adv] if torch.is_tensor(t) and t.dim() and t.shape[0] == size else t for t in batch)
    mask = torch.zeros(x.shape[-1], dtype=torch.bool)
    mask[:n_features] = True

    def loss_fn(x_adv: Any) -> Any:
        return model.loss(type(part)((x_adv, *part[1:])), ctx)[0]

    was_training = net.training
    net.eval()
    try:
        x_adv = linf_attack(loss_fn, part[0].float(), config.epsilon, attack=config.attack, steps=config.steps,
                            step_size=config.step_size or None, random_start=config.random_start, mask=mask)
    finally:
        net.train(was_training)
    x_new = torch.cat([x_adv.to(batch[0].dtype), batch[0][n_adv:]])
    return type(batch)((x_new, *batch[1:]))


def perturb_rollout(model: Any, buf: Any, ctx: Any, config: AdversarialConfig, count: int) -> None:
    """In place: ``buf.obs[:, :k]`` (``[T, N, ..., D]``, ``k = round(ratio * N)``) moved inside
    the epsilon box on its first ``ctx.model.n_features`` columns to raise ``model.loss`` on
    those envs' sequences (``buf[arange(k)]``); ``count`` (the rollout's number in the epoch)
    seeds PGD's random start with the run seed and the epoch."""
    import torch

    from himari.plugin.api import ConfigError, linf_attack

    obs = getattr(buf, "obs", None)
    if not torch.is_tensor(obs) or not obs.is_floating_point() or obs.dim() < 3:
        raise ConfigError("adversarial: the model's rollouts must hold float observations obs [steps, envs, ..., "
                          "columns] (a RolloutBuffer)")
    n_features = ctx.model.n_features
    if obs.shape[-1] < n_features:
        raise ConfigError(f"adversarial: the model's observations have {obs.shape[-1]} columns, fewer than its "
                          f"{n_features} features")
    k = round(config.ratio * int(obs.shape[1]))
    if k == 0 or config.epsilon == 0:
        return
    net = model.network
    device = next(net.parameters()).device
    part = {n: (v.to(device) if torch.is_tensor(v) else tuple(t.to(device) for t in v) if isinstance(v, tuple) else v)
            for n, v in buf[torch.arange(k)].items()}
    mask = torch.zeros(obs.shape[-1], dtype=torch.bool)
    mask[:n_features] = True
    generator = torch.Generator(device=device).manual_seed(
        (int(ctx.seed) * 1_000_003 + int(ctx.epoch) * 10_007 + int(count)) % (2 ** 63))

    def loss_fn(x_adv: Any) -> Any:
        return model.loss({**part, "obs": x_adv}, ctx)[0]

    was_training = net.training
    net.eval()
    try:
        x_adv = linf_attack(loss_fn, part["obs"].float(), config.epsilon, attack=config.attack, steps=config.steps,
                            step_size=config.step_size or None, random_start=config.random_start, mask=mask,
                            generator=generator)
    finally:
        net.train(was_training)
    buf.obs[:, :k] = x_adv.to(device=obs.device, dtype=obs.dtype)


def perturb_step(obs: Any, starts: Any, state: Any, policy: Any, n_features: int, config: AdversarialConfig,
                 generator: Any) -> Any:
    """``obs [N, ..., D]`` with its first ``k = round(ratio * N)`` envs' first ``n_features``
    columns moved inside the epsilon box to maximise the cross-entropy of
    ``policy(obs, starts, state)``'s logits against its arg-max on the clean ``obs`` (a new
    tensor; the recurrent ``state``, a tuple with the env axis at dim 1, and ``starts`` are cut
    to those envs)."""
    import torch
    import torch.nn.functional as F

    from himari.plugin.api import linf_attack

    n = int(obs.shape[0])
    k = round(config.ratio * n)
    if k == 0 or config.epsilon == 0:
        return obs

    def cut(v: Any, axis: int) -> Any:
        if torch.is_tensor(v) and v.dim() > axis and v.shape[axis] == n:
            return v.narrow(axis, 0, k)
        if isinstance(v, tuple):
            return tuple(cut(u, axis) for u in v)
        return v

    x, s, st = obs[:k].float(), cut(starts, 0), cut(state, 1)
    with torch.no_grad():
        target = policy(x, s, st)[0].argmax(-1)

    def loss_fn(z: Any) -> Any:
        return F.cross_entropy(policy(z, s, st)[0].float(), target, reduction="sum")

    mask = torch.zeros(obs.shape[-1], dtype=torch.bool)
    mask[:n_features] = True
    x_adv = linf_attack(loss_fn, x, config.epsilon, attack=config.attack, steps=config.steps,
                        step_size=config.step_size or None, random_start=config.random_start, mask=mask,
                        generator=generator)
    out = obs.clone()
    out[:k] = x_adv.to(obs.dtype)
    return out


class _Adversarial:
    """The train dataset whose batches carry adversarial rows (``perturb_batch``)."""

    def __init__(self, inner: Any, method: Adversarial, ctx: Any) -> None:
        self.inner, self.method, self.ctx = inner, method, ctx

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # rows(), permutation() ... of the wrapped dataset
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __getitem__(self, idx: Any) -> Any:
        return perturb_batch(self.method.model, self.inner[idx], self.ctx, self.method.config)


class Adversarial:
    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config
        self.model: Any = None
        self.rollouts = 0
        """Rollouts perturbed in this epoch (seeds PGD's start; reset at each epoch start)."""

    def model_built(self, model: Any, ctx: Any) -> None:
        self.model = model

    def epoch_start(self, epoch: int, ctx: Any) -> None:
        self.rollouts = 0
        self._generator_epoch = None  # a resumed run redoes its epoch: the rollout attack restarts its seed

    def on_rollout(self, buf: Any, ctx: Any) -> None:
        """Replace the first ``round(ratio * n_envs)`` envs' observations of the rollout with
        their adversarial versions (``perturb_rollout``); with ``rollouts`` the rollout already
        holds the perturbed observations its policy acted on."""
        count = getattr(self, "rollouts", 0)
        self.rollouts = count + 1
        if not self.config.rollouts:
            perturb_rollout(self.model, buf, ctx, self.config, count)

    def rollout_observations(self, obs: Any, starts: Any, state: Any, policy: Any, ctx: Any) -> Any:
        """With ``rollouts``: the first ``round(ratio * n_envs)`` envs' observations moved (market
        columns only) to lower the probability of the action the policy takes on the clean
        observation (``perturb_step``)."""
        if not self.config.rollouts:
            return obs
        if getattr(self, "_generator_epoch", None) != (ctx.seed, ctx.epoch):
            import torch

            self._generator = torch.Generator(device=obs.device).manual_seed(
                (int(ctx.seed) * 1_000_003 + int(ctx.epoch) * 10_007 + 7919) % (2 ** 63))
            self._generator_epoch = (ctx.seed, ctx.epoch)
        return perturb_step(obs, starts, state, policy, ctx.model.n_features, self.config, self._generator)

    def dataset(self, dataset: Any, ctx: Any, split: str) -> Any:
        """Only the train split is wrapped: validation data (and every evaluation) stays clean."""
        if split != "train" or self.config.epsilon == 0 or self.config.ratio == 0:
            return dataset
        return _Adversarial(dataset, self, ctx)


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name="adversarial", code="K5",
                                    summary="FGSM/PGD adversarial training in an L-inf ball of the features "
                                            "(dataset hook; on_rollout for online RL)",
                                    config=AdversarialConfig, factory=Adversarial,
                                    paradigms=("supervised", "sequence", "offline-rl", "online-rl")))
