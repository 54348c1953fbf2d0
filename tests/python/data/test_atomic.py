"""Atomic outputs: temporaries of a killed writer are removed by the next write to that output
(and only those), SIGTERM/SIGHUP/Ctrl-C clean up, and ``.`` gets the real directory's name."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from himari.data.atomic import atomic_directory, atomic_path

import himari

ROOT = Path(himari.__file__).resolve().parents[1]  # the himari under test, for the child processes

WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from himari.data.atomic import atomic_directory, atomic_path
    kind, out, how = sys.argv[1], sys.argv[2], sys.argv[3]
    ctx = atomic_directory(out) if kind == "dir" else atomic_path(out)
    with ctx as tmp:
        if kind == "dir":
            (tmp / "features.npy").write_bytes(b"x" * 100_000)
        else:
            tmp.write_bytes(b"x" * 100_000)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        print("ready", flush=True)
        time.sleep(60)
""")


_PROCS: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _close_writers():
    """Every writer process is reaped and its pipe closed when the test ends."""
    yield
    while _PROCS:
        proc = _PROCS.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


def _writer(kind: str, out: Path, how: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(out), how], stdout=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    _PROCS.append(proc)
    return proc


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".old")))


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path, kind):
    out = tmp_path / ("prepared" if kind == "dir" else "bars.parquet")
    proc = _writer(kind, out, "kill")
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (stale,) = _temps(tmp_path)  # what a killed writer leaves: nothing could clean it
    m = re.fullmatch(rf"\.{re.escape(out.name)}\.([0-9a-f]{{8}})-(\d+)\.[a-z0-9_]+\.tmp", stale)
    assert m and int(m.group(2)) == proc.pid, stale
    host = m.group(1)
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    keep = [
        f".{out.name}.{host}-{os.getpid()}.live1234.tmp",          # a live writer (this process)
        f".{out.name}.{other_host}-{proc.pid}.remote12.tmp",        # another host: its PIDs mean nothing here
        f".other.{host}-{proc.pid}.abcd1234.tmp",                   # another output's temporary
        f".{out.name}.x.{host}-{proc.pid}.abcd1234.tmp",            # ... of an output named "<name>.x"
        f"{out.name}.{host}-{proc.pid}.abcd1234.tmp",               # not hidden: not ours
    ]
    for name in keep:
        (tmp_path / name).mkdir()
    if kind == "dir":
        with atomic_directory(out) as tmp:
            (tmp / "new").write_text("1")
        assert [p.name for p in out.iterdir()] == ["new"]
    else:
        with atomic_path(out) as tmp:
            tmp.write_text("1")
        assert out.read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *keep])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
@pytest.mark.parametrize("kind", ["dir", "file"])
def test_termination_signals_remove_the_temporary(tmp_path, kind, sig):
    out = tmp_path / ("prepared" if kind == "dir" else "bars.parquet")
    proc = _writer(kind, out, "wait")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert len(_temps(tmp_path)) == 1
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert list(tmp_path.iterdir()) == []  # no temporary, no output


