"""LoRA projections computed as one product with the merged weight while training.

peft computes an adapted GPT-2 projection as ``x W + b + s (x A^T) B^T``: the frozen product, then
the adapter's two small products, a full-size output scaled by ``s`` and added to the frozen one
(and in the backward pass the same again for the input gradient). At 65,536 tokens a minibatch
those full-size scalings and additions are memory-bound elementwise kernels that cost as much GPU
time as the frozen products themselves. The same function is one product with the merged weight
``W + s A^T B^T`` (a few hundred kilobytes to merge, every step, from the current parameters),
and its backward pass needs one product for the input gradient plus the adapter's two skinny
gradient products: no full-size adapter output is ever written.

Used only where it is exactly LoRA's function and gradients (one plain adapter, no dropout on its
input, frozen base weight and bias, gradients enabled) and only on the devices it is switched on
for; everything else, inference included (rollouts replay captured CUDA graphs of the peft path),
goes through peft's forward unchanged. Parameters, their names and checkpoints stay peft's.
"""

from __future__ import annotations

from typing import Any

import torch


class MergedLoRAProduct(torch.autograd.Function):
    """``x W + b + s (x A^T) B^T`` for a GPT-2 ``Conv1D`` (``W`` is ``[in, out]``) as
    ``x (W + s A^T B^T) + b``, with the gradients of ``x``, ``A`` and ``B`` (``W`` and ``b`` frozen).

    Under autocast the products run in the autocast dtype, as peft's do; ``A`` and ``B``'s
    gradients come back in their own dtype."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lora_a: torch.Tensor,
                lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            exact = torch.promote_types(weight.dtype, lora_a.dtype)  # the parameters' precision
            merged = torch.addmm(weight.to(exact), lora_a.to(exact).t(), lora_b.to(exact).t(), alpha=scaling).to(dtype)
            rows = x.reshape(-1, x.shape[-1]).to(dtype)
            out = torch.addmm(bias.to(dtype), rows, merged)
            down = rows @ lora_a.to(dtype).t()  # x A^T [tokens, r], for B's gradient
        ctx.save_for_backward(rows, down, merged, lora_b.to(dtype))
        ctx.scaling = scaling
        ctx.param_dtypes = (lora_a.dtype, lora_b.dtype)
        ctx.x_shape_dtype = (x.shape, x.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        rows, down, merged, b = ctx.saved_tensors
        (x_shape, x_dtype), (a_dtype, b_dtype) = ctx.x_shape_dtype, ctx.param_dtypes
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(merged.dtype)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ merged.t()).view(x_shape).to(x_dtype)
        if ctx.needs_input_grad[3]:
            grad_a = ((grad @ b).t() @ rows).mul_(ctx.scaling).to(a_dtype)  # s (g B)^T x
        if ctx.needs_input_grad[4]:
            grad_b = (grad.t() @ down).mul_(ctx.scaling).to(b_dtype)  # s g^T (x A^T)
        return grad_x, None, None, grad_a, grad_b, None


def merged_lora_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lora_a: torch.Tensor,
                        lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``x W + b + scaling (x lora_a^T) lora_b^T`` through :class:`MergedLoRAProduct`."""
    return MergedLoRAProduct.apply(x, weight, bias, lora_a, lora_b, scaling)


def _merged_applies(layer: Any, x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``layer``'s call on ``x`` is exactly what the merged product computes."""
    if args or kwargs or not torch.is_grad_enabled() or x.device.type not in layer.merged_device_types:
        return False
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return False
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return False
    dropout = layer.lora_dropout[name]
    if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0 and dropout.training:
        return False
    base = layer.base_layer
    if getattr(base, "weight", None) is None or getattr(base, "bias", None) is None or not hasattr(base, "nf"):
        return False
    return not (base.weight.requires_grad or base.bias.requires_grad)


def _merged_class() -> type:
    """peft's LoRA ``Linear`` with the merged product where it applies (a subclass, so that a
    copied or pickled network keeps it; built on first use, peft being imported on use)."""
    global _MERGED_CLASS
    if _MERGED_CLASS is None:
        from peft.tuners.lora.layer import Linear

        class MergedLoRALinear(Linear):
            merged_device_types: tuple[str, ...] = ()

            def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                if not _merged_applies(self, x, args, kwargs):
                    return super().forward(x, *args, **kwargs)
                name = self.active_adapters[0]
                return merged_lora_product(x, self.base_layer.weight, self.base_layer.bias, self.lora_A[name].weight,
                                           self.lora_B[name].weight, float(self.scaling[name]))

        MergedLoRALinear.__module__, MergedLoRALinear.__qualname__ = __name__, "MergedLoRALinear"
        _MERGED_CLASS = MergedLoRALinear
    return _MERGED_CLASS


_MERGED_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    """``MergedLoRALinear`` by name (unpickling a network finds the class here)."""
    if name == "MergedLoRALinear":
        return _merged_class()
    raise AttributeError(name)


def use_merged_lora(model: torch.nn.Module, device_types: tuple[str, ...]) -> int:
    """Compute every peft LoRA layer of ``model`` whose base is a GPT-2 ``Conv1D`` through the
    merged product on ``device_types`` (``()``: never), where it applies; returns how many layers.
    Calling it again only changes the device types."""
    merged = _merged_class()
    base = merged.__mro__[1]
    count = 0
    for module in model.modules():
        if isinstance(module, base) and hasattr(module.base_layer, "nf"):
            module.__class__ = merged
            module.merged_device_types = tuple(device_types)
            count += 1
    return count
