"""BaselineMLP: a small supervised classifier of the next action from one bar's 60 features.

Linear(60, 128) + BatchNorm + ReLU + Dropout, Linear(128, 64) + BatchNorm + ReLU + Dropout,
Linear(64, 3): 16,643 parameters at 60 features. It predicts the label of the row (SELL, HOLD,
BUY from the forward return measured from the next open) and acts on the arg-max. It is the
reference every later model must beat, and the model that proves the plugin and training
machinery end to end. Features are z-scored with train-split statistics (the ``zscore``
preprocessor, its default).

Losses: ``cross-entropy``; ``class-weighted`` (inverse class frequency of the train labels, so
the 73% HOLD majority of the default labels does not swamp the rare BUY/SELL classes); and
``focal`` (Lin et al. 2017, "Focal Loss for Dense Object Detection": down-weights examples the
model already gets right, with ``focal_gamma``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from himari.plugin.api import ModelSpec, ParamCount, hookimpl


@dataclass(frozen=True)
class BaselineMLPConfig:
    hidden_sizes: tuple[int, ...] = (128, 64)
    """Width of each hidden layer (Linear + BatchNorm + ReLU + Dropout)."""
    dropout: float = 0.1
    """Dropout probability after each hidden layer."""
    loss: Literal["cross-entropy", "class-weighted", "focal"] = "class-weighted"
    """cross-entropy, class-weighted (inverse train class frequency) or focal."""
    focal_gamma: float = 2.0
    """Focusing exponent of the focal loss (0 gives cross-entropy)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy losses."""
    eval_batch_size: int = 16384
    """Rows per forward pass when acting."""

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive widths, got {self.hidden_sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.focal_gamma < 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("focal_gamma must be >= 0 and label_smoothing in [0, 1)")


def parameter_count(config: BaselineMLPConfig, n_features: int) -> ParamCount:
    """Weights and biases of each Linear plus the BatchNorm scale and shift (running statistics
    are buffers, not parameters)."""
    total, width = 0, n_features
    for h in config.hidden_sizes:
        total += width * h + h + 2 * h
        width = h
    total += width * 3 + 3
    return ParamCount(total, total)


class BaselineMLP:
    """The model plugin instance (see ``himari.plugin.api.Model`` for the lifecycle)."""

    paradigm = "supervised"

    def __init__(self, config: BaselineMLPConfig, ctx: Any) -> None:
        import torch
        from torch import nn

        self.config = config
        self.n_actions = ctx.n_actions
        layers: list[nn.Module] = []
        width = ctx.n_features
        for h in config.hidden_sizes:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        layers.append(nn.Linear(width, ctx.n_actions))
        self.network = nn.Sequential(*layers)
        counts = torch.tensor(ctx.class_counts, dtype=torch.float32).clamp(min=1.0)
        self.network.register_buffer("class_weight", counts.sum() / (len(counts) * counts))

    def dataset(self, ctx: Any, split: str) -> Any:
        """Labelled rows of the split: (preprocessed features [F], label)."""
        import numpy as np
        import torch
        from torch.utils.data import TensorDataset

        from himari.plugin.api import rows_of

        rows = rows_of(ctx.splits[split])
        rows = rows[np.asarray(ctx.labels)[rows] >= 0]
        x = torch.from_numpy(np.ascontiguousarray(ctx.features[rows], dtype=np.float32))
        y = torch.from_numpy(np.asarray(ctx.labels)[rows].astype(np.int64))
        return TensorDataset(x, y)

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, float]]:
        import torch.nn.functional as F

        x, y = batch
        logits = self.network(x).float()
        cfg = self.config
        if cfg.loss == "focal":
            logp = F.log_softmax(logits, dim=-1)
            logp_t = logp.gather(1, y[:, None])[:, 0]
            loss = (-(1.0 - logp_t.exp()) ** cfg.focal_gamma * logp_t).mean()
        else:
            weight = self.network.class_weight if cfg.loss == "class-weighted" else None
            loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=cfg.label_smoothing)
        accuracy = float((logits.argmax(-1) == y).float().mean())
        return loss, {"accuracy": accuracy}

    def action_logits(self, batch: Any) -> Any:
        """Logits of a training batch's rows (what confidence-penalty regularises)."""
        return self.network(batch[0])

    def act(self, features: Any, rows: Any) -> Any:
        """Arg-max action at each row, from that row's features only (causal by construction)."""
        import numpy as np
        import torch

        device = next(self.network.parameters()).device
        out = np.empty(len(rows), dtype=np.int8)
        step = self.config.eval_batch_size
        for start in range(0, len(rows), step):
            x = torch.from_numpy(np.ascontiguousarray(features[rows[start:start + step]], dtype=np.float32))
            out[start:start + step] = self.network(x.to(device)).argmax(-1).cpu().numpy()
        return out


def build(config: BaselineMLPConfig, ctx: Any) -> BaselineMLP:
    return BaselineMLP(config, ctx)


@hookimpl
def himari_register_models(registry: Any) -> None:
    registry.add(ModelSpec(
        name="baseline-mlp",
        summary="3-layer MLP classifier of the next action from one bar's features (the baseline)",
        config=BaselineMLPConfig,
        factory=build,
        paradigm="supervised",
        parameter_count=parameter_count,
        default_preprocess=("zscore",),
    ))