def test_a_previous_output_survives_a_terminated_replacement(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old").write_text("keep")
    proc = _writer("dir", out, "wait")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
    assert (out / "old").read_text() == "keep"


def test_dot_is_resolved_to_the_real_directory(tmp_path, monkeypatch):
    """``.`` has the name ".": temporaries must be named after, and created beside, the real
    directory, never inside it."""
    base = tmp_path / "base"
    (base / "out").mkdir(parents=True)
    (base / "out" / "old").write_text("1")
    monkeypatch.chdir(base / "out")
    with atomic_directory(".") as tmp:
        assert tmp.parent == base and tmp.name.startswith(".out.")
        (tmp / "new").write_text("2")
    assert [p.name for p in base.iterdir()] == ["out"]
    assert [p.name for p in (base / "out").iterdir()] == ["new"]
    monkeypatch.chdir(tmp_path)
    with atomic_path(Path("base") / "x" / ".." / "f.txt") as tmp:
        assert tmp.parent == base
        tmp.write_text("3")
    assert (base / "f.txt").read_text() == "3" and not (base / "x").exists()


def test_outputs_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_text("1")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_signal_handlers_are_restored_and_custom_ones_left_alone(tmp_path):
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            tmp.write_text("1")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def custom(signum, frame):  # an application's own handler
            pass

        signal.signal(signal.SIGTERM, custom)
        with atomic_directory(tmp_path / "d"):
            assert signal.getsignal(signal.SIGTERM) is custom
        assert signal.getsignal(signal.SIGTERM) is custom
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_stream_target_is_written_into_not_replaced(tmp_path):
    """``--out /dev/null`` (or a FIFO) was replaced by a regular file: /dev/null itself, as root."""
    import stat
    import threading

    from himari.data.atomic import write_text_atomic

    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write_text_atomic(fifo, "hello\n")
    reader.join(timeout=30)
    assert got == ["hello\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["stream"]  # no temporary beside it


def test_a_stop_during_the_swap_lets_it_finish_first(tmp_path, monkeypatch):
    """A SIGTERM while the replaced directory was being deleted reported a failure with the new
    output in place and the old one half-deleted beside it; now it waits for the swap to end."""
    import shutil

    from himari.data import atomic

    out = tmp_path / "prepared"
    out.mkdir()
    (out / "old").write_text("old")
    real_rmtree = shutil.rmtree
    calls = []

    def stopped_rmtree(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:  # the first is the old output's removal, after the swap
            signal.raise_signal(signal.SIGTERM)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", stopped_rmtree)
    with pytest.raises(SystemExit) as stopped, atomic_directory(out) as tmp:
        (tmp / "new").write_text("new")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # nothing half-deleted beside it
    assert [p.name for p in out.iterdir()] == ["new"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_bars_and_their_report_are_published_together(tmp_path, monkeypatch):
    """A full disk while writing the report left the Parquet published without it."""
    import errno

    from himari.data.synthetic import SynthConfig, write_synthetic
    from himari.errors import DiskFullError

    write_text = Path.write_text

    def full(self, *args, **kwargs):  # the disk fills up on the report, after the Parquet was written
        if "report.json" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*b\.report\.json"):
        write_synthetic(tmp_path / "b.parquet", SynthConfig(bars=500, seed=0))
    assert list(tmp_path.iterdir()) == []


def test_without_replace_a_directory_filled_meanwhile_is_left_alone(tmp_path, monkeypatch):
    """Two `data prepare --out DIR` without --force both passed the check that DIR was free, and
    the second silently replaced the first. The rename now refuses a directory filled meanwhile."""
    import contextlib

    from himari.data import pipeline
    from himari.data.synthetic import SynthConfig, load_synthetic
    from himari.errors import DataError

    out = tmp_path / "prepared"
    real = atomic_directory

    @contextlib.contextmanager
    def rival_first(path, **kwargs):
        with real(path, **kwargs) as tmp:
            out.mkdir()
            (out / "metadata.json").write_text("the rival's")  # another process finished first
            yield tmp

    monkeypatch.setattr(pipeline, "atomic_directory", rival_first)
    with pytest.raises(DataError, match="another process wrote an output there while this one ran"):
        pipeline.prepare(load_synthetic(SynthConfig(bars=3000, seed=0)), out)
    assert (out / "metadata.json").read_text() == "the rival's"
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # no temporary left
    shutil_out = tmp_path / "forced"
    with atomic_directory(shutil_out) as tmp:  # replace (--force): the later one wins, as documented
        shutil_out.mkdir()
        (shutil_out / "a").write_text("rival")
        (tmp / "b").write_text("mine")
    assert [p.name for p in shutil_out.iterdir()] == ["b"]


def test_a_full_disk_reported_by_the_last_fsync_publishes_neither_file(tmp_path, monkeypatch):
    """Some file systems (XFS, NFS) report a full disk at fsync: the report was already renamed
    into place by then, beside the old bars or none."""
    import errno

    from himari.data import atomic
    from himari.errors import DiskFullError

    real = atomic._fsync_file

    def full_on_bars(path):
        if ".b.parquet." in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(atomic, "_fsync_file", full_on_bars)
    with pytest.raises(DiskFullError, match="no space left on device writing .*b.report.json and .*b.parquet"), \
            atomic.atomic_paths(tmp_path / "b.report.json", tmp_path / "b.parquet") as (report, bars):
        report.write_text("{}")
        bars.write_bytes(b"PAR1")
    assert list(tmp_path.iterdir()) == []


def test_a_stop_during_a_swap_that_fails_is_not_lost(tmp_path, monkeypatch):
    """The deferred stop was acted on only after a successful swap: when the swap failed it was
    kept, and ended the next, unrelated output's swap with exit 143."""
    from himari.data import atomic

    real_rename = os.rename

    def stopped_rename(src, dst):
        signal.raise_signal(signal.SIGTERM)
        return real_rename(src, dst)

    out = tmp_path / "taken"
    monkeypatch.setattr(atomic.os, "rename", stopped_rename)
    with pytest.raises(SystemExit) as stopped, atomic_directory(out, replace=False) as tmp:
        (tmp / "mine").write_text("mine")
        out.mkdir()
        (out / "theirs").write_text("theirs")  # another process got there first: the rename fails
    assert stopped.value.code == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert atomic._deferral.pending is None
    with atomic_directory(tmp_path / "next") as tmp:  # nothing left over to stop this one
        (tmp / "a").write_text("a")
    assert [p.name for p in (tmp_path / "next").iterdir()] == ["a"]
