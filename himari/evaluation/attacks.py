"""L-infinity input attacks: FGSM (Goodfellow et al. 2015) and PGD with a random start (Madry et
al. 2018), shared by adversarial training (the ``adversarial`` training method) and robustness
testing (``himari robustness``).

One function does both: FGSM is one step of size epsilon from the clean input; PGD is ``steps``
signed-gradient steps of ``step_size`` from a uniform random point of the epsilon box, each
followed by the projection back onto the box. ``mask`` marks the columns of the input's last
axis that may move (market features); the others (an account state) are never touched. torch is
imported inside the function, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

ATTACKS = ("fgsm", "pgd")


def default_step_size(epsilon: float, steps: int) -> float:
    """Madry et al.'s choice, 2.5 * epsilon / steps: the steps together can cross the box
    (2 * epsilon) from any random start, with room to move back."""
    return 2.5 * epsilon / max(steps, 1)


def linf_attack(loss_fn: Callable[[Any], Any], x: Any, epsilon: float, *, attack: str = "pgd", steps: int = 1,
                step_size: float | None = None, random_start: bool = True, mask: Any = None,
                generator: Any = None) -> Any:
    """``x + delta`` with ``|delta| <= epsilon`` elementwise that (approximately) maximises
    ``loss_fn(x + delta)``, a scalar tensor; ``delta`` is zero where ``mask`` (broadcast over
    ``x``'s last axis: True or 1 for the columns that may move) is not set.

    ``attack="fgsm"``: ``x + epsilon * sign(grad)``, the exact maximiser when the loss is linear
    in ``x``. ``attack="pgd"``: ``steps`` steps of ``step_size`` (default
    ``default_step_size``) from a uniform random start (``random_start``; drawn from
    ``generator`` or torch's global generator) or from ``x``; the last iterate is returned.
    Gradients are taken with ``torch.autograd.grad``, so no parameter's ``.grad`` changes.
    The result is detached."""
    import torch

    if attack not in ATTACKS:
        raise ValueError(f"attack {attack!r}: choose one of {', '.join(ATTACKS)}")
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    x = x.detach()
    if epsilon == 0:
        return x.clone()
    keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device) if mask is None else \
        torch.as_tensor(mask, device=x.device).to(x.dtype)

    def gradient_sign(delta: Any) -> Any:
        # cuDNN's recurrent kernels have no backward in eval mode, and the attacked policy is
        # in eval mode (its dropout off, its normalisation frozen): without cuDNN, torch's
        # native kernels differentiate the same network. (cudnn.flags sets every cuDNN flag
        # for the block, which only matters where cuDNN runs: not on the CPU, not here.)
        delta = delta.detach().requires_grad_(True)
        no_cudnn = torch.backends.cudnn.flags(enabled=False) if x.device.type == "cuda" else nullcontext()
        with torch.enable_grad(), no_cudnn:
            loss = loss_fn(x + delta)
            (grad,) = torch.autograd.grad(loss, delta)
        return grad.sign()

    if attack == "fgsm":
        return (x + epsilon * gradient_sign(torch.zeros_like(x)) * keep).detach()
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alpha = default_step_size(epsilon, steps) if step_size is None else float(step_size)
    if random_start:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        delta = (2.0 * u - 1.0) * epsilon * keep
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        delta = ((delta + alpha * gradient_sign(delta)).clamp(-epsilon, epsilon) * keep).detach()
    return (x + delta).detach()


def random_corner(x: Any, epsilon: float, *, mask: Any = None, generator: Any = None) -> Any:
    """``x`` moved by ``+epsilon`` or ``-epsilon`` in each (masked) column, the sign drawn
    uniformly: random noise with the same L-infinity (and L2) norm as an FGSM perturbation, the
    control that tells an attack's effect from that of any perturbation of its size."""
    import torch

    x = x.detach()
    keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device) if mask is None else \
        torch.as_tensor(mask, device=x.device).to(x.dtype)
    u = torch.rand(x.shape, generator=generator, device=x.device)
    sign = torch.where(u < 0.5, -1.0, 1.0).to(x.dtype)
    return x + epsilon * sign * keep
