"""orthogonal-init (A7): orthogonality and gains checked by hand (W W^T = gain^2 I), roles, the
frozen FLAG-TRADER backbone left alone, CQL's targets following, a run whose model's default
initialisation is not orthogonal (baseline-mlp), and bad roles refused. Resume equality comes
from the conformance harness (test_other_plugins.py)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from himari.errors import ConfigError
from himari.plugin.api import ModelContext, TrainContext
from himari.plugin.manager import get_plugins

P = get_plugins()
SPEC = P.training_methods().get("orthogonal-init")


def _ctx(seed: int = 0) -> TrainContext:
    """A context as the Trainer's at ``model_built`` (``data`` set: a new run, not a restore)."""
    return TrainContext(data=object(), features=None, labels=None, splits={}, env=None, seed=seed)


def _orthonormal(w: torch.Tensor, gain: float) -> bool:
    """Independent check: the rows (wide or square matrix) or columns (tall) of ``w``, in float64
    NumPy, are orthogonal with norm ``gain``."""
    a = w.detach().double().reshape(w.shape[0], -1).numpy()
    g = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return bool(np.allclose(g, gain**2 * np.eye(len(g)), atol=1e-5 * max(gain**2, 1e-4)))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 4))  # wide [4, 6], square [4, 4]
        self.tall = nn.Linear(3, 5)  # [5, 3]
        self.gru = nn.GRU(4, 3)  # weight_ih [9, 4], weight_hh [9, 3]
        self.pi = nn.Linear(4, 3)
        self.pi_aux = nn.Linear(4, 2)  # a name that starts like "pi" but is another layer
        self.v = nn.Linear(4, 1)
        self.norm = nn.LayerNorm(4)
        self.kept = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.stack = nn.Parameter(torch.randn(2, 4, 3))
        self.stack_b = nn.Parameter(torch.randn(2, 1, 3))
        self.scalar = nn.Parameter(torch.tensor(0.5))
        with torch.no_grad():
            for m in (self.norm,):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
            for m in self.modules():  # non-zero biases everywhere, so zeros are the method's doing
                for name, p in m.named_parameters(recurse=False):
                    if "bias" in name:
                        p.uniform_(0.1, 1.0)


class _Model:
    def __init__(self, roles: Any = None) -> None:
        torch.manual_seed(0)
        self.network = _Net()
        self._roles = roles if roles is not None else {"pi": "policy", "v": "value", "kept": "skip",
                                                        "stack": "value", "stack_b": "bias"}
        self.reinit_calls = 0

    def init_roles(self) -> Any:
        return self._roles

    def reinitialised(self) -> None:
        self.reinit_calls += 1


def _apply(model: Any, seed: int = 0, **config: float) -> Any:
    method = SPEC.factory(SPEC.config(**config))
    assert method.model_built(model, _ctx(seed)) is None
    return method


def test_init_orthogonal_is_torch_s_orthogonal_init_on_the_cpu() -> None:
    """The shared function draws exactly what ``torch.nn.init.orthogonal_`` draws from the global
    generator (so PPO-LSTM's and FLAG-TRADER's default initialisation did not change), and
    refuses a module it cannot initialise."""
    from himari.plugin.api import init_orthogonal

    torch.manual_seed(7)
    ours = nn.LSTM(5, 3)
    init_orthogonal(ours, 0.7)
    torch.manual_seed(7)
    ref = nn.LSTM(5, 3)
    for name, p in ref.named_parameters():
        nn.init.zeros_(p) if "bias" in name else nn.init.orthogonal_(p, 0.7)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))
    with pytest.raises(TypeError, match="LayerNorm is not one of Linear"):
        init_orthogonal(nn.LayerNorm(3), 1.0)


def test_spec_is_registered_with_its_code() -> None:
    assert SPEC.code == "A7" and set(SPEC.paradigms) == {"supervised", "sequence", "offline-rl", "online-rl"}


def test_orthogonality_gains_and_zero_biases_by_hand() -> None:
    model = _Model()
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    _apply(model)
    net = model.network
    r2 = math.sqrt(2)
    assert _orthonormal(net.body[0].weight, r2) and _orthonormal(net.body[2].weight, r2)  # wide, square
    assert _orthonormal(net.tall.weight, r2)  # tall: columns
    assert _orthonormal(net.gru.weight_ih_l0, 1.0) and _orthonormal(net.gru.weight_hh_l0, 1.0)  # recurrent gain
    assert _orthonormal(net.pi.weight, 0.01) and _orthonormal(net.v.weight, 1.0)
    assert abs(float(net.pi.weight.detach().norm(dim=1)[0]) - 0.01) < 1e-6  # the head gain, not the hidden one
    for i in range(2):
        assert _orthonormal(net.stack[i], 1.0)  # a stack of [4, 3] matrices, each orthogonal on its own
    assert not _orthonormal(net.stack.reshape(2, -1), 1.0)
    for m in (net.body[0], net.body[2], net.tall, net.pi, net.v):
        assert torch.count_nonzero(m.bias) == 0
    for name in ("bias_ih_l0", "bias_hh_l0"):
        assert torch.count_nonzero(getattr(net.gru, name)) == 0
    assert torch.count_nonzero(net.stack_b) == 0
    after = net.state_dict()
    for untouched in ("norm.weight", "norm.bias", "kept.weight", "kept.bias", "frozen.weight", "frozen.bias",
                      "scalar"):
        assert torch.equal(after[untouched], before[untouched]), untouched
    assert model.reinit_calls == 1


