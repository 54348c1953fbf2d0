"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_module(name: str, path: Path) -> None:
    """Make a helper file of the test tree importable by ``name`` (pytest runs with
    --import-mode=importlib, which does not put test directories on sys.path)."""
    import importlib.util
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]


_HERE = Path(__file__).parent
_load_module("himari_tests_tiny_models", _HERE / "tiny_models.py")  # a linear model for plugin tests
_load_module("himari_tests_conformance", _HERE / "builtin" / "conformance.py")  # the conformance harness


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked ``cuda`` pin CPU semantics (bit-equal actions after a reload, thread
    counts, exact resumes): on a machine with a GPU, ``--device auto`` would otherwise train them
    there and compare GPU numerics with CPU ones. They see no GPU, in this process (torch's
    ``cuda.is_available``) and in the ``himari`` subprocesses they start (``CUDA_VISIBLE_DEVICES``);
    the GPU paths are covered by the tests marked ``cuda``."""
    if request.node.get_closest_marker("cuda") is None:
        _hide_the_gpu(monkeypatch)


@pytest.fixture(scope="module", autouse=True)
def _cpu_module_unless_it_has_cuda_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """The same for a module's own module-scoped fixtures (a model trained once for its tests):
    pytest sets those up before any per-test fixture, so the one above came too late for them
    (cgdt's shared tiny run trained on the GPU and stopped on torch's non-determinism warning).
    A module with any test marked ``cuda`` keeps the GPU for its fixtures."""
    items = [i for i in request.session.items if i.getparent(pytest.Module) is request.node]
    if any(i.get_closest_marker("cuda") is not None for i in items):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        _hide_the_gpu(mp)
        yield


@pytest.fixture(autouse=True)
def _torch_determinism_reset() -> Iterator[None]:
    """No test inherits torch's deterministic mode from another: on a GPU attention's backward
    then warns, and warnings are errors here. ``Trainer.fit`` gives the mode back itself (tested
    in test_trainer.py); this also covers tests that call ``seed_everything`` directly."""
    yield
    try:
        import torch
    except ImportError:
        return
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = False


@pytest.fixture(scope="session")
def gpu_hider() -> Callable[[pytest.MonkeyPatch], None]:
    """The hiding above, for a module-scoped fixture of a module that also has ``cuda`` tests
    (the module keeps the GPU, but a model its CPU tests share must not train there)."""
    return _hide_the_gpu


_gpu_answers_settled = False


def _settle_gpu_answers(torch: Any) -> None:
    """Ask torch, once and with the GPU visible, what it then remembers for the whole process.
    Whether triton can compile for a GPU (``has_triton``) is cached on its first call: asked first
    by ``torch.compile`` in a CPU test, while the GPU is hidden, it said no, and every later GPU
    test that compiles failed (TritonMissing, or 'Invalid device id'). Starting CUDA here also
    lets the device count below be cached with the GPU counted."""
    global _gpu_answers_settled
    if _gpu_answers_settled:
        return
    _gpu_answers_settled = True
    if not torch.cuda.is_available():  # the real one: nothing is hidden before the first hiding
        return
    torch.cuda.init()
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # a torch without this private helper has no such cache
        return
    has_triton()


def _hide_the_gpu(mp: pytest.MonkeyPatch) -> None:
    try:
        import torch
    except ImportError:  # the wheel's engine tests run where only the wheel is installed
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        return
    _settle_gpu_answers(torch)
    if torch.cuda.is_initialized():
        # torch caches the device count on its first call after CUDA starts, and its own code
        # (manual_seed_all, behind every seed) calls the real function, not the stand-in below:
        # counted while CUDA_VISIBLE_DEVICES is empty, that cache would say 0 devices for the
        # rest of the process and the GPU tests after this one would find no GPU.
        torch.cuda.device_count()
    mp.setenv("CUDA_VISIBLE_DEVICES", "")
    mp.setattr(torch.cuda, "is_available", lambda: False)
    mp.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture(scope="session")
def small_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 synthetic 5-minute bars prepared with the default labels (about 3,000 train rows)."""
    from himari.data.pipeline import PrepareConfig, prepare
    from himari.data.synthetic import SynthConfig, load_synthetic

    out = tmp_path_factory.mktemp("prepared") / "small"
    prepare(load_synthetic(SynthConfig(bars=6000, seed=5)), out, PrepareConfig())
    return out
