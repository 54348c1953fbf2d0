"""orthogonal-init (A7): re-initialise the model's trainable layers with orthogonal weights and
zero biases (Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks"), with CleanRL's per-layer gains for actor-critic networks (Huang et al.
2022, "The 37 implementation details of PPO"): sqrt(2) for hidden layers, 1 for recurrent weight
matrices, 0.01 for the policy head, 1 for the value head.

Uses the ``model_built`` hook: the model is built and on its device, before the optimiser
exists. Which layer is which comes from the model's optional ``init_roles()``, a mapping from a
module name of ``model.network`` (as ``named_modules`` spells it; ``""`` is the whole network)
or a parameter name to a role:

- ``"hidden"``: orthogonal weights with ``hidden_gain`` (``recurrent_gain`` for LSTM/GRU/RNN
  weight matrices), zero biases;
- ``"policy"`` / ``"value"``: the same with ``policy_gain`` / ``value_gain``;
- ``"bias"``: a parameter to set to zero (a bias the plugin cannot tell by its name);
- ``"skip"``: left as the model built it (a pretrained backbone, LoRA's zero ``B`` matrices).

A layer takes the role of the longest name that equals it or is a dotted prefix of it; a layer
no name covers is ``"hidden"``, unless all of its parameters are frozen (``requires_grad`` off),
which then stay as they are. Layers are the ``torch.nn`` types ``init_orthogonal`` takes (Linear,
Conv1d/2d/3d, LSTM, GRU, RNN, MultiheadAttention, and their subclasses); embeddings and normalisation layers keep
their own initialisation. A parameter outside those layers is initialised only when a key names
it exactly (a 3-D or larger one as a stack of matrices over its first dimension, CQL's
``[heads, in, out]``). After re-initialising, the model's optional ``reinitialised()`` is
called (CQL copies the fresh weights into its target networks).

The matrices are drawn from a generator of their own, seeded with the run's seed, so the method
changes the initial weights and nothing else of the run's random streams. When a trained run is
restored (``himari backtest``) the hook does nothing: the saved weights are loaded next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from himari.plugin.api import TrainingMethodSpec, hookimpl

ROLES = ("hidden", "policy", "value", "bias", "skip")
NAME = "orthogonal-init"


@dataclass(frozen=True)
class OrthogonalInitConfig:
    hidden_gain: float = math.sqrt(2.0)
    """Gain of hidden layers' weight matrices (sqrt(2): ReLU-like activations)."""
    recurrent_gain: float = 1.0
    """Gain of hidden LSTM/GRU/RNN weight matrices (each gate-stacked matrix is one orthogonal matrix)."""
    policy_gain: float = 0.01
    """Gain of the policy (action-logit) head: near-uniform initial actions."""
    value_gain: float = 1.0
    """Gain of the value (or Q-value) head."""

    def __post_init__(self) -> None:
        for name in ("hidden_gain", "recurrent_gain", "policy_gain", "value_gain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _role_of(name: str, roles: dict[str, str]) -> tuple[str, bool]:
    """The role of module ``name``: that of the longest key equal to it or a dotted prefix of it
    (``""`` covers everything); ``("hidden", False)`` when no key covers it."""
    best: str | None = None
    for key in roles:
        if (key == "" or name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return (roles[best], True) if best is not None else ("hidden", False)


def _check_roles(roles: Any, modules: dict[str, Any], params: dict[str, Any], model_name: str) -> dict[str, str]:
    from himari.plugin.api import ConfigError

    if not isinstance(roles, dict):
        raise ConfigError(f"{NAME}: {model_name}.init_roles() must return a dict, got {type(roles).__name__}")
    for key, role in roles.items():
        if role not in ROLES:
            raise ConfigError(f"{NAME}: {model_name}.init_roles() gives {key!r} the role {role!r}; "
                              f"roles are {', '.join(ROLES)}")
        if key not in modules and key not in params:
            raise ConfigError(f"{NAME}: {model_name}.init_roles() names {key!r}, which is neither a module "
                              f"nor a parameter of its network")
    return dict(roles)


def reinitialise(network: Any, roles: dict[str, str], config: OrthogonalInitConfig, generator: Any = None,
                 model_name: str = "the model") -> list[dict[str, Any]]:
    """Re-initialise ``network`` in place following ``roles`` (see the module docstring); returns
    one record ``{name, role, gain}`` per layer or parameter it changed, in the order done."""
    import torch

    from himari.plugin.api import ConfigError, init_orthogonal, is_orthogonal_layer, orthogonal_tensor_

    modules = dict(network.named_modules())
    params = dict(network.named_parameters())
    roles = _check_roles(roles, modules, params, model_name)
    gains = {"hidden": config.hidden_gain, "policy": config.policy_gain, "value": config.value_gain}
    done: list[dict[str, Any]] = []
    covered: set[str] = set()
    for mname, module in modules.items():
        if not is_orthogonal_layer(module):
            continue
        own = [f"{mname}.{p}" if mname else p for p, _ in module.named_parameters(recurse=False)]
        covered.update(own)
        for name in own:
            if name in roles:
                raise ConfigError(f"{NAME}: {model_name}.init_roles() names the parameter {name!r} of a layer; "
                                  f"give the layer {mname!r} its role instead")
        role, explicit = _role_of(mname, roles)
        if role == "skip" or not own:
            continue
        if role == "bias":
            raise ConfigError(f"{NAME}: {model_name}.init_roles() gives the layer {mname!r} the role 'bias' "
                              f"(for parameters only)")
        if not explicit and not any(params[n].requires_grad for n in own):
            continue  # a frozen layer nobody asked for
        gain = config.recurrent_gain if role == "hidden" and isinstance(module, torch.nn.RNNBase) else gains[role]
        init_orthogonal(module, gain, generator=generator)
        done.append({"name": mname, "role": role, "gain": gain})
    with torch.no_grad():
        for name, role in roles.items():
            if name not in params or name in modules or role == "skip":
                continue
            if name in covered:
                continue  # refused above
            p = params[name]
            if role == "bias":
                p.zero_()
                done.append({"name": name, "role": role, "gain": 0.0})
                continue
            if p.dim() < 2:
                raise ConfigError(f"{NAME}: {model_name}.init_roles() gives the {p.dim()}-D parameter {name!r} "
                                  f"the role {role!r}; orthogonal initialisation needs a matrix")
            orthogonal_tensor_(p, gains[role], generator=generator, stacked=p.dim() >= 3)
            done.append({"name": name, "role": role, "gain": gains[role]})
    return done


class OrthogonalInit:
    def __init__(self, config: OrthogonalInitConfig) -> None:
        self.config = config
        self.layers: list[dict[str, Any]] = []

    def model_built(self, model: Any, ctx: Any) -> None:
        import torch

        if ctx.data is None:  # a restored run: its trained weights are loaded next
            return
        roles = model.init_roles() if callable(getattr(model, "init_roles", None)) else {}
        generator = torch.Generator().manual_seed((int(ctx.seed) * 1_000_003 + 0xA7) % 2**63)
        self.layers = reinitialise(model.network, roles, self.config, generator, type(model).__name__)
        if callable(getattr(model, "reinitialised", None)):
            model.reinitialised()

    def after_training(self, policy: Any, ctx: Any) -> dict[str, Any]:
        """What was re-initialised, by role (saved in ``summary.json``)."""
        by_role: dict[str, int] = {}
        for rec in self.layers:
            by_role[rec["role"]] = by_role.get(rec["role"], 0) + 1
        return {"reinitialised": len(self.layers), "by_role": by_role}


@hookimpl
def himari_register_training_methods(registry: Any) -> None:
    registry.add(TrainingMethodSpec(name=NAME, code="A7",
                                    summary="orthogonal weights, per-layer gains, zero biases (model_built hook)",
                                    config=OrthogonalInitConfig, factory=OrthogonalInit))