def test_gains_come_from_the_config() -> None:
    model = _Model()
    _apply(model, hidden_gain=0.5, recurrent_gain=0.3, policy_gain=2.0, value_gain=0.7)
    net = model.network
    assert _orthonormal(net.body[0].weight, 0.5) and _orthonormal(net.gru.weight_hh_l0, 0.3)
    assert _orthonormal(net.pi.weight, 2.0) and _orthonormal(net.v.weight, 0.7) and _orthonormal(net.stack[1], 0.7)


def test_longest_name_wins_and_a_named_frozen_layer_is_initialised() -> None:
    model = _Model({"body": "value", "body.2": "policy", "frozen": "hidden"})
    _apply(model)
    net = model.network
    assert _orthonormal(net.body[0].weight, 1.0) and _orthonormal(net.body[2].weight, 0.01)
    assert _orthonormal(net.frozen.weight, math.sqrt(2)) and _orthonormal(net.pi.weight, math.sqrt(2))


def test_a_recurrent_layer_with_a_head_role_takes_that_gain_and_a_key_covers_whole_name_parts() -> None:
    model = _Model({"gru": "value", "pi": "policy"})
    _apply(model, value_gain=0.7, recurrent_gain=0.3)
    net = model.network
    assert _orthonormal(net.gru.weight_ih_l0, 0.7) and _orthonormal(net.gru.weight_hh_l0, 0.7)
    assert _orthonormal(net.pi.weight, 0.01)
    assert _orthonormal(net.pi_aux.weight, math.sqrt(2))  # "pi" names pi and pi.*, not pi_aux


