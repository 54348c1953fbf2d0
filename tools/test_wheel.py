"""Install a built wheel into a fresh virtual environment outside the source tree and prove it works.

    python tools/test_wheel.py dist/himari-*.whl
    python tools/test_wheel.py dist/himari-*+cu130-*.whl --system-site-packages --cuda   # on a GPU machine

Steps (each must pass): create a venv in a temporary folder; ``pip install`` the wheel with its
dependencies (timed); check that ``import himari`` resolves inside that venv (not the source tree,
not another installed copy) and that its version is the wheel's; run ``himari demo``, ``himari
info`` and ``himari plugins list`` (every plugin of pyproject.toml's table is listed, none blocked);
then the engine tests of this checkout run against the installed wheel. Commands run with only the
venv's ``bin`` on PATH, so nothing can fall back to a compiler or a source build.

``--system-site-packages`` lets the venv see this interpreter's packages (torch, and the test
tools on a machine without network); the wheel is still installed into, and imported from, the venv.
The venv is removed afterwards whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.utils import parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_wheel import pyproject  # noqa: E402


class WheelTestFailed(RuntimeError):
    pass


def _head_and_tail(text: str, head: int = 3000, tail: int = 3000) -> str:
    """Both ends of a long error output: a crash dump names the failing frame first."""
    return text if len(text) <= head + tail else f"{text[:head]}\n[...]\n{text[-tail:]}"


def run(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 1800) -> str:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise WheelTestFailed(f"`{' '.join(str(c) for c in cmd)}` exited {proc.returncode}\n"
                              f"{proc.stdout[-4000:]}\n{_head_and_tail(proc.stderr)}")
    return proc.stdout


def see_parent_venv(venv: Path) -> None:
    """Make ``venv`` see this interpreter's packages when this interpreter is itself a venv.

    ``venv --system-site-packages`` exposes the *base* interpreter's site-packages, not those of
    the venv running this script (a GPU machine's PyTorch often lives in such a venv). A ``.pth``
    file listing them gives the same effect: pip counts them as installed, imports find them.
    """
    import site

    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(target, "_himari_wheel_test_parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")


def declared_plugins() -> set[str]:
    return set(pyproject(ROOT)["project"]["entry-points"]["himari"])


def test_wheel(wheel: Path, *, system_site: bool, cuda: bool, engine_tests: bool, keep: bool,
               find_links: Path | None = None) -> dict:
    wheel = wheel.resolve()
    _, version, _, _ = parse_wheel_filename(wheel.name)
    results: dict[str, object] = {"wheel": wheel.name}
    tmp = Path(tempfile.mkdtemp(prefix="himari-wheel-test-"))
    try:
        venv = tmp / "venv"
        cmd = [sys.executable, "-m", "venv", str(venv)] + (["--system-site-packages"] if system_site else [])
        run(cmd, env=dict(os.environ), cwd=tmp)
        if system_site and sys.prefix != sys.base_prefix:
            see_parent_venv(venv)
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        python = bindir / "python"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(PATH=str(bindir), VIRTUAL_ENV=str(venv), PYTHONSAFEPATH="1", HOME=env.get("HOME", str(tmp)))
        work = tmp / "work"
        work.mkdir()

        started = time.perf_counter()
        offline = ["--no-index", "--find-links", str(find_links.resolve())] if find_links else []
        run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *offline, str(wheel)],
            env=env, cwd=work)
        results["pip_install_s"] = round(time.perf_counter() - started, 2)

        where = json.loads(run([python, "-c", (
            "import json, himari, himari.engine as e; print(json.dumps({'file': himari.__file__, "
            "'version': himari.__version__, 'cuda_compiled': e.cuda_compiled(), "
            "'cuda_available': e.cuda_available(), 'reason': e.cuda_unavailable_reason()}))")],
            env=env, cwd=work).strip().splitlines()[-1])
        results["import"] = where
        if not Path(where["file"]).resolve().is_relative_to(venv.resolve()):
            raise WheelTestFailed(f"himari was imported from {where['file']}, not from the venv {venv}")
        if where["version"] != str(version):
            raise WheelTestFailed(f"installed version {where['version']} != the wheel's {version}")
        if where["cuda_compiled"] != cuda:
            raise WheelTestFailed(f"cuda_compiled() is {where['cuda_compiled']} in a {'CUDA' if cuda else 'CPU'} wheel")
        if not where["cuda_available"] and not where["reason"]:
            raise WheelTestFailed("cuda_available() is False but cuda_unavailable_reason() gives no reason")

        himari = bindir / "himari"
        started = time.perf_counter()
        run([himari, "demo", "--bars", "5000", "--random-strategies", "64"], env=env, cwd=work)
        results["demo_s"] = round(time.perf_counter() - started, 2)
        run([himari, "info"], env=env, cwd=work)
        listed = json.loads(run([himari, "plugins", "list", "--json"], env=env, cwd=work))
        plugins = {p["plugin"] for p in listed["plugins"]}
        missing = declared_plugins() - plugins
        if missing or listed.get("blocked"):
            raise WheelTestFailed(f"plugins missing from `himari plugins list`: {sorted(missing)}; "
                                  f"blocked: {listed.get('blocked')}")
        results["plugins"] = len(plugins)

        if engine_tests:
            if not system_site:  # pytest-timeout: the project's pytest config sets its `timeout` (strict config)
                run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "pytest", "pytest-timeout",
                     "hypothesis"], env=env, cwd=work)
            started = time.perf_counter()
            args = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                    "-c", str(ROOT / "pyproject.toml"), str(ROOT / "tests/python/engine")]
            out = run(args, env=env, cwd=work)
            results["engine_tests"] = out.strip().splitlines()[-1]
            results["engine_tests_s"] = round(time.perf_counter() - started, 2)
        return results
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install a himari wheel into a fresh venv and test it.")
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--system-site-packages", action="store_true",
                        help="let the venv see this interpreter's packages (no network needed)")
    parser.add_argument("--cuda", action="store_true", help="the wheel is the CUDA wheel: run the CUDA tests")
    parser.add_argument("--no-engine-tests", action="store_true", help="skip the engine tests")
    parser.add_argument("--keep", action="store_true", help="keep the temporary venv")
    parser.add_argument("--find-links", type=Path, default=None,
                        help="install offline: dependencies from this folder of wheels (and, with "
                             "--system-site-packages, from this interpreter)")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        print(f"no such wheel: {args.wheel}", file=sys.stderr)
        return 2
    try:
        results = test_wheel(args.wheel, system_site=args.system_site_packages, cuda=args.cuda,
                             engine_tests=not args.no_engine_tests, keep=args.keep,
                             find_links=args.find_links)
    except WheelTestFailed as exc:
        print(f"wheel test FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
