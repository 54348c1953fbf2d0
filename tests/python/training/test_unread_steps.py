"""The epoch loop reads a replayed step's logs later than it launches the step
(``train.cuda_graph``: the host queues steps while the GPU runs earlier ones). Checked on the CPU
with a stand-in for the replayed step that does the eager step at launch, as a replay's kernels
are queued at launch, and hands its logs over only when the loop reads them: the run must be the
run of a loop that reads every step, checkpoint for checkpoint and record for record."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from himari.training import loop
from himari.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
from conformance import tiny_run  # type: ignore[import-not-found]


class LaunchNowReadLater:
    """``GraphedStep.launch`` on the CPU: the step runs when launched; the logs come with the
    reader. Counts how many launched steps were unread at most."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.launched = self.read = self.most_unread = 0

    def launch(self, batch: Any) -> Any:
        logs = loop.train_step(self.trainer, batch)
        self.launched += 1
        self.most_unread = max(self.most_unread, self.launched - self.read)

        def read() -> dict[str, float]:
            self.read += 1
            return logs

        return read


def _weights_digest(trainer: Trainer) -> str:
    h = hashlib.sha256()
    for v in trainer.model.network.state_dict().values():
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


# 2 epochs of 23 steps, a checkpoint every 7 and a record every 4: the reads (every 5 steps)
# fall between checkpoints, across them and across the epoch's end
SETS = ["train.epochs=2", "train.max_steps_per_epoch=23", "train.checkpoint_every=7", "train.log_every=4",
        "train.patience=0", "train.batch_size=32"]


def _run(small_prepared: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch,
         launch_later: bool) -> tuple[list[tuple], list[dict], LaunchNowReadLater | None]:
    """The run's checkpoints (step, batch, running loss and the weights they hold) and its
    records (metrics.jsonl, wall-clock fields dropped)."""
    saves: list[tuple] = []
    stand_in: list[LaunchNowReadLater] = []
    original_save, original_setup = Trainer.save, Trainer._setup

    def save(self: Trainer, which: Path) -> None:
        st = self.state
        saves.append((which.name, st["epoch"], st["step"], st["batch"], st["loss_sum"], _weights_digest(self)))
        original_save(self, which)

    def setup(self: Trainer) -> None:
        original_setup(self)
        if launch_later:
            stand_in.append(LaunchNowReadLater(self))
            self.graph_step = stand_in[0]

    monkeypatch.setattr(Trainer, "save", save)
    monkeypatch.setattr(Trainer, "_setup", setup)
    monkeypatch.setattr(loop, "READ_EVERY", 5)
    tiny_run("baseline-mlp", small_prepared, run_dir, sets=SETS)
    monkeypatch.undo()
    records = [{k: v for k, v in json.loads(line).items() if "time" not in k and "second" not in k}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return saves, records, (stand_in[0] if stand_in else None)


def test_steps_read_later_make_the_run_of_steps_read_at_once(small_prepared: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong loops this catches: a checkpoint written with steps still unread (its step counter
    behind its weights), a batch index that ignores the unread steps (a batch trained twice),
    steps left unread at the epoch's end (the epoch's score before its last steps are counted),
    readers called out of order (records in another order). And the stand-in must have been
    left unread for ``READ_EVERY`` steps at a time, or the test checks nothing."""
    want_saves, want_records, _ = _run(small_prepared, tmp_path / "at-once", monkeypatch, launch_later=False)
    saves, records, stand_in = _run(small_prepared, tmp_path / "later", monkeypatch, launch_later=True)
    assert stand_in is not None and stand_in.launched == 46 and stand_in.read == 46
    assert stand_in.most_unread == 5
    assert [s[:4] for s in want_saves if s[0] == "last.pt"][:3] == [("last.pt", 0, 7, 7), ("last.pt", 0, 14, 14),
                                                                   ("last.pt", 0, 21, 21)]
    assert saves == want_saves
    assert len(records) == len(want_records) > 10
    assert records == want_records
    a = torch.load(tmp_path / "at-once" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(tmp_path / "later" / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    for k, v in a["network"].items():
        assert torch.equal(b["network"][k], v), k
