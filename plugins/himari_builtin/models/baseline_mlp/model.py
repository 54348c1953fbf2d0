"""BaselineMLP, the model plugin instance: dataset, losses and acting (torch is imported lazily)."""

from __future__ import annotations

from typing import Any

from himari_builtin.models.baseline_mlp.config import BaselineMLPConfig


class BaselineMLP:
    """The model plugin instance (see ``himari.plugin.api.Model`` for the lifecycle)."""

    paradigm = "supervised"
    cuda_graph_safe = True  # loss: no host reads, no Python state (train.cuda_graph)

    def __init__(self, config: BaselineMLPConfig, ctx: Any) -> None:
        from himari_builtin.models.baseline_mlp.network import build_network

        self.config = config
        self.n_actions = ctx.n_actions
        self.network = build_network(config, ctx.n_features, ctx.n_actions, ctx.class_counts)

    def init_roles(self) -> dict[str, str]:
        """For ``orthogonal-init``: the last Linear gives the action logits (the policy head);
        the hidden Linears are ``hidden`` by default, BatchNorm keeps its own initialisation."""
        return {str(len(self.network) - 1): "policy"}

    def dataset(self, ctx: Any, split: str) -> Any:
        """Labelled rows of the split: (preprocessed features [F], label, prepared row); the train
        split also gets the synthetic rows of ``himari train --augment`` (``ctx.synthetic``, prepared
        row -1)."""
        import numpy as np
        import torch
        from torch.utils.data import TensorDataset

        from himari.plugin.api import rows_of

        rows = rows_of(ctx.splits[split])
        rows = rows[np.asarray(ctx.labels)[rows] >= 0]
        x = np.ascontiguousarray(ctx.features[rows], dtype=np.float32)
        y = np.asarray(ctx.labels)[rows].astype(np.int64)
        r = rows.astype(np.int64)
        synthetic = getattr(ctx, "synthetic", None)
        if split == "train" and synthetic is not None:  # himari train --augment: train rows only
            x = np.concatenate([x, synthetic.features.astype(np.float32)])
            y = np.concatenate([y, synthetic.labels.astype(np.int64)])
            r = np.concatenate([r, np.full(len(synthetic.labels), -1, dtype=np.int64)])
        ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(r))
        ds.example_rows = r  # type: ignore[attr-defined]  # the row of each example (curricula)
        return ds

    def loss(self, batch: Any, ctx: Any) -> tuple[Any, dict[str, Any]]:
        import torch.nn.functional as F

        x, y = batch[0], batch[1]
        logits = self.network(x).float()
        cfg = self.config
        if cfg.loss == "focal":
            logp = F.log_softmax(logits, dim=-1)
            logp_t = logp.gather(1, y[:, None])[:, 0]
            loss = (-(1.0 - logp_t.exp()) ** cfg.focal_gamma * logp_t).mean()
        else:
            weight = self.network.class_weight if cfg.loss == "class-weighted" else None
            loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=cfg.label_smoothing)
        accuracy = (logits.argmax(-1) == y).float().mean().detach()  # copied to the host with the step's loss
        return loss, {"accuracy": accuracy}

    def action_logits(self, batch: Any) -> Any:
        """Logits of a training batch's rows (what confidence-penalty regularises)."""
        return self.network(batch[0])

    def trunk_size(self) -> int:
        """Width of the last hidden layer (the input of the action layer)."""
        return int(self.network[-1].in_features)

    def trunk(self, batch: Any) -> tuple[Any, Any]:
        """The last hidden layer's output for each row of a training batch (what the action
        layer reads), and the rows' prepared rows. BatchNorm layers normalise with the batch's
        statistics in training mode as in ``loss``, but their running statistics are left as the
        ``loss`` pass set them (this second pass must not count the batch twice)."""
        from torch import nn

        x = batch[0]
        norms = [m for m in self.network if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
        try:
            for m in norms:
                m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
            h = self.network[:-1](x)
        finally:
            for m, (momentum, tracked) in zip(norms, saved):
                m.momentum = momentum
                m.num_batches_tracked.copy_(tracked)
        return h, batch[2]

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

    def action_probabilities(self, features: Any, rows: Any) -> Any:
        """Softmax of the logits at each row (the execution rules' confidence threshold reads
        the top one): ``[len(rows), 3]`` float64, the same network pass as ``act``."""
        import numpy as np
        import torch

        device = next(self.network.parameters()).device
        out = np.empty((len(rows), self.n_actions), dtype=np.float64)
        step = self.config.eval_batch_size
        for start in range(0, len(rows), step):
            x = torch.from_numpy(np.ascontiguousarray(features[rows[start:start + step]], dtype=np.float32))
            out[start:start + step] = torch.softmax(self.network(x.to(device)).float(), -1).cpu().numpy()
        return out
