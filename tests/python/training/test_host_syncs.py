"""A training step reads the device back twice: once for its loss and every log, once for the
gradient norm. Each read of a CUDA tensor waits for the GPU to finish what is queued, which for
small, launch-bound networks is a large part of a step; a step used to read about ten times."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from himari.training import loop
from himari.training.loop import host_floats

READS = ("__float__", "__int__", "__index__", "__bool__", "item", "tolist")


def test_host_floats_gives_what_float_gives() -> None:
    values = {"a": torch.tensor(0.1), "b": 2, "c": torch.tensor(1.5, dtype=torch.bfloat16),
              "d": torch.tensor([3.25], dtype=torch.float16), ("part", 1): 0.5, "e": torch.tensor(7, dtype=torch.int64)}
    out = host_floats(values)
    assert list(out) == list(values)
    assert out == {"a": 0.10000000149011612, "b": 2.0, "c": 1.5, "d": 3.25, ("part", 1): 0.5, "e": 7.0}
    assert all(type(v) is float for v in out.values())
    assert host_floats({}) == {}


@pytest.mark.parametrize("model", ["baseline-mlp", "cql", "cgdt", "ppo-lstm"])
def test_a_step_reads_the_device_twice(model: str, small_prepared: Path, tmp_path: Path, monkeypatch) -> None:
    """Reads of a tensor's value made by himari's code (not torch's own, such as the optimiser's
    CPU step counters) inside ``train_step``: one ``tolist`` (the loss and the logs together)
    and one ``float`` (the gradient norm) per step, for an offline, two offline-RL and an
    online-RL model. cgdt's first step runs its critic's pre-training phase (a loop of its own,
    which reads its losses), so its steps are counted from the second."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builtin"))
    from conformance import TINY_MODEL, TINY_ONLINE, tiny_run  # type: ignore[import-not-found]

    torch_dir = str(Path(torch.__file__).parent)
    per_step: list[Counter[str]] = []
    inside = [False]
    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            if inside[0] and not sys._getframe(1).f_code.co_filename.startswith(torch_dir):
                per_step[-1][name] += 1
            return original(self, *args, **kwargs)

        return counted

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    original = loop.train_step

    def counting_step(*args, **kwargs):
        inside[0] = True
        per_step.append(Counter())
        try:
            return original(*args, **kwargs)
        finally:
            inside[0] = False

    from himari.training import online

    monkeypatch.setattr(loop, "train_step", counting_step)
    monkeypatch.setattr(online, "train_step", counting_step)  # the online-RL loop's update
    sets = [*(TINY_ONLINE(model) if model == "ppo-lstm" else []), *TINY_MODEL.get(model, [])]
    tiny_run(model, small_prepared, tmp_path / "run", sets=sets)
    counted = per_step[1:] if model == "cgdt" else per_step
    assert len(counted) >= 5
    # ppo-lstm reads once more: where episodes start in the minibatch, which decides where its
    # LSTM is cut (control flow on the host, one tolist).
    reads = 2 if model == "ppo-lstm" else 1
    assert [dict(c) for c in counted] == [{"tolist": reads, "__float__": 1}] * len(counted)
