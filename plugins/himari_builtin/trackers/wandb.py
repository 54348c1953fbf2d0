"""wandb: Weights & Biases logging (needs the ``wandb`` extra: ``pip install 'himari[wandb]'``).

Runs offline (files under ``<run_dir>/wandb``, ``wandb sync`` uploads them later) unless an API
key is configured (``WANDB_API_KEY``, or ``wandb login`` wrote one), ``WANDB_MODE`` is set, or
``mode`` says otherwise. Each himari run is one W&B run: its id is kept in
``<run_dir>/wandb/himari-run-id``, so ``himari train --resume`` continues the same W&B run
(offline too: the resumed part is a second offline directory with the same run id, and
``wandb sync`` of both makes one run).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from himari.plugin.api import ConfigError
from himari.plugin.api import TrackerSpec, hookimpl

MODES = ("auto", "online", "offline", "disabled")
ID_FILE = Path("wandb") / "himari-run-id"
"""Where the W&B run id of a himari run is kept, inside the run directory."""


@dataclass(frozen=True)
class WandbConfig:
    project: str = "himari"
    """W&B project name."""
    mode: str = "auto"
    """auto (WANDB_MODE if set, else online only with an API key), online, offline or disabled."""
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


def run_id(run_dir: Path, resume: bool) -> str:
    """The W&B run id of ``run_dir``: the kept one when resuming (a run started without this
    tracker gets a new one), else a new random id, written atomically."""
    from himari.plugin.api import write_text_atomic

    path = run_dir / ID_FILE
    if resume and path.is_file():
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept
    new = secrets.token_hex(8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, new + "\n")
    return new


class WandbTracker:
    def __init__(self, config: WandbConfig) -> None:
        if config.mode not in MODES:
            raise ConfigError(f"plugins.wandb.mode: expected {', '.join(MODES[:-1])} or {MODES[-1]}, "
                              f"got {config.mode!r}")
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracker 'wandb' needs the wandb package: pip install 'himari[wandb]'") from None
        self.config = config
        self._wandb = wandb
        self._run: Any = None

    def _mode(self) -> str | None:
        """The mode to pass to ``wandb.init``; None leaves it to ``WANDB_MODE``."""
        if self.config.mode != "auto":
            return self.config.mode
        if os.environ.get("WANDB_MODE"):
            return None
        return "online" if _has_api_key() else "offline"

    def start(self, run_dir: Any, config: dict[str, Any], resume: dict[str, Any] | None) -> None:
        run_dir = Path(run_dir)
        self._run = self._wandb.init(project=self.config.project, entity=self.config.entity or None,
                                     dir=str(run_dir), config=config, mode=self._mode(), name=run_dir.name,
                                     id=run_id(run_dir, resume is not None), resume="allow")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the run: failed (exit code 1) when the training stopped on an error."""
        if self._run is None:
            return
        run, self._run = self._run, None
        if "error" in summary:
            run.finish(exit_code=1)
            return
        run.summary["best_validation_sharpe"] = summary.get("best_validation_sharpe")
        run.finish()


@hookimpl
def himari_register_trackers(registry: Any) -> None:
    registry.add(TrackerSpec(name="wandb", summary="Weights & Biases (offline unless an API key is configured)",
                             config=WandbConfig, factory=WandbTracker, extras=("wandb",)))
