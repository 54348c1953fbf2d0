"""maml's gradients: the inner loop and the three meta-gradients, on any loss of named parameters.

``loss_of(params, batch) -> scalar`` evaluates a model's own loss with the parameters ``params``
(a ``{name: tensor}`` dict) substituted for its weights (``functional_loss`` builds one from a
model plugin through ``torch.func.functional_call``). The inner loop is ``steps`` plain SGD steps
``phi <- phi - alpha * grad L_support(phi)`` from ``phi = theta``.

- ``second-order`` (Finn et al. 2017): the gradient of ``L_query(phi(theta))`` with respect to
  ``theta``, differentiating through the inner loop (``create_graph=True``): for one step,
  ``(I - alpha H_support(theta)) grad L_query(phi)``.
- ``first-order`` (FOMAML, Finn et al. 2017, section 5.2): the inner loop is treated as a constant,
  so the meta-gradient is ``grad L_query(phi)`` evaluated at the adapted weights.
- ``reptile`` (Nichol et al. 2018): no query loss; the pseudo-gradient ``(theta - phi) / (alpha *
  steps)``, the mean inner-loop gradient, so an SGD outer step of size ``eps`` moves ``theta`` by
  ``eps / (alpha * steps) * (phi - theta)`` and the run's Adam takes it like any gradient.

torch is imported inside the functions (nothing here is needed to list plugins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MODES = ("first-order", "second-order", "reptile")

LossOf = Callable[[dict[str, Any], Any], Any]


class Parts(list):  # type: ignore[type-arg]
    """A batch given as equal-sized parts (an online-RL task rollout in the model's minibatches):
    its loss is the mean of the parts' losses, and without ``create_graph`` it is differentiated
    part by part, so memory is that of one part."""


def loss_and_grads(loss_of: LossOf, params: dict[str, Any], batch: Any, create_graph: bool) -> tuple[Any, list[Any]]:
    """``(loss, [gradient of each of params or None])`` of ``loss_of(params, batch)``; a ``Parts``
    batch (first order only) is averaged over its parts, one backward pass at a time."""
    import torch

    wrt = list(params.values())
    if not isinstance(batch, Parts):
        loss = loss_of(params, batch)
        return loss, list(torch.autograd.grad(loss, wrt, create_graph=create_graph, allow_unused=True))
    if create_graph:
        raise ValueError("a batch in parts cannot be differentiated through (second order)")
    total: list[Any] = [None] * len(wrt)
    loss_sum = 0.0
    for part in batch:
        loss = loss_of(params, part)
        loss_sum += float(loss.detach())
        for i, g in enumerate(torch.autograd.grad(loss, wrt, allow_unused=True)):
            if g is not None:
                total[i] = g / len(batch) if total[i] is None else total[i] + g / len(batch)
    return torch.tensor(loss_sum / len(batch)), total


def inner_loop(loss_of: LossOf, params: dict[str, Any], batch: Any, steps: int, alpha: float,
               create_graph: bool) -> tuple[dict[str, Any], float]:
    """``steps`` SGD steps on ``batch`` from ``params``; returns the adapted parameters and the
    first step's loss. With ``create_graph`` the result stays a differentiable function of
    ``params``; without it every step is detached (first-order, Reptile, adaptation)."""
    fast = dict(params) if create_graph else {k: v.detach().requires_grad_(True) for k, v in params.items()}
    first = float("nan")
    for i in range(steps):
        loss, grads = loss_and_grads(loss_of, fast, batch, create_graph)
        if i == 0:
            first = float(loss.detach())
        stepped = {k: v if g is None else v - alpha * g for (k, v), g in zip(fast.items(), grads)}
        fast = stepped if create_graph else {k: v.detach().requires_grad_(True) for k, v in stepped.items()}
    return fast, first


def meta_gradient(loss_of: LossOf, params: dict[str, Any], support: Any, query: Any, *, mode: str, steps: int,
                  alpha: float) -> tuple[dict[str, Any], dict[str, float]]:
    """One task's meta-gradient with respect to ``params`` (``{name: tensor}``, same shapes) and
    its logs (``support_loss`` before adaptation, ``query_loss`` after it; Reptile has none)."""
    import torch

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    second = mode == "second-order"
    fast, support_loss = inner_loop(loss_of, params, support, steps, alpha, create_graph=second)
    if mode == "reptile":
        scale = 1.0 / (alpha * steps)
        return {k: (params[k].detach() - fast[k].detach()) * scale for k in params}, {"support_loss": support_loss}
    if second:
        query_loss = loss_of(fast, query)
        grads = torch.autograd.grad(query_loss, [params[k] for k in params], allow_unused=True)
    else:
        query_loss, grads = loss_and_grads(loss_of, fast, query, create_graph=False)
    out = {k: torch.zeros_like(params[k]) if g is None else g.detach() for k, g in zip(params, grads)}
    return out, {"support_loss": support_loss, "query_loss": float(query_loss.detach())}


def functional_loss(model: Any, ctx: Any) -> tuple[LossOf, dict[str, Any]]:
    """``loss_of(params, batch)``: the model plugin's ``loss(batch, ctx)`` with its network's
    parameters replaced by ``params`` (``torch.func.functional_call`` on a module whose forward is
    the model's loss), and the network's trainable parameters by name (frozen ones are left out, so
    they are neither adapted nor given a gradient). Buffers (BatchNorm's running statistics) stay
    the network's own."""
    import torch

    class _Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model.network

        def forward(self, batch: Any) -> Any:
            return model.loss(batch, ctx)[0]

    wrapper = _Loss()

    def loss_of(params: dict[str, Any], batch: Any) -> Any:
        return torch.func.functional_call(wrapper, {f"net.{k}": v for k, v in params.items()}, (batch,), strict=False)

    return loss_of, {k: p for k, p in model.network.named_parameters() if p.requires_grad}
