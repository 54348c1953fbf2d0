"""Build a himari wheel, repair it to the lowest manylinux tag its symbols allow, and check it.

    python tools/build_wheel.py                 # CPU wheel  -> dist/himari-X-cpXY-cpXY-manylinux_*.whl
    python tools/build_wheel.py --cuda          # CUDA wheel -> dist/himari-X+cu130-cpXY-...whl (needs nvcc)

The CPU wheel has no CUDA code at all (``HIMARI_ENABLE_CUDA=OFF``), so it is small and builds
anywhere. The CUDA wheel links the CUDA runtime statically (no CUDA toolkit needed where it is
installed, only the NVIDIA driver) and holds machine code for sm_80 and sm_90 plus sm_90 PTX for
newer GPUs. It carries a PEP 440 local version label, ``+cu130``, as PyTorch's CUDA wheels do:
the distribution is still ``himari``, so a third-party plugin that depends on ``himari`` is
satisfied by either wheel, and pip never installs both side by side (a separate ``himari-cuda``
distribution, CuPy's convention, would let pip install the CPU wheel next to it for such a plugin,
two copies writing the same files).

Nothing is left in ``--out`` unless the whole build, repair and check succeeded.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_wheel import check_wheel, print_report  # noqa: E402
from wheel_label import add_local_label  # noqa: E402

DEFAULT_CUDA_ARCHITECTURES = "80-real;90"


def cuda_label() -> str:
    """``cu130`` for nvcc 13.0: the CUDA release the wheel's runtime comes from."""
    nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not nvcc:
        raise SystemExit("--cuda: no nvcc on PATH (set CUDACXX or install the CUDA toolkit)")
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    if match is None:
        raise SystemExit(f"--cuda: cannot read the CUDA release from `{nvcc} --version`")
    return f"cu{match.group(1)}{match.group(2)}"


def build(work: Path, *, cuda: bool, isolation: bool, architectures: str) -> Path:
    """``python -m build --wheel`` with the CUDA backend forced on or off; returns the raw wheel."""
    env = dict(os.environ, HIMARI_ENABLE_CUDA="ON" if cuda else "OFF")
    flavour = "cuda" if cuda else "cpu"
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(work / "raw"),
           f"-Cbuild-dir=build/wheel-{flavour}/{{wheel_tag}}"]
    if cuda:
        cmd.append(f"-Ccmake.define.CMAKE_CUDA_ARCHITECTURES={architectures}")
    if not isolation:
        cmd.append("--no-isolation")
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    (wheel,) = (work / "raw").glob("himari-*.whl")
    return wheel


def repair(wheel: Path, work: Path) -> Path:
    """``auditwheel repair`` to the most compatible manylinux tag (its default, ``--plat auto``)."""
    if not sys.platform.startswith("linux"):
        return wheel
    out = work / "repaired"
    cmd = [sys.executable, "-m", "auditwheel", "repair", str(wheel), "-w", str(out)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    (repaired,) = out.glob("himari-*.whl")
    return repaired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuda", action="store_true", help="build the CUDA wheel (needs nvcc)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the wheel goes")
    parser.add_argument("--no-isolation", action="store_true",
                        help="build in this environment (scikit-build-core, pybind11 installed; no network)")
    parser.add_argument("--cuda-architectures", default=DEFAULT_CUDA_ARCHITECTURES,
                        help=f"CMAKE_CUDA_ARCHITECTURES of the CUDA wheel (default {DEFAULT_CUDA_ARCHITECTURES})")
    args = parser.parse_args(argv)

    label = cuda_label() if args.cuda else None
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheel-build-", dir=args.out) as tmp:
        work = Path(tmp)
        wheel = build(work, cuda=args.cuda, isolation=not args.no_isolation,
                      architectures=args.cuda_architectures)
        if label is not None:
            wheel = add_local_label(wheel, label, work / "labelled")
        wheel = repair(wheel, work)
        report = check_wheel(wheel, cuda=args.cuda)
        print_report(report)
        if not report.ok:
            return 1
        final = args.out / wheel.name
        os.replace(wheel, final)
    print(f"wheel: {final}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
