"""The wheel tools: the checker refuses each way a wheel can be broken, the local-label rewrite
yields a wheel pip installs with the labelled version.

The real wheel is built, checked and installed in a fresh venv by `make test-wheel` (part of
`make test`); these tests feed the checker hand-made wheels so that each defect is seen alone.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ROOT / "tools"

pytest.importorskip("packaging", reason="the wheel tools need packaging")
pytest.importorskip("wheel", reason="the wheel tools need wheel (the test extra installs it)")


def load_tool(name: str) -> ModuleType:
    sys.path.insert(0, str(TOOLS))
    try:
        spec = importlib.util.spec_from_file_location(f"_himari_tools_{name}", TOOLS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(TOOLS))


check_wheel = load_tool("check_wheel")
wheel_label = load_tool("wheel_label")

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TAG = "cp311-cp311-manylinux_2_28_x86_64"
CORE = "himari/_core.cpython-311-x86_64-linux-gnu.so"


def make_wheel(tmp: Path, *, tag: str = TAG, version: str | None = None, drop: str | None = None,
               core: bytes = b"\x7fELF native module, CUDA not compiled", entry_drop: str | None = None,
               dependencies: list[str] | None = None, extra_blob: int = 0) -> Path:
    """A wheel with every shipped file of this checkout (optionally without ``drop``), a stand-in
    native module and dist-info generated from pyproject.toml (optionally altered)."""
    version = version or PROJECT["version"]
    path = tmp / f"himari-{version}-{tag}.whl"
    info = f"himari-{version}.dist-info/"
    plugins = {k: v for k, v in PROJECT["entry-points"]["himari"].items() if k != entry_drop}
    entry = "[console_scripts]\nhimari = himari.cli:main\n\n[himari]\n" + "".join(
        f"{k} = {v}\n" for k, v in plugins.items())
    deps = PROJECT["dependencies"] if dependencies is None else dependencies
    metadata = f"Metadata-Version: 2.1\nName: himari\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {d}\n" for d in deps)
    with zipfile.ZipFile(path, "w") as zf:
        for name in sorted(check_wheel.shipped_files(ROOT)):
            if name != drop:
                zf.writestr(name, b"# stand-in\n")
        zf.writestr(CORE, core)
        if extra_blob:
            import os

            zf.writestr("himari/blob.bin", os.urandom(extra_blob))
        zf.writestr(info + "METADATA", metadata)
        zf.writestr(info + "WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        zf.writestr(info + "entry_points.txt", entry)
        zf.writestr(info + "RECORD", "")
    return path


def failed(report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


def test_a_complete_wheel_passes_every_check(tmp_path: Path) -> None:
    report = check_wheel.check_wheel(make_wheel(tmp_path), cuda=False, run_auditwheel=False)
    assert failed(report) == set(), report.checks
    assert {c.name for c in report.checks} >= {"size", "native module", "package files", "plugin entry points",
                                               "console script", "metadata", "CPU build", "platform tag"}


def test_a_missing_plugin_module_is_named(tmp_path: Path) -> None:
    gone = "himari_builtin/models/cql/__init__.py"
    assert gone in check_wheel.shipped_files(ROOT)
    report = check_wheel.check_wheel(make_wheel(tmp_path, drop=gone), cuda=False, run_auditwheel=False)
    assert failed(report) == {"package files"}
    assert gone in next(c.detail for c in report.checks if c.name == "package files")


def test_a_non_python_package_file_counts_too(tmp_path: Path) -> None:
    """py.typed (and any data file) must ship: type checkers ignore a package without it."""
    report = check_wheel.check_wheel(make_wheel(tmp_path, drop="himari/py.typed"), cuda=False,
                                     run_auditwheel=False)
    assert failed(report) == {"package files"}


def test_a_missing_entry_point_fails(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, entry_drop="himari_builtin.models.cgdt")
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"plugin entry points"}


def test_an_unrepaired_linux_tag_fails(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, tag="cp311-cp311-linux_x86_64")
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"platform tag"}


def test_a_module_for_another_python_fails(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, tag="cp312-cp312-manylinux_2_28_x86_64")
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"native module"}


def test_dependencies_must_equal_pyproject(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, dependencies=PROJECT["dependencies"][:-1])
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"metadata"}


def test_the_cpu_budget_is_five_megabytes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, extra_blob=5_200_000)  # random bytes do not compress
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"size"}


def test_cuda_code_in_the_cpu_wheel_fails(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, core=b"\x7fELF CUDA 13.0 (architectures 80-real 90) compiled")
    assert failed(check_wheel.check_wheel(wheel, cuda=False, run_auditwheel=False)) == {"CPU build"}


def test_a_cuda_wheel_needs_its_label_and_architectures(tmp_path: Path) -> None:
    core = b"\x7fELF CUDA 13.0 (architectures 80-real 90) compiled"
    labelled = make_wheel(tmp_path, version=f"{PROJECT['version']}+cu130", core=core)
    report = check_wheel.check_wheel(labelled, run_auditwheel=False)  # flavour inferred from +cu130
    assert failed(report) == set()
    assert "80-real 90" in next(c.detail for c in report.checks if c.name == "CUDA build")
    (tmp_path / "b").mkdir()
    unlabelled = make_wheel(tmp_path / "b", core=core)
    assert failed(check_wheel.check_wheel(unlabelled, cuda=True, run_auditwheel=False)) == {"CUDA build"}


def test_entry_points_parser_keeps_dotted_names() -> None:
    text = "[himari]\nhimari_builtin.models.cql = himari_builtin.models.cql\n\n[console_scripts]\nhimari = himari.cli:main\n"
    assert check_wheel.parse_entry_points(text) == {
        "himari": {"himari_builtin.models.cql": "himari_builtin.models.cql"},
        "console_scripts": {"himari": "himari.cli:main"},
    }


def _tiny_wheel(tmp: Path) -> Path:
    from wheel.wheelfile import WheelFile

    path = tmp / "tinypkg-1.2.0-py3-none-any.whl"
    with WheelFile(path, "w") as wf:
        wf.writestr("tinypkg/__init__.py", "VALUE = 7\n")
        wf.writestr("tinypkg-1.2.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.2.0\n")
        wf.writestr("tinypkg-1.2.0.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return path


def test_local_label_gives_an_installable_wheel_with_the_labelled_version(tmp_path: Path) -> None:
    from wheel.wheelfile import WheelFile

    labelled = wheel_label.add_local_label(_tiny_wheel(tmp_path), "cu130", tmp_path / "out")
    assert labelled.name == "tinypkg-1.2.0+cu130-py3-none-any.whl"
    with WheelFile(labelled) as wf:  # reading verifies every file against the new RECORD
        names = wf.namelist()
        assert "tinypkg-1.2.0+cu130.dist-info/RECORD" in names
        assert not any(n.startswith("tinypkg-1.2.0.dist-info/") for n in names)
        assert "Version: 1.2.0+cu130\n" in wf.read("tinypkg-1.2.0+cu130.dist-info/METADATA").decode()
        assert wf.read("tinypkg/__init__.py") == b"VALUE = 7\n"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(target), str(labelled)], check=True)
    code = ("import importlib.metadata as m, sys; sys.path.insert(0, sys.argv[1]); "
            "import tinypkg; print(m.version('tinypkg'), tinypkg.VALUE)")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1.2.0+cu130", "7"]


def test_local_label_refuses_a_second_label_and_bad_text(tmp_path: Path) -> None:
    labelled = wheel_label.add_local_label(_tiny_wheel(tmp_path), "cu130", tmp_path / "out")
    with pytest.raises(ValueError, match="already has a local version label"):
        wheel_label.add_local_label(labelled, "cu129", tmp_path / "again")
    with pytest.raises(ValueError, match="local version label"):
        wheel_label.add_local_label(_tiny_wheel(tmp_path), "cu 13", tmp_path / "bad")
