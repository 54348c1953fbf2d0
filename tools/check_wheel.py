"""Check a built himari wheel before anyone installs it.

    python tools/check_wheel.py dist/himari-*.whl [--json]

What is checked, and why each matters to a user who installs the wheel:
- the file name parses, names himari, and on Linux carries a manylinux tag (a ``linux_x86_64``
  wheel is refused by PyPI and by pip on other distributions);
- the size is under the budget (5 MB CPU, 100 MB CUDA);
- exactly one native module, built for the interpreter the tag names;
- every file the source tree ships in ``himari/`` and ``plugins/himari_builtin/`` is inside (a
  forgotten data file or plugin module would only fail on the user's machine);
- the entry points equal pyproject.toml's table (a built-in plugin missing from them would silently
  vanish from ``himari plugins list``) and the ``himari`` command is declared;
- the metadata's version and dependencies equal pyproject.toml's;
- ``auditwheel show`` finds no external shared library the wheel needs and agrees with its tag;
- a CUDA wheel carries its ``+cuXYZ`` label and the fatbin architectures; a CPU wheel no CUDA code.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import asdict, dataclass, field
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
CPU_BUDGET_MB = 5.0
CUDA_BUDGET_MB = 100.0
SHIPPED_TREES = (("himari", "himari"), ("plugins/himari_builtin", "himari_builtin"))
CUDA_MARKER = b"(architectures "


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class WheelReport:
    wheel: str
    size_mb: float
    platform_tag: str
    version: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, bool(ok), detail))


def shipped_files(root: Path = ROOT) -> set[str]:
    """Paths (as inside the wheel) of the files the source tree ships: git's tracked files under
    the package folders, or every file there when the tree is not a git checkout."""
    paths: set[str] = set()
    for src, dest in SHIPPED_TREES:
        try:
            out = subprocess.run(["git", "ls-files", "--", src], cwd=root, capture_output=True,
                                 text=True, check=True).stdout.split()
            files = [Path(p) for p in out]
        except (OSError, subprocess.CalledProcessError):
            files = [p.relative_to(root) for p in (root / src).rglob("*") if p.is_file()]
        for rel in files:
            if "__pycache__" in rel.parts or rel.suffix in {".pyc", ".so", ".pyd"}:
                continue
            paths.add(dest + "/" + rel.relative_to(src).as_posix())
    return paths


def pyproject(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def parse_entry_points(text: str) -> dict[str, dict[str, str]]:
    """entry_points.txt as {group: {name: value}} (an INI file whose keys keep their case and dots)."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1].strip(), {})
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return groups


def auditwheel_show(wheel: Path) -> tuple[str | None, str]:
    """(the platform tag auditwheel says the wheel is consistent with, its whole output)."""
    proc = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True)
    text = " ".join((proc.stdout + proc.stderr).split())
    match = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    return (match.group(1) if match else None), text


def check_wheel(wheel: Path, *, cuda: bool | None = None, root: Path = ROOT,
                run_auditwheel: bool = True) -> WheelReport:
    """Every check above on ``wheel``; ``cuda`` None infers the flavour from the version label."""
    name, version, _build, tags = parse_wheel_filename(wheel.name)
    tag = sorted(tags, key=str)[0]
    if cuda is None:
        cuda = bool(version.local and version.local.startswith("cu"))
    report = WheelReport(wheel.name, wheel.stat().st_size / 1e6, tag.platform, str(version))
    meta = pyproject(root)
    project = meta["project"]

    report.add("name", canonicalize_name(name) == project["name"], f"distribution {name}")
    on_linux = tag.platform.startswith(("linux", "manylinux", "musllinux"))
    report.add("platform tag", not on_linux or not tag.platform.startswith("linux_"),
               f"{tag} (a linux_* tag means the wheel was not repaired)")
    budget = CUDA_BUDGET_MB if cuda else CPU_BUDGET_MB
    report.add("size", report.size_mb < budget, f"{report.size_mb:.2f} MB (budget {budget:.0f} MB)")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info_dir = f"{name}-{version}.dist-info/"
        modules = sorted(n for n in names if re.fullmatch(r"himari/_core\.[^/]+\.(so|pyd)", n))
        abi = tag.interpreter.removeprefix("cp")
        right_abi = len(modules) == 1 and (f"-{abi}-" in modules[0] or f"cp{abi}" in modules[0])
        report.add("native module", right_abi, ", ".join(modules) or "no himari/_core.* in the wheel")

        missing = sorted(shipped_files(root) - names)
        report.add("package files", not missing,
                   "all shipped files present" if not missing else "missing: " + ", ".join(missing[:8]))

        entry_text = zf.read(info_dir + "entry_points.txt").decode() if info_dir + "entry_points.txt" in names else ""
        entry = parse_entry_points(entry_text)
        want_plugins = project.get("entry-points", {}).get("himari", {})
        got_plugins = entry.get("himari", {})
        report.add("plugin entry points", got_plugins == want_plugins,
                   f"{len(got_plugins)} of {len(want_plugins)} declared"
                   + ("" if got_plugins == want_plugins else
                      f"; differ: {sorted(set(got_plugins.items()) ^ set(want_plugins.items()))[:4]}"))
        want_scripts = project.get("scripts", {})
        report.add("console script", entry.get("console_scripts", {}) == want_scripts,
                   ", ".join(f"{k} = {v}" for k, v in entry.get("console_scripts", {}).items()) or "none")

        metadata = Parser().parsestr(zf.read(info_dir + "METADATA").decode()) if info_dir + "METADATA" in names else None
        if metadata is None:
            report.add("metadata", False, f"no {info_dir}METADATA")
        else:
            base_ok = version.base_version == project["version"] and metadata["Version"] == str(version)
            requires = {str(Requirement(r)) for r in metadata.get_all("Requires-Dist") or []
                        if "extra ==" not in r}
            wanted = {str(Requirement(r)) for r in project["dependencies"]}
            report.add("metadata", base_ok and requires == wanted,
                       f"version {metadata['Version']}, {len(requires)} dependencies"
                       + ("" if requires == wanted else f"; differ: {sorted(requires ^ wanted)}"))

        if modules:
            binary = zf.read(modules[0])
            if cuda:
                found = re.search(rb"\(architectures ([0-9a-z\- ]+)\)", binary)
                label_ok = bool(version.local and version.local.startswith("cu"))
                report.add("CUDA build", bool(found) and label_ok,
                           f"label +{version.local}, architectures "
                           f"{found.group(1).decode() if found else 'not found'}")
            else:
                report.add("CPU build", CUDA_MARKER not in binary and version.local is None,
                           "no CUDA code, no local version label"
                           if CUDA_MARKER not in binary else "the native module contains CUDA code")

    if run_auditwheel and on_linux:
        consistent, text = auditwheel_show(wheel)
        external = "external shared libraries are required" in text
        report.add("auditwheel show", consistent == tag.platform and not external,
                   f"consistent with {consistent}" + ("; needs external libraries" if external else ""))
    return report


def print_report(report: WheelReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.wheel}  ({report.size_mb:.2f} MB)")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        table.add_row(check.name, "[green]ok[/green]" if check.ok else "[red]FAILED[/red]", check.detail)
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a built himari wheel.")
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        print(f"no such wheel: {args.wheel}", file=sys.stderr)
        return 2
    report = check_wheel(args.wheel)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
