"""tensorboard: scalars for TensorBoard in ``<run_dir>/tensorboard`` (needs the ``tensorboard``
extra: ``pip install 'himari[tensorboard]'``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.plugin.api import ConfigError
from himari.plugin.api import TrackerSpec, hookimpl


@dataclass(frozen=True)
class TensorBoardConfig:
    subdir: str = "tensorboard"
    """Event-file directory inside the run directory."""


class TensorBoardTracker:
    """Scalars through torch's ``SummaryWriter``. A resumed run purges the steps after its
    checkpoint (``purge_step``): TensorBoard drops the events that the interrupted run logged
    past it, so every step appears once."""

    def __init__(self, config: TensorBoardConfig) -> None:
        self.config = config
        try:
            import tensorboard  # noqa: F401 - torch's writer needs it, even where torch.utils.tensorboard imported
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tracker 'tensorboard' needs the tensorboard package: "
                              "pip install 'himari[tensorboard]'") from None
        self._writer_cls = SummaryWriter
        self._writer: Any = None

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None:
        purge = int(resume["step"]) + 1 if resume else None
        self._writer = self._writer_cls(log_dir=str(Path(run_dir) / self.config.subdir), purge_step=purge)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self._writer.add_scalar(k, v, step)

    def finish(self, summary: dict[str, Any]) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@hookimpl
def himari_register_trackers(registry: Any) -> None:
    registry.add(TrackerSpec(name="tensorboard", summary="TensorBoard scalars in the run directory",
                             config=TensorBoardConfig, factory=TensorBoardTracker, extras=("tensorboard",)))
