"""What himari checks of a plugin's return values where they enter training, so that a mistake
in a plugin stops the run at once with an error naming the plugin, instead of failing later,
deep inside himari, with a message that names nothing (or not at all)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from himari.errors import TrainingError


def checked_dataset(ds: Any, what: str) -> Any:
    """A split's training data must have a length and be indexable (by a LongTensor of positions,
    as the sampler fetches batches): a hook returning None failed later with "object of type
    'NoneType' has no len()", and a list was taken for a split of a few examples."""
    if ds is None or isinstance(ds, (list, tuple)) or not callable(getattr(ds, "__len__", None)) \
            or not callable(getattr(ds, "__getitem__", None)):
        raise TrainingError(f"{what} returned {type(ds).__name__}, expected a dataset (a torch Dataset or any object "
                            f"with __len__ and __getitem__ taking a LongTensor of positions)")
    return ds


def json_state(name: str, method: Any) -> Any:
    """A training method's ``state_dict()``, checked to be JSON as checkpoints store it: a NumPy
    integer in it failed the first checkpoint with "Object of type int64 is not JSON
    serializable", naming no method."""
    state = method.state_dict()
    try:
        json.dumps(state)
    except (TypeError, ValueError) as e:
        raise TrainingError(f"training method {name!r}: state_dict() must return JSON data (dicts, lists, "
                            f"str, int, float, bool, None) for the checkpoints; {e}") from None
    return state


def check_model_protocol(model: Any, name: str) -> None:
    """What every model must have (docs/plugins.md), checked once it is built: a missing ``act``
    was found only after a whole epoch had trained, when validation first asked for actions."""
    missing = [] if hasattr(model, "network") else ["network"]
    missing += [m for m in ("loss",) if not callable(getattr(model, m, None))]
    if not callable(getattr(model, "rollout", None)) and not callable(getattr(model, "dataset", None)):
        missing.append("dataset (or rollout, for online RL)")
    if not callable(getattr(model, "act", None)) and not callable(getattr(model, "act_sequence", None)):
        missing.append("act (or act_sequence)")
    if missing:
        raise TrainingError(f"model {name!r}: its factory returned a {type(model).__name__} without "
                            f"{', '.join(missing)}, which every model needs (docs/plugins.md)")


def checked_loss(result: Any, model: str) -> tuple[Any, Any]:
    """A model's ``loss`` return: ``(loss, logs)``, the loss a one-element tensor. A bare tensor
    failed with "iteration over a 0-d tensor", naming nothing. Structure and shape only, so the
    check traces into a compiled or recorded loss without a break."""
    import torch

    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping)):
        raise TrainingError(f"model {model!r}: loss must return (loss tensor, dict of values to log), got "
                            f"{type(result).__name__}")
    loss, logs = result
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TrainingError(f"model {model!r}: loss must return a one-element tensor as its loss, got {shape}")
    return loss, logs


def checked_term(value: Any, method: str, term: str) -> Any:
    """A training method's ``loss_terms`` value: a one-element tensor or a number. A vector
    failed in backward with "grad can be implicitly created only for scalar outputs"."""
    import torch

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value
    if not isinstance(value, torch.Tensor) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
    raise TrainingError(f"training method {method!r}: loss_terms[{term!r}] must be a one-element tensor, got {shape}")


__all__ = ["check_model_protocol", "checked_dataset", "checked_loss", "checked_term", "json_state"]
