"""AdamW's update compiled with ``torch.compile``, for the replayed step of ``train.compile``.

Why: at the size of the offline models' networks (CQL: twelve tensors, 116 thousand numbers)
torch's fused AdamW is one kernel, but a slow one: it gives each tensor's 65,536-number chunk to
one block, so twelve blocks of a GPU's 132 streaming multiprocessors walk through the moments,
and the kernel took a quarter of CQL's replayed step on an H100. Inductor spreads the same
arithmetic over the whole GPU.

The arithmetic is ``torch.optim.AdamW``'s (decoupled weight decay, bias-corrected moments;
neither amsgrad nor maximize), written out as tensor operations so that Inductor can fuse them,
and it works on the optimiser's own state (``exp_avg``, ``exp_avg_sq``, ``step``), so checkpoints,
resumption and the eager steps of the same run share it. A test checks it against torch's AdamW.
Like ``graph_step.guarded_optimizer_step``, the update changes nothing (weights, moments, step
count) where the device flag ``found_inf`` is set.
"""

from __future__ import annotations

from typing import Any

from himari.errors import TrainingError


def adamw_update(params: list[Any], grads: list[Any], exp_avgs: list[Any], exp_avg_sqs: list[Any], steps: list[Any],
                 found_inf: Any, *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW update of ``params`` in place, or none where ``found_inf`` (a 0-d tensor) is
    non-zero: each new value is chosen against the old one on the device, so a replay needs no
    host decision."""
    import torch

    skip = found_inf.bool()
    for p, g, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        g = g.to(p.dtype)
        step_new = step + 1
        bias1 = 1 - beta1 ** step_new
        bias2_sqrt = (1 - beta2 ** step_new).sqrt()
        m_new = torch.lerp(m, g, 1 - beta1)
        v_new = v * beta2 + (1 - beta2) * g * g
        p_new = p * (1 - lr * weight_decay) - (lr / bias1) * m_new / (v_new.sqrt() / bias2_sqrt + eps)
        p.copy_(torch.where(skip, p, p_new))
        m.copy_(torch.where(skip, m, m_new))
        v.copy_(torch.where(skip, v, v_new))
        step.copy_(torch.where(skip, step, step_new))


class CompiledAdamW:
    """``update(found_inf)``: the AdamW step of ``optimizer`` (a ``torch.optim.AdamW`` whose state
    exists, i.e. after its first step), compiled on the first call. The optimiser stays the
    keeper of the hyperparameters and the state; this only runs its update faster."""

    def __init__(self, optimizer: Any) -> None:
        import torch

        for group in optimizer.param_groups:
            if group.get("amsgrad") or group.get("maximize") or group.get("differentiable"):
                raise TrainingError("train.compile: the compiled AdamW step takes neither amsgrad nor maximize")
        self.optimizer = optimizer
        self._compiled = torch.compile(torch.no_grad()(adamw_update), fullgraph=True, dynamic=False)

    def __call__(self, found_inf: Any) -> None:
        opt = self.optimizer
        for group in opt.param_groups:
            live = [p for p in group["params"] if p.grad is not None]
            if not live:
                continue
            if any(p not in opt.state for p in live):
                raise TrainingError("train.compile: the compiled AdamW step needs the optimiser's state, which its "
                                    "first ordinary step creates")
            state = [opt.state[p] for p in live]
            beta1, beta2 = group["betas"]
            self._compiled(live, [p.grad for p in live], [s["exp_avg"] for s in state],
                           [s["exp_avg_sq"] for s in state], [s["step"] for s in state], found_inf,
                           lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), eps=float(group["eps"]),
                           weight_decay=float(group["weight_decay"]))
