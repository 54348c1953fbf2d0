"""The ``multi-task`` training method: auxiliary heads on the model's trunk (package docstring).

Hooks: ``model_built`` (build the heads, compute the targets), ``dataset`` (keep the validation
data of a dataset-trained model), ``loss_terms`` (the weighted auxiliary losses),
``before_optimizer_step`` (log the raw losses), ``epoch_end`` (validation MAE and correlation),
``after_training`` (the same for the best checkpoint on validation and test, in summary.json).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from himari_builtin.training.multi_task.config import NAME, MultiTaskConfig
from himari_builtin.training.multi_task.targets import TASKS, horizon_targets, intersect, standardise

DEFAULT_HORIZON = 5
"""Bars ahead when neither the config nor the data's labeler names a horizon."""


def resolve_horizon(config: MultiTaskConfig, data: Any) -> int:
    """``config.horizon``, else the labeler's ``horizon`` parameter, else ``DEFAULT_HORIZON``."""
    if config.horizon:
        return int(config.horizon)
    meta = getattr(data, "metadata", None) or {}
    value = (meta.get("labeler") or {}).get("params", {}).get("horizon")
    return int(value) if isinstance(value, int) and value >= 1 else DEFAULT_HORIZON


class MultiTask:
    real_market_only = True
    """The targets come from the real closes once, in ``model_built``: next to a method that
    trains on a counterfactual market (causal-augment, rare-events) the heads would learn the
    real future from counterfactual inputs, so that combination is refused."""

    def __init__(self, config: MultiTaskConfig) -> None:
        self.config = config
        weights = {"return": config.return_weight, "volatility": config.volatility_weight}
        self.tasks = tuple(t for t in TASKS if weights[t] > 0)
        self.weights = [float(weights[t]) for t in self.tasks]
        self.heads: Any = None
        self.model: Any = None
        self.horizon: int | None = None
        self.targets: dict[str, np.ndarray] = {}
        """Raw targets ``[N, k]`` of every prepared row per split, NaN outside the split."""
        self.val_ds: Any = None
        self._train_z: Any = None
        self._pending: list[list[float]] = []

    # ------------------------------------------------------------------ set-up

    def model_built(self, model: Any, ctx: Any) -> dict[str, Any]:
        import torch

        from himari.plugin.api import ConfigError, contiguous_segments
        from himari_builtin.training.multi_task.heads import AuxiliaryHeads

        name = type(model).__name__
        for accessor in ("trunk", "trunk_size"):
            if not callable(getattr(model, accessor, None)):
                raise ConfigError(f"{NAME}: the model ({name}) has no {accessor}() accessor: it exposes no shared "
                                  f"trunk for auxiliary heads")
        self.model = model
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # the heads' initialisation leaves the run's streams alone
            torch.manual_seed((int(ctx.seed) * 1_000_003 + 0x4B4) % 2**63)
            self.heads = AuxiliaryHeads(int(model.trunk_size()), self.tasks, cfg.head_hidden, cfg.uncertainty,
                                        cfg.initial_log_variance)
        if ctx.data is None:  # a restored run: the trained heads and their statistics are loaded next
            return {"heads": self.heads}
        self.horizon = resolve_horizon(cfg, ctx.data)
        runs = contiguous_segments(ctx.data)
        close = np.asarray(ctx.data.close)
        cols = [TASKS.index(t) for t in self.tasks]
        for split in ("train", "validation", "test"):
            ranges = intersect([(int(a), int(b)) for a, b in ctx.splits.get(split, [])], runs)
            self.targets[split] = horizon_targets(close, ranges, self.horizon)[:, cols]
        train = self.targets["train"]
        defined = int(np.isfinite(train).all(axis=1).sum())
        if defined < 2:
            raise ConfigError(f"{NAME}: horizon {self.horizon} leaves {defined} train rows with defined targets "
                              f"(every train range is at most {self.horizon} bars long); lower multi-task.horizon")
        mean, std = standardise(train)
        with torch.no_grad():
            self.heads.mean.copy_(torch.from_numpy(mean))
            self.heads.std.copy_(torch.from_numpy(std))
        self._train_z = torch.from_numpy(((train - mean) / std).astype(np.float32))
        return {"heads": self.heads}

    def dataset(self, dataset: Any, ctx: Any, split: str) -> Any:
        if split == "validation":
            self.val_ds = dataset
        return dataset

    # ------------------------------------------------------------------ training

    def _targets_on(self, device: Any) -> Any:
        if self._train_z.device != device:
            self._train_z = self._train_z.to(device)
        return self._train_z

    def loss_terms(self, model: Any, batch: Any, ctx: Any) -> dict[str, Any]:
        """Each task's weighted loss on the trunk of this batch: ``w_i L_i``, or with uncertainty
        weighting ``w_i (exp(-s_i) L_i + s_i)``; ``L_i`` the mean squared error of the
        standardised target over the batch's decisions with a defined train target."""
        import torch

        from himari_builtin.training.multi_task.heads import masked_mse, uncertainty_weighted

        h, rows = model.trunk(batch)
        pred = self.heads(h)
        table = self._targets_on(pred.device)
        rows = rows.to(pred.device).long()
        z = table[rows.clamp(min=0)]
        valid = (rows >= 0)[..., None] & torch.isfinite(z)
        losses = torch.stack([masked_mse(pred[..., i], z[..., i], valid[..., i]) for i in range(len(self.tasks))])
        weights = torch.tensor(self.weights, device=pred.device)
        log_var = self.heads.log_var
        terms = weights * (uncertainty_weighted(losses, log_var) if log_var is not None else losses)
        pending = [float(x) for x in losses.detach()]
        if log_var is not None:
            pending += [float(x) for x in log_var.detach()]
        self._pending.append(pending)
        return {task: terms[i] for i, task in enumerate(self.tasks)}

    def before_optimizer_step(self, model: Any, optimizer: Any, ctx: Any) -> dict[str, float]:
        """The step's raw losses (mean over its micro-batches) and log-variances, for the logs."""
        if not self._pending:
            return {}
        mean = np.mean(np.asarray(self._pending, dtype=np.float64), axis=0)
        self._pending = []
        out = {f"{t}_mse": float(mean[i]) for i, t in enumerate(self.tasks)}
        if len(mean) > len(self.tasks):
            out.update({f"{t}_log_var": float(mean[len(self.tasks) + i]) for i, t in enumerate(self.tasks)})
        return out

    # ------------------------------------------------------------------ reports

    def _predict(self, split: str, ctx: Any, dataset: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Standardised predictions ``[m, k]`` and their prepared rows on ``split``: on the
        model's data of the split (a dataset-trained model) or along the policy's own path
        through it (``trunk_sequence``); None when the model offers neither."""
        import torch

        from himari.plugin.api import rows_of, to_device

        model, device = self.model, ctx.device
        preds, rows = [], []
        if dataset is not None:
            bs = 4096
            for start in range(0, len(dataset), bs):
                batch = to_device(dataset[torch.arange(start, min(start + bs, len(dataset)))], device)
                h, r = model.trunk(batch)
                preds.append(self.heads(h).reshape(-1, len(self.tasks)).float().cpu().numpy())
                rows.append(r.reshape(-1).cpu().numpy())
        elif callable(getattr(model, "trunk_sequence", None)):
            ranges = [(int(a), int(b)) for a, b in ctx.splits[split]]
            h = np.asarray(model.trunk_sequence(ctx.features, ctx.data.open, ctx.data.close, ranges, ctx.env))
            r = rows_of(ranges)
            keep = np.isfinite(h).all(axis=1) if h.size else np.zeros(len(r), dtype=bool)
            if keep.any():
                out = self.heads(torch.from_numpy(h[keep]).to(device))
                preds.append(out.float().cpu().numpy())
                rows.append(r[keep])
        else:
            return None
        if not preds:
            return np.zeros((0, len(self.tasks))), np.zeros(0, dtype=np.int64)
        return np.concatenate(preds), np.concatenate(rows).astype(np.int64)

    def report(self, split: str, ctx: Any, dataset: Any = None) -> dict[str, float]:
        """Per task on ``split``: MAE of the prediction in the target's units, its Pearson
        correlation with the realised target, and the standardised squared error (the training
        loss) over the rows with a defined target; and how many rows that was."""
        from himari_builtin.training.multi_task.heads import pearson

        got = self._predict(split, ctx, dataset)
        if got is None:
            return {}
        pred, rows = got
        mean = self.heads.mean.cpu().numpy()
        std = self.heads.std.cpu().numpy()
        y = self.targets[split][rows] if len(rows) else np.zeros((0, len(self.tasks)))
        y = np.where((rows >= 0)[:, None], y, np.nan)
        out: dict[str, float] = {}
        for i, task in enumerate(self.tasks):
            ok = np.isfinite(y[:, i]) & np.isfinite(pred[:, i])
            p = pred[ok, i].astype(np.float64) * std[i] + mean[i]
            t = y[ok, i]
            out[f"{task}_mae"] = float(np.mean(np.abs(p - t))) if ok.any() else float("nan")
            out[f"{task}_corr"] = pearson(p, t)
            out[f"{task}_loss"] = float(np.mean(((t - mean[i]) / std[i] - pred[ok, i]) ** 2)) if ok.any() \
                else float("nan")
            out["rows"] = float(ok.sum())
        return out

    def epoch_end(self, epoch: int, ctx: Any) -> dict[str, float] | None:
        if not self.config.validate:
            return None
        return self.report("validation", ctx, self.val_ds) or None

    def after_training(self, policy: Any, ctx: Any) -> dict[str, Any]:
        """The best checkpoint's heads on validation and test (``summary.json``)."""
        import torch

        from himari.plugin.api import observation_filter

        out: dict[str, Any] = {"horizon": self.horizon, "tasks": list(self.tasks),
                               "uncertainty": self.config.uncertainty}
        if self.heads.log_var is not None:
            out["log_var"] = {t: float(v) for t, v in zip(self.tasks, self.heads.log_var.detach().cpu())}
        net = self.model.network
        was = net.training
        net.eval()
        self.heads.eval()
        try:
            with torch.no_grad(), observation_filter(ctx.observation_filter):
                for split in ("validation", "test"):
                    ds = None
                    if not callable(getattr(self.model, "rollout", None)):
                        ds = self.val_ds if split == "validation" else self.model.dataset(ctx, split)
                    out[split] = self.report(split, ctx, ds)
        finally:
            net.train(was)
            self.heads.train()
        return out
