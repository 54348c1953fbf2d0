"""FLAG-TRADER: a language-model backbone, adapted by LoRA and shared by a policy head and a value
head, trained online by PPO in the native ``VecTradingEnv`` (Xiong et al. 2025, "FLAG-Trader:
Fusion LLM-Agent with Gradient-based Reinforcement Learning for Financial Trading").

Network (87,957,892 parameters, 2,940,292 trainable, at the defaults and 60 features):

- Input: the env observation of the last ``context_length`` bars, each row the bar's features and
  the 4 account columns (position, unrealised PnL, drawdown, log bars in position), goes through
  a linear embedding ``Linear(F + 4, n_embd)`` into the backbone's ``inputs_embeds``: bars take the
  place of text tokens, so the backbone has no token vocabulary (its ``wte`` is emptied).
- Backbone: the GPT-2 architecture (768-d, 12 layers, 12 heads by default) built from a
  ``GPT2Config`` with learned position embeddings for ``context_length`` positions, or a local
  pretrained Hugging Face GPT-2 directory (``backbone``). Causal self-attention through
  ``scaled_dot_product_attention`` (``attn_implementation="sdpa"``: the fused flash or
  memory-efficient kernels on CUDA).
- LoRA (peft, rank ``lora_rank``) on every attention and MLP projection (``c_attn``, ``c_proj``,
  ``c_fc``; GPT-2's ``Conv1D`` stores weights as ``[in, out]``, hence ``fan_in_fan_out``). The
  backbone's projection matrices are frozen; trainable are the LoRA factors, the position
  embeddings, the LayerNorms, the input embedding and the heads.
- Heads on the last position's hidden state (the decision at the newest bar): a policy head
  ``Linear(n_embd, head_hidden) + GELU + Linear(head_hidden, 3)`` (SELL, HOLD, BUY logits) and a
  value head of the same shape with one output. Orthogonal initialisation as in PPO-LSTM (output
  gains 0.01 for the policy, 1 for the value).

Training: PPO (``himari.training.ppo``) on rollouts of ``EnvRollout`` with windows of
``context_length`` bars. The policy is stateless (the window is its memory), so a minibatch of
whole env sequences ``[T, B, W, D]`` is flattened into ``T * B`` independent windows. Optional:
a supervised warm start at the first rollout of the run (``warm_start_epochs``): class-weighted
cross-entropy of the labels from flat-account windows of the train split, followed by a check of
the warm-started policy's action shares on the validation split (the collapse guard: > 90% of one
action is reported). bf16 autocast on CUDA (rollouts and evaluation here, updates by the
Trainer's AMP); optional gradient checkpointing of the backbone's blocks.

Evaluation: deterministic (arg-max) actions decided sequentially through each split range by a
1-env ``VecTradingEnv`` of the same window, from a flat account (``act_sequence``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from himari.plugin.api import ModelSpec, ParamCount, hookimpl
from himari.plugin.api import PPOConfig, ppo_loss

ACCOUNT_COLUMNS = 4
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")
"""GPT-2's attention (qkv and output) and MLP (in and out) projections; ``c_proj`` names both the
attention output and the MLP output projection."""
TRAINABLE_BACKBONE = (".wpe.", ".ln_")
"""Backbone parameters trained next to LoRA: position embeddings and LayerNorms."""


@dataclass(frozen=True)
class FlagTraderConfig(PPOConfig):
    backbone: str = ""
    """Local pretrained Hugging Face GPT-2 directory; empty: a GPT-2 built from n_layer/n_head/n_embd."""
    context_length: int = 256
    """Bars per observation window (the sequence the backbone reads; its position embeddings)."""
    n_layer: int = 12
    """Transformer blocks of a built backbone (ignored with backbone)."""
    n_head: int = 12
    """Attention heads of a built backbone (ignored with backbone)."""
    n_embd: int = 768
    """Hidden width of a built backbone (ignored with backbone)."""
    lora_rank: int = 16
    """LoRA rank of every adapted projection."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch input."""
    head_hidden: int = 192
    """Hidden width of the policy and value heads; 0: linear heads."""
    dropout: float = 0.0
    """Backbone dropout (residual, embedding, attention); 0 keeps PPO's ratio exact."""
    gradient_checkpointing: bool = False
    """Recompute the backbone blocks' activations in the backward pass (less memory, ~30% slower)."""
    bf16: bool = True
    """bf16 autocast of rollouts, warm start and evaluation on CUDA (updates follow train.amp)."""
    warm_start_epochs: int = 0
    """Supervised passes over the train split's labelled windows before the first rollout; 0: none."""
    warm_start_lr: float = 1e-4
    """Learning rate of the warm start (its own AdamW over the trainable parameters)."""
    warm_start_batch_size: int = 64
    """Windows per warm-start step and per evaluation forward pass."""
    cpu_threads: int = 1
    """torch intra-op threads while rolling out, warm-starting and acting on the CPU (0: torch's
    default); the tiny CPU configs run fastest on one, and far faster than on two busy cores."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("context_length", "n_layer", "n_head", "n_embd", "lora_rank", "warm_start_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.backbone and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.head_hidden < 0 or self.warm_start_epochs < 0:
            raise ValueError("head_hidden and warm_start_epochs must be >= 0")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.lora_dropout < 1.0):
            raise ValueError("dropout and lora_dropout must be in [0, 1)")
        if self.lora_alpha <= 0 or self.warm_start_lr <= 0:
            raise ValueError("lora_alpha and warm_start_lr must be > 0")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")


# --------------------------------------------------------------------------- parameter counts


class BackboneShape(NamedTuple):
    width: int
    layers: int
    inner: int
    positions: int


def backbone_shape(config: FlagTraderConfig) -> BackboneShape:
    """Width, depth, MLP width and position count of the backbone the config builds or loads:
    from the config, or from the pretrained directory's ``config.json`` (no torch needed)."""
    if not config.backbone:
        return BackboneShape(config.n_embd, config.n_layer, 4 * config.n_embd, config.context_length)
    from himari.plugin.api import ConfigError

    path = Path(config.backbone) / "config.json"
    if not path.is_file():
        raise ConfigError(f"flag-trader.backbone: {config.backbone!r} is not a Hugging Face model directory "
                          f"(no config.json)")
    hf = json.loads(path.read_text(encoding="utf-8"))
    if hf.get("model_type") != "gpt2":
        raise ConfigError(f"flag-trader.backbone: {config.backbone!r} is a {hf.get('model_type')!r} model; "
                          f"only the GPT-2 architecture is supported")
    width = int(hf.get("n_embd", 768))
    positions = int(hf.get("n_positions", 1024))
    if config.context_length > positions:
        raise ConfigError(f"flag-trader.context_length ({config.context_length}) exceeds the backbone's "
                          f"{positions} position embeddings")
    return BackboneShape(width, int(hf.get("n_layer", 12)), int(hf.get("n_inner") or 4 * width), positions)


