"""Checkpoints: atomic writes, safe loading, clear errors for corrupt or foreign files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from himari.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class NotData:
    """A class a weights_only load must refuse to instantiate."""


def test_round_trip(tmp_path) -> None:
    p = save_checkpoint(tmp_path / "c" / "last.pt", {"model": "m", "network": {"w": torch.ones(3)}, "n": 1})
    out = load_checkpoint(p, model="m")
    assert torch.equal(out["network"]["w"], torch.ones(3)) and out["n"] == 1
    assert [f.name for f in p.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    p = save_checkpoint(tmp_path / "last.pt", {"model": "m", "v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(p, {"model": "m", "v": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["v"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_file(tmp_path) -> None:
    p = save_checkpoint(tmp_path / "last.pt", {"model": "m", "w": torch.zeros(1000)})
    p.write_bytes(p.read_bytes()[: 300])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(p)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_foreign_objects_are_refused(tmp_path) -> None:
    p = tmp_path / "evil.pt"
    torch.save({"format": "himari-checkpoint", "version": 1, "x": NotData()}, p)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(p)
    q = tmp_path / "plain.pkl"
    q.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(q)


def test_other_files_and_models(tmp_path) -> None:
    p = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, p)
    with pytest.raises(CheckpointError, match="not a himari checkpoint"):
        load_checkpoint(p)
    good = save_checkpoint(tmp_path / "m.pt", {"model": "baseline-mlp"})
    with pytest.raises(CheckpointError, match="model 'baseline-mlp', expected 'flag-trader'"):
        load_checkpoint(good, model="flag-trader")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
