"""Give a built wheel a PEP 440 local version label (``0.1.0`` -> ``0.1.0+cu130``).

The project's version is static in pyproject.toml, and the build backend has no switch for a
local label, so the label is added after the build: the wheel is rewritten with the renamed
``.dist-info`` folder and ``Version:`` line, and ``wheel``'s WheelFile writes a fresh RECORD
(hashes and sizes) for the new archive. File attributes (the native module's executable bit)
are kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import parse_wheel_filename
from packaging.version import Version
from wheel.wheelfile import WheelFile


def add_local_label(wheel: Path, label: str, out_dir: Path) -> Path:
    """A copy of ``wheel`` in ``out_dir`` whose version carries ``+label``; the input is untouched."""
    if not re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+)*", label):
        raise ValueError(f"local version label: expected letters, digits and dots, got {label!r}")
    name, version, _build, _tags = parse_wheel_filename(wheel.name)
    if version.local is not None:
        raise ValueError(f"{wheel.name} already has a local version label ({version.local})")
    new_version = Version(f"{version}+{label}")
    old_info = f"{name}-{version}.dist-info/"
    new_info = f"{name}-{new_version}.dist-info/"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name.replace(f"-{version}-", f"-{new_version}-", 1)
    with WheelFile(wheel) as src, WheelFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename == old_info + "RECORD":
                continue  # WheelFile writes the new archive's RECORD on close
            data = src.read(info.filename)
            if info.filename.startswith(old_info):
                info.filename = new_info + info.filename[len(old_info):]
                if info.filename == new_info + "METADATA":
                    data = _set_version(data, str(version), str(new_version))
            dst.writestr(info, data)
    return target


def _set_version(metadata: bytes, old: str, new: str) -> bytes:
    text = metadata.decode("utf-8")
    line = f"Version: {old}\n"
    if line not in text:
        raise ValueError(f"METADATA has no line {line.strip()!r}")
    return text.replace(line, f"Version: {new}\n", 1).encode("utf-8")
