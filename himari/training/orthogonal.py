"""Orthogonal initialisation of one layer or one weight tensor (Saxe et al. 2014), the one
implementation behind the ``orthogonal-init`` training method and the built-in models' own
default initialisation (PPO-LSTM, FLAG-TRADER's heads), so the two cannot drift apart.

CleanRL's convention for actor-critic networks is the usual choice of gains: sqrt(2) for hidden
layers followed by a ReLU-like activation, 1 for recurrent weight matrices and the value head,
0.01 for the policy head (near-uniform initial actions); biases start at zero.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

LAYER_TYPES = ("Linear", "Conv1d", "Conv2d", "Conv3d", "LSTM", "GRU", "RNN", "MultiheadAttention")
"""The ``torch.nn`` layer types whose weights ``init_orthogonal`` initialises from the module
(subclasses included): every parameter whose name starts with ``weight`` (``in_proj_weight`` for
attention) gets an orthogonal matrix, every parameter whose name starts with or ends in ``bias``
gets zeros."""


def _is_bias(name: str) -> bool:
    return name.startswith("bias") or name.endswith("bias")


def _is_weight(name: str) -> bool:
    return name.startswith("weight") or name.endswith("weight")


def is_orthogonal_layer(module: Any) -> bool:
    """Whether ``init_orthogonal`` takes ``module`` (an instance of one of ``LAYER_TYPES``)."""
    import torch

    return isinstance(module, tuple(getattr(torch.nn, t) for t in LAYER_TYPES))


def orthogonal_tensor_(tensor: Any, gain: float, *, generator: Any = None, stacked: bool = False) -> None:
    """Fill ``tensor`` in place with a (semi-)orthogonal matrix times ``gain`` (trailing
    dimensions flattened, as ``torch.nn.init.orthogonal_``); ``stacked``: a stack of matrices
    over its first dimension (``[heads, in, out]``), each one orthogonal on its own.

    The matrix is drawn on the CPU in float32 from ``generator`` (torch's global CPU generator
    when None) and copied in, so a seeded draw is the same on every device; on a CPU float32
    tensor with ``generator=None`` this is exactly ``torch.nn.init.orthogonal_(tensor, gain)``."""
    import torch

    if tensor.is_meta or tensor.numel() == 0:
        return
    if stacked:
        if tensor.dim() < 3:
            raise ValueError(f"a stack of matrices needs at least 3 dimensions, got shape {tuple(tensor.shape)}")
        with torch.no_grad():
            for i in range(tensor.shape[0]):
                orthogonal_tensor_(tensor[i], gain, generator=generator)
        return
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal initialisation needs a matrix, got shape {tuple(tensor.shape)}")
    fresh = torch.empty(tuple(tensor.shape), dtype=torch.float32)
    torch.nn.init.orthogonal_(fresh, gain, generator=generator)
    with torch.no_grad():
        tensor.copy_(fresh)


def init_orthogonal(module: Any, gain: float, *, generator: Any = None) -> None:
    """Orthogonal weights times ``gain`` and zero biases for one layer (``LAYER_TYPES``), its
    own parameters in registration order (an LSTM's ``weight_ih``, ``weight_hh``, then biases:
    each gate-stacked weight matrix is one orthogonal matrix, as CleanRL does). Raises
    ``TypeError`` for any other module, so a model cannot silently keep its old weights."""
    import torch

    if not is_orthogonal_layer(module):
        raise TypeError(f"init_orthogonal: {type(module).__name__} is not one of {', '.join(LAYER_TYPES)}")
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if _is_bias(name):
                p.zero_()
            elif _is_weight(name):
                orthogonal_tensor_(p, gain, generator=generator)