def _head_count(width: int, hidden: int, out: int) -> int:
    return width * out + out if hidden == 0 else width * hidden + hidden + hidden * out + out


def parameter_count(config: FlagTraderConfig, n_features: int) -> ParamCount:
    """Exact arithmetic of the network: frozen projection matrices of each block (qkv, attention
    output, MLP in and out, with biases); trainable LoRA factors (``r x (in + out)`` per adapted
    projection), position embeddings, LayerNorms (two per block and the final one), the input
    embedding and both heads. The emptied token embedding holds nothing."""
    d, layers, inner, positions = backbone_shape(config)
    frozen = layers * ((d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d))
    lora = layers * config.lora_rank * ((d + 3 * d) + (d + d) + (d + inner) + (inner + d))
    norms = layers * 2 * (2 * d) + 2 * d
    embed = (n_features + ACCOUNT_COLUMNS) * d + d
    heads = _head_count(d, config.head_hidden, 3) + _head_count(d, config.head_hidden, 1)
    trainable = lora + positions * d + norms + embed + heads
    return ParamCount(frozen + trainable, trainable)


# ----------------------------------------------------------------------------------- network


def _require_llm_packages() -> None:
    import importlib.util

    from himari.plugin.api import HimariError

    missing = [m for m in ("transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise HimariError(f"flag-trader needs {' and '.join(missing)}: pip install transformers peft")


def _gpt2(config: FlagTraderConfig) -> Any:
    """The GPT-2 backbone in float32 with SDPA attention, built or loaded, its token embedding
    emptied (inputs are bar embeddings)."""
    import torch
    from transformers import GPT2Config, GPT2Model

    # GPT-2's "gelu_new" is the tanh-approximated GELU written as seven elementwise ops;
    # "gelu_pytorch_tanh" is the same function in one fused kernel (a large share of a step's
    # memory traffic at 65k tokens per minibatch otherwise).
    kwargs = {"resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
              "attn_implementation": "sdpa"}
    if config.backbone:
        backbone_shape(config)  # a clear error for a wrong directory or too short position table
        if GPT2Config.from_pretrained(config.backbone).activation_function == "gelu_new":
            kwargs["activation_function"] = "gelu_pytorch_tanh"
        gpt = GPT2Model.from_pretrained(config.backbone, dtype=torch.float32, **kwargs)
    else:
        hf = GPT2Config(n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head,
                        n_positions=config.context_length, vocab_size=1, bos_token_id=0, eos_token_id=0,
                        activation_function="gelu_pytorch_tanh", **kwargs)
        gpt = GPT2Model(hf)
    gpt.wte = torch.nn.Embedding(0, gpt.config.n_embd)
    gpt.config.use_cache = False
    set_checkpointing(gpt, config.gradient_checkpointing)
    return gpt


def set_checkpointing(gpt: Any, on: bool) -> None:
    """Turn activation (gradient) checkpointing of a transformers model's blocks on or off,
    non-reentrant, through whichever name this transformers version has (5.24 renamed
    ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``)."""
    if on:
        enable = getattr(gpt, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            gpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        disable = getattr(gpt, "activation_checkpointing_disable", None) or gpt.gradient_checkpointing_disable
        disable()


def _lora(gpt: Any, config: FlagTraderConfig) -> Any:
    """peft LoRA on ``LORA_TARGETS`` (every other backbone parameter frozen by peft), then the
    position embeddings and LayerNorms made trainable again."""
    import warnings

    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules=list(LORA_TARGETS), fan_in_fan_out=True, bias="none")
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(gpt, lora_config)
    for name, p in model.named_parameters():
        if any(key in name for key in TRAINABLE_BACKBONE):
            p.requires_grad_(True)
    for module in model.modules():
        # peft casts a LoRA layer's input to the adapter weights' dtype (float32) before the
        # adapter, and autocast casts it straight back to bf16: two copies of every adapted
        # activation per layer for nothing. Under autocast the adapter runs in bf16 either way.
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
    return model


@lru_cache(maxsize=1)
def _network_class() -> type:
    import contextlib
    import math

    import torch
    from torch import nn

    def head(width: int, hidden: int, out: int, gain: float) -> nn.Module:
        last = nn.Linear(hidden or width, out)
        nn.init.orthogonal_(last.weight, gain)
        nn.init.zeros_(last.bias)
        if hidden == 0:
            return last
        first = nn.Linear(width, hidden)
        nn.init.orthogonal_(first.weight, math.sqrt(2))
        nn.init.zeros_(first.bias)
        return nn.Sequential(first, nn.GELU(), last)

    class FlagTraderNetwork(nn.Module):
        """Bar embedding -> LoRA GPT-2 -> policy and value heads on the last position."""

        def __init__(self, config: FlagTraderConfig, obs_dim: int, n_actions: int) -> None:
            super().__init__()
            self.backbone = _lora(_gpt2(config), config)
            width = self.backbone.get_base_model().config.n_embd
            self.embed = nn.Linear(obs_dim, width)
            self.policy_head = head(width, config.head_hidden, n_actions, 0.01)
            self.value_head = head(width, config.head_hidden, 1, 1.0)
            self.bf16 = config.bf16

        def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``obs [B, W, D]`` (or ``[B, D]``, a window of one bar) -> logits ``[B, A]`` and
            value ``[B]`` from the newest bar's hidden state."""
            if obs.dim() == 2:
                obs = obs[:, None]
            hidden = self.backbone(inputs_embeds=self.embed(obs), use_cache=False).last_hidden_state[:, -1]
            return self.policy_head(hidden), self.value_head(hidden)[:, 0]

        def inference_autocast(self, device: torch.device) -> Any:
            """bf16 autocast on CUDA when configured (rollouts, warm start, evaluation)."""
            if device.type == "cuda" and self.bf16:
                return torch.autocast("cuda", dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def policy(self, obs: torch.Tensor, starts: Any, state: tuple[Any, ...]) -> tuple[Any, Any, tuple[Any, ...]]:
            """``EnvRollout``'s policy function: stateless, so ``starts`` and ``state`` pass through."""
            with self.inference_autocast(obs.device):
                logits, value = self(obs)
            return logits.float(), value.float(), state

        @staticmethod
        def initial_state(n: int, device: Any) -> tuple[Any, ...]:
            return ()

    return FlagTraderNetwork


# ------------------------------------------------------------------------------ the plugin


class FlagTrader:
    """The model plugin instance (``himari.plugin.api.Model``; online-RL hooks ``rollout`` and
    ``act_sequence``)."""

    paradigm = "online-rl"

    def __init__(self, config: FlagTraderConfig, ctx: Any) -> None:
        import torch

        _require_llm_packages()
        self.config = config
        self.obs_dim = ctx.n_features + ACCOUNT_COLUMNS
        self.network = _network_class()(config, self.obs_dim, ctx.n_actions)
        counts = torch.tensor(ctx.class_counts, dtype=torch.float32).clamp(min=1.0)
        self.class_weight = counts.sum() / (len(counts) * counts)  # as baseline-mlp's class-weighted loss
        self._rollouts: Any = None

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
            buf = self._rollouts.collect(ctx, reset, net.policy, net.initial_state, device)
        finally:
            net.train(was_training)
        buf.stats.update(warm)
        return buf

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

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, float]]:
        """PPO loss of a minibatch of whole env sequences, flattened to independent windows."""
        obs = batch["obs"]
        n = obs.shape[0] * obs.shape[1]
        logits, values = self.network(obs.reshape(n, *obs.shape[2:]))
        flat = {k: batch[k].reshape(n) for k in ("actions", "logprobs", "values", "advantages", "returns")}
        return ppo_loss(logits, values, flat, self.config)

    def act(self, features: Any, rows: Any) -> Any:
        from himari.plugin.api import HimariError

        raise HimariError("flag-trader decides from the account state in its window: use "
                          "act_sequence(features, open, close, ranges, env)")

    def act_sequence(self, features: Any, open_: Any, close: Any, ranges: Any, env: Any) -> Any:
        """Deterministic (arg-max) actions through each range from a flat account, each decision
        from the last ``context_length`` bars (``sequential_actions`` with that window)."""
        import numpy as np
        import torch

        from himari.plugin.api import sequential_actions

        net = self.network
        device = self._device()
        graphed: dict[str, Any] = {}

        def step(obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(obs)).to(device, non_blocking=True)
            if device.type == "cuda":
                if "run" not in graphed:
                    graphed["run"] = _graphed_decision(net, x)
                return graphed["run"](x).argmax(-1).cpu().numpy()
            logits, _, _ = net.policy(x, None, ())
            return logits.argmax(-1).cpu().numpy()

        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                return sequential_actions(step, features, open_, close, ranges, env,
                                          window=self.config.context_length)
        finally:
            net.train(was_training)


def _graphed_decision(net: Any, example: Any) -> Any:
    """One batch-1 decision captured in a CUDA graph, replayed per bar.

    A decision of the full model is about 600 small kernels and 0.1 ms of GPU work: launched one
    by one from Python it took 24 ms on an H100, which made evaluating a 30k-bar split take
    12 minutes. Replaying the captured graph launches them all at once. The input is copied
    into the graph's static input tensor; the returned logits tensor is overwritten by the next
    call."""
    import torch

    static_in = example.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):  # warm-up outside the capture (cuBLAS handles, autotuning)
            net.policy(static_in, None, ())
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_logits, _, _ = net.policy(static_in, None, ())

    def run(x: Any) -> Any:
        static_in.copy_(x)
        graph.replay()
        return static_logits

    return run


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


def build(config: FlagTraderConfig, ctx: Any) -> FlagTrader:
    return FlagTrader(config, ctx)


def model_spec(config: type = FlagTraderConfig) -> ModelSpec:
    """The registered spec; tests pass a config subclass with tiny defaults."""
    return ModelSpec(
        name="flag-trader",
        summary="GPT-2 backbone with LoRA shared by policy and value heads, trained online by PPO (FLAG-TRADER)",
        config=config,
        factory=build,
        paradigm="online-rl",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
        extras=("torch", "transformers", "peft"),
    )


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(model_spec())
