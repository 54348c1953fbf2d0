"""A linear classifier written as a third-party model plugin would write it (docs/writing-a-plugin.md),
for tests that need a model whose acting they control: subclass it and define ``act``.
Importable as ``himari_tests_tiny_models`` (tests/python/conftest.py)."""

from __future__ import annotations

from typing import Any


class LinearSupervised:
    """A linear layer trained by cross-entropy on the labelled rows of a split."""

    paradigm = "supervised"

    def __init__(self, config: Any, ctx: Any) -> None:
        import torch

        self.config = config
        self.network = torch.nn.Linear(ctx.n_features, 3)

    def dataset(self, ctx: Any, split: str) -> Any:
        import torch
        from torch.utils.data import TensorDataset

        from himari.data.splits import rows_of

        rows = rows_of(ctx.splits[split])
        rows = rows[ctx.labels[rows] >= 0]
        return TensorDataset(torch.from_numpy(ctx.features[rows]), torch.from_numpy(ctx.labels[rows].astype("int64")))

    def loss(self, batch: Any, ctx: Any) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(self.network(batch[0]), batch[1]), {}


def plugins_with_model(name: str, factory: Any, config: type, summary: str = "a test model") -> Any:
    """The installed plugins plus a model ``name`` built by ``factory``, registered through the
    plugin hook as a third-party package would register it."""
    from himari.plugin import ModelSpec, hookimpl
    from himari.plugin.manager import build_plugins

    class Plugin:
        @hookimpl
        def himari_register_models(self, registry: Any) -> None:
            registry.add(ModelSpec(name=name, summary=summary, config=config, factory=factory))

    plugins = build_plugins()
    plugins.register(Plugin(), name=f"{name}-plugin")
    return plugins