def test_seeded_by_the_run_seed_and_leaves_the_global_generator_alone() -> None:
    a, b, c = _Model(), _Model(), _Model()
    state = torch.get_rng_state()
    _apply(a, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    _apply(b, seed=1)
    _apply(c, seed=2)
    assert torch.equal(a.network.body[0].weight, b.network.body[0].weight)
    assert not torch.equal(a.network.body[0].weight, c.network.body[0].weight)


def test_a_restored_run_is_not_reinitialised() -> None:
    """``himari backtest`` calls the hook with ``ctx.data`` None before loading the weights."""
    model = _Model()
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    method = SPEC.factory(SPEC.config())
    method.model_built(model, TrainContext(data=None, features=None, labels=None, splits={}, env=None))
    assert all(torch.equal(v, before[k]) for k, v in model.network.state_dict().items())


@pytest.mark.parametrize("roles, message", [
    ({"nope": "hidden"}, r"orthogonal-init: _Model.init_roles\(\) names 'nope', which is neither a module"),
    ({"pi": "actor"}, r"gives 'pi' the role 'actor'; roles are hidden, policy, value, bias, skip"),
    ({"scalar": "value"}, r"the 0-D parameter 'scalar' the role 'value'; orthogonal initialisation needs a matrix"),
    ({"pi.weight": "policy"}, r"names the parameter 'pi.weight' of a layer; give the layer 'pi' its role instead"),
    ({"pi": "bias"}, r"gives the layer 'pi' the role 'bias'"),
    (["pi"], r"init_roles\(\) must return a dict, got list"),
])
def test_bad_roles_are_refused(roles: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _apply(_Model(roles))


@pytest.mark.parametrize("value", [-1.0, 0.0])
@pytest.mark.parametrize("field", ["hidden_gain", "recurrent_gain", "policy_gain", "value_gain"])
def test_bad_gains_are_refused(field: str, value: float) -> None:
    from himari.plugin.config import build_config

    with pytest.raises(ConfigError, match=f"{field} must be a finite number > 0, got {value}"):
        build_config(SPEC.config, {field: value}, "orthogonal-init")


# ---------------------------------------------------------------------------- built-in models


def _built(name: str, **config: Any) -> Any:
    spec = P.models().get(name)
    torch.manual_seed(0)
    return spec.factory(spec.config(**config), ModelContext(n_features=6))


def test_ppo_lstm_heads_get_their_gains() -> None:
    model = _built("ppo-lstm")
    _apply(model, seed=3)
    net = model.network
    assert _orthonormal(net.actor.weight, 0.01) and _orthonormal(net.critic.weight, 1.0)
    assert _orthonormal(net.lstm.weight_ih_l0, 1.0) and _orthonormal(net.encoder[0].weight, math.sqrt(2))


def test_cql_stacked_heads_and_targets_follow() -> None:
    model = _built("cql")
    before = model.network.w0.detach().clone()
    _apply(model)
    net = model.network
    assert not torch.equal(net.w0, before)
    last = net.n_layers - 1
    for i in range(net.n_layers):
        w, b = getattr(net, f"w{i}"), getattr(net, f"b{i}")
        for head in range(2):
            assert _orthonormal(w[head], 1.0 if i == last else math.sqrt(2))
        assert torch.count_nonzero(b) == 0
        assert torch.equal(getattr(net, f"target_w{i}"), w) and torch.equal(getattr(net, f"target_b{i}"), b)


def test_cgdt_heads_and_critic() -> None:
    model = _built("cgdt", d_model=16, n_layers=1, n_heads=2, critic_dim=8, critic_layers=1, critic_heads=2,
                   context_length=4)
    emb = model.network.policy.embed_action.weight.detach().clone()
    _apply(model)
    net = model.network
    assert _orthonormal(net.policy.head.weight, 0.01) and _orthonormal(net.critic.head.weight, 1.0)
    assert _orthonormal(net.critic.blocks[0].qkv.weight, math.sqrt(2))  # frozen, but named: trained first
    assert torch.equal(net.policy.embed_action.weight, emb)  # embeddings keep their own initialisation


def test_flag_trader_backbone_is_untouched() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    model = _built("flag-trader", n_layer=2, n_head=2, n_embd=32, context_length=16, lora_rank=4, head_hidden=16)
    net = model.network
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    _apply(model)
    after = net.state_dict()
    lora_a = [k for k in after if ".lora_A." in k]
    assert len(lora_a) == 2 * 4  # 2 layers x (c_attn, attn c_proj, c_fc, mlp c_proj)
    backbone = [k for k in after if k.startswith("backbone.") and ".lora_A." not in k]
    assert any(".wpe." in k for k in backbone) and any(".ln_" in k for k in backbone)  # trainable, still kept
    for k in backbone:
        assert torch.equal(after[k], before[k]), f"{k} changed"
    for k in (k for k in after if ".lora_B." in k):
        assert torch.count_nonzero(after[k]) == 0  # the adapter starts as the identity of the backbone
    for k in lora_a:
        assert not torch.equal(after[k], before[k]) and _orthonormal(after[k], math.sqrt(2))
    assert _orthonormal(net.embed.weight, math.sqrt(2)) and torch.count_nonzero(net.embed.bias) == 0
    assert _orthonormal(net.policy_head[2].weight, 0.01) and _orthonormal(net.value_head[2].weight, 1.0)
    assert _orthonormal(net.policy_head[0].weight, math.sqrt(2))


def _setup(prepared: Path, tmp_path: Path, methods: str) -> Any:
    from rich.console import Console

    from himari.training.config import merge_run_config
    from himari.training.trainer import Trainer

    run = merge_run_config(plugins=P, overrides={"model": "baseline-mlp", "data": str(prepared), "methods": methods},
                           sets=["train.epochs=1", "train.progress=false", "train.seed=4"])
    trainer = Trainer(run, plugins=P, run_dir=tmp_path / (methods or "none"), console=Console(file=io.StringIO()))
    trainer._setup()
    return trainer


def test_changes_a_non_orthogonal_model_and_nothing_else(small_prepared, tmp_path) -> None:
    """baseline-mlp (torch's default Linear init): with the method its Linears are orthogonal
    with the hidden and policy gains; BatchNorm is untouched, and the run's random streams after
    set-up are those of the run without the method."""
    plain = _setup(small_prepared, tmp_path, "")
    plain_rng = torch.get_rng_state()
    ortho = _setup(small_prepared, tmp_path, "orthogonal-init")
    assert torch.equal(torch.get_rng_state(), plain_rng)
    a, b = plain.model.network, ortho.model.network
    linears = [i for i, m in enumerate(b) if isinstance(m, nn.Linear)]
    assert len(linears) >= 2
    for i in linears:
        assert not _orthonormal(a[i].weight, math.sqrt(2)) and not torch.equal(a[i].weight, b[i].weight)
        assert _orthonormal(b[i].weight, 0.01 if i == linears[-1] else math.sqrt(2))
        assert torch.count_nonzero(b[i].bias) == 0
    for i, m in enumerate(b):
        if isinstance(m, nn.BatchNorm1d):
            assert torch.equal(m.weight, a[i].weight) and torch.equal(m.bias, a[i].bias)


def test_a_trained_run_restores_with_its_trained_weights(small_prepared, tmp_path) -> None:
    from himari.training.assemble import load_trained
    from himari.training.checkpoint import load_checkpoint

    from himari_tests_conformance import tiny_run  # type: ignore[import-not-found]

    summary = tiny_run("baseline-mlp", small_prepared, tmp_path / "run", methods="orthogonal-init")
    assert summary["methods"]["orthogonal-init"] == {"reinitialised": 3, "by_role": {"hidden": 2, "policy": 1}}
    policy = load_trained(tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["network"]
    now = policy.model.network.state_dict()
    assert all(torch.equal(now[k], saved[k]) for k in saved)
