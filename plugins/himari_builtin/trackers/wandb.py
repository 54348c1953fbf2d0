"""wandb: Weights & Biases logging (needs the ``wandb`` extra: ``pip install 'himari[wandb]'``).

Runs offline (files under ``<run_dir>/wandb``, ``wandb sync`` uploads them later) unless an API
key is configured (``WANDB_API_KEY``, or ``wandb login`` wrote one) or ``mode`` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.errors import ConfigError
from himari.plugin import TrackerSpec, hookimpl


@dataclass(frozen=True)
class WandbConfig:
    project: str = "himari"
    """W&B project name."""
    mode: str = "auto"
    """auto (online only with an API key), online, offline or disabled."""
    entity: str = ""
    """W&B entity (team or user); empty for the default."""


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False


class WandbTracker:
    def __init__(self, config: WandbConfig) -> None:
        if config.mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError(f"plugins.wandb.mode: expected auto, online, offline or disabled, got {config.mode!r}")
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracker 'wandb' needs the wandb package: pip install 'himari[wandb]'") from None
        self.config = config
        self._wandb = wandb
        self._run: Any = None

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None:
        mode = self.config.mode
        if mode == "auto":
            mode = "online" if _has_api_key() else "offline"
        self._run = self._wandb.init(project=self.config.project, entity=self.config.entity or None,
                                     dir=str(run_dir), config=config, mode=mode,
                                     name=Path(run_dir).name, resume="allow" if resume else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary["best_validation_sharpe"] = summary.get("best_validation_sharpe")
            self._run.finish()


@hookimpl
def himari_register_trackers(registry: Any) -> None:
    registry.add(TrackerSpec(name="wandb", summary="Weights & Biases (offline unless an API key is configured)",
                             config=WandbConfig, factory=WandbTracker, extras=("wandb",)))
