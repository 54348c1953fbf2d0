"""Ray workers import the same ``himari`` as the command that started them.

``ray.init`` puts the driver's working directory first on every worker's ``sys.path``. Run from
a himari source checkout with the package installed (the README's own test command does
exactly this), the workers imported the checkout, which has no built core, and every trial
failed. A directory holding another ``himari`` stands in for that checkout here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="himari sweep needs ray: pip install 'himari[sweep]'")
pytest.importorskip("ray.tune", reason="himari sweep needs Ray Tune: pip install 'himari[sweep]'")

import himari  # noqa: E402
from himari.sweep.tune_run import ray_instance  # noqa: E402


def test_workers_import_the_drivers_himari_not_the_working_directorys(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    impostor = tmp_path / "himari"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("IMPOSTOR = True\n")
    monkeypatch.chdir(tmp_path)
    if ray.is_initialized():
        pytest.skip("another test left Ray connected in this process")

    @ray.remote(num_cpus=1)
    def where() -> tuple[str, bool]:
        import himari as h

        return h.__file__, bool(getattr(h, "IMPOSTOR", False))

    with ray_instance(None):
        worker_file, impostor_seen = ray.get(where.remote())
    assert not impostor_seen, f"a Ray worker imported {worker_file} from the working directory"
    assert Path(worker_file).resolve() == Path(himari.__file__).resolve()
    assert Path.cwd() == tmp_path  # the command's own working directory is left as it was
