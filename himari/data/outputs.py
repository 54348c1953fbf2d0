"""Where a data command may write: checks made before any work, so that a bad ``--out`` is
refused at once and nothing (an input, a directory of the user's, the working directory) is
ever overwritten or deleted by mistake.

- A file output (``import``, ``synth``) must not be an existing directory, must not lie under a
  file, and must not be one of the inputs (the same file after resolving symlinks and relative
  paths, or a hard link to it): writing it would replace the data being read. A bars file's
  name must end in ``.parquet``: later stages pick the reader by the name, so a bars file under
  another name could not be read back (and ``bars.parquet``'s report is ``bars.report.json``).
- A directory output (``prepare``) replaces its target as a whole, so the target must not be
  or contain an input, must not be or contain the working directory, and, when it exists and is
  not empty, must be a previous himari prepared directory holding only the files ``prepare``
  writes; replacing one of those takes ``force``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from himari.data.atomic import output_target
from himari.errors import DataError

PathLike = str | os.PathLike[str]


def _check_not_under_a_file(target: Path, option: str) -> None:
    for ancestor in target.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DataError(f"{option} {target}: {ancestor} is a file, not a directory")
            return


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_file_outputs(outputs: Sequence[PathLike], inputs: Iterable[PathLike] = (), *,
                       option: str = "--out", example: str = "bars.parquet") -> list[Path]:
    """Check file outputs (e.g. a Parquet and its report) against each other's rules and the
    inputs; returns the resolved output paths. Raises ``DataError`` naming the output (and, for
    a directory, ``example`` as the kind of file name to give). Nothing is created."""
    sources = [Path(p) for p in inputs]
    resolved = []
    for out in outputs:
        target = output_target(out)
        if target.is_dir():
            raise DataError(f"{option} {out}: is a directory; give a file name such as {example}")
        _check_not_under_a_file(target, option)
        for src in sources:
            if output_target(src) == target or (target.exists() and _same_file(src, target)):
                raise DataError(f"{option} {out}: is the input file {src}; writing it would replace the data "
                                "being read, so choose another output name")
        if target.exists():  # in a himari directory or below it (a run's checkpoints/best.pt)
            for directory in target.parents:
                owner = himari_directory_kind(directory)
                if owner is not None:
                    raise DataError(f"{option} {out}: would replace a file of the {owner} {directory}; choose "
                                    "another output name")
        resolved.append(target)
    return resolved


def himari_directory_kind(directory: Path) -> str | None:
    """What himari wrote ``directory`` as (``prepared data set``, ``synthetic set``, ``evaluation``,
    ``run directory``), or None: a file output must not replace one of such a directory's files,
    which later commands read (a benchmark's JSON written over a data set's ``metadata.json``
    left it unreadable)."""
    fmt = prepared_format_of(directory)
    if fmt is not None and fmt.startswith("himari-"):
        return {"himari-prepared": "prepared data set", "himari-synthetic": "synthetic set"}.get(fmt, "himari output")
    if (directory / "evaluation.json").is_file():
        return "evaluation"
    if (directory / "config.yaml").is_file() and (directory / "checkpoints").is_dir():
        return "run directory"
    return None


def check_bars_output(out: PathLike, inputs: Iterable[PathLike] = (), *, option: str = "--out") -> list[Path]:
    """Check a bars file output and its ``<name>.report.json`` (see ``check_file_outputs``) and
    that its name ends in ``.parquet``; returns the resolved paths of both."""
    from himari.data.report import report_path_for

    text = os.fspath(out)
    if text.endswith(("/", os.sep)):  # a Path would drop the slash and write a file of that name
        raise DataError(f"{option} {text}: names a directory; give a file name such as {text}bars.parquet")
    resolved = check_file_outputs([out, report_path_for(out)], inputs, option=option)
    name = Path(text).name
    if not name.endswith(".parquet") or name == ".parquet":
        suggestion = Path(text).with_name(f"{Path(text).stem or 'bars'}.parquet")
        raise DataError(f"{option} {text}: a bars file is Parquet and its name must end in .parquet, "
                        f"e.g. {suggestion} (later commands choose the reader by the name)")
    return resolved


def prepared_format_of(directory: Path) -> str | None:
    """The ``format`` recorded in ``directory/metadata.json``, or None when there is no readable
    JSON object there."""
    try:
        meta = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    return fmt if isinstance(fmt, str) else None


def check_directory_output(out: PathLike, inputs: Iterable[PathLike] = (), *, format_name: str,
                           allowed_files: Iterable[str], force: bool = False,
                           option: str = "--out", what: str = "prepared") -> Path:
    """Check that directory ``out`` may be (re)placed by a new output; returns it resolved.

    ``format_name`` is the ``format`` a previous output records in its ``metadata.json``;
    ``allowed_files`` are the names such an output holds. Refused: an output that is or contains
    an input or the working directory; a path under a file; an existing non-directory; a
    non-empty directory that is not a previous output or holds other files (even with
    ``force``); a previous output without ``force``. ``what`` names the output in messages
    (``prepared``, ``synthetic set``).
    """
    target = output_target(out)
    _check_not_under_a_file(target, option)
    for src in inputs:
        s = output_target(src)
        if s == target:
            kind = "directory" if s.is_dir() else "file"
            raise DataError(f"{option} {out}: is the input {kind} {src}; the output is a directory, which would "
                            f"replace the {kind}, so choose a new directory name such as prepared/")
        if target in s.parents:
            raise DataError(f"{option} {out}: contains the input {src}; replacing the directory would delete it, "
                            "so choose a new directory")
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    if cwd is not None and (cwd == target or target in cwd.parents):
        raise DataError(f"{option} {out}: is the current directory or contains it; the output directory is "
                        "replaced as a whole, so choose a new subdirectory such as prepared/")
    if not target.exists():
        return target
    if not target.is_dir():
        raise DataError(f"{option} {out}: exists and is not a directory")
    entries = sorted(e.name for e in target.iterdir())
    if not entries:
        return target
    if prepared_format_of(target) != format_name:
        raise DataError(f"{option} {out}: exists, is not empty ({len(entries)} entries) and is not a "
                        f"{format_name} directory; choose a new or empty directory (--force only replaces "
                        f"a previous {what} output)")
    allowed = set(allowed_files) | {"metadata.json"}
    extra = [e for e in entries if e not in allowed]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise DataError(f"{option} {out}: holds files that a {what} output does not have ({shown}); move them "
                        "away or choose another directory")
    if not force:
        raise DataError(f"{option} {out}: already holds {'prepared data' if what == 'prepared' else 'a ' + what}; "
                        f"pass --force to replace it")
    return target
