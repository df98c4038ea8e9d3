"""Temporaries of killed runs: swept by the next run, never a live run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from logs import atomic_dir, atomic_file, sweep_stale
from logs.io import _owner_tag

ROOT = Path(__file__).resolve().parents[2]

_HOLD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from logs import {fn}
    with {fn}({out!r}) as tmp:
        {write}
        print(tmp, flush=True)
        time.sleep(60)
    """
)


def _holder(fn: str, out: Path) -> tuple[subprocess.Popen, Path]:
    """A process inside ``fn(out)`` with a half-written temporary, waiting to be killed."""
    write = "(tmp / 'half.parquet').write_text('x')" if fn == "atomic_dir" else "tmp.write_text('x')"
    code = _HOLD.format(root=str(ROOT), fn=fn, out=str(out), write=write)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    assert tmp.exists(), "holder did not start"
    return proc, tmp


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("fn", ["atomic_dir", "atomic_file"])
def test_killed_run_leaves_temporary_that_next_run_removes(tmp_path: Path, fn: str):
    out = tmp_path / ("out" if fn == "atomic_dir" else "out.json")
    proc, tmp = _holder(fn, out)
    _kill(proc)
    assert tmp.exists() and not out.exists()  # SIGKILL cannot clean up
    if fn == "atomic_dir":
        with atomic_dir(out) as t:
            (t / "new.txt").write_text("new")
        assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    else:
        with atomic_file(out) as t:
            t.write_text("new")
        assert out.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_live_run_keeps_its_temporary(tmp_path: Path):
    out = tmp_path / "out"
    proc, tmp = _holder("atomic_dir", out)
    try:
        with atomic_dir(out) as t:
            (t / "mine.txt").write_text("mine")
        assert tmp.exists() and (tmp / "half.parquet").exists()
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    finally:
        _kill(proc)


def test_sweep_removes_only_this_hosts_dead_owners(tmp_path: Path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = _owner_tag().rsplit("-", 1)[0]
    stale_dir = tmp_path / f".out.tmp-{host}-{dead_pid}-abc123"
    stale_old = tmp_path / f".out.old-{host}-{dead_pid}"
    other_host = tmp_path / f".out.tmp-otherhost{host}-{dead_pid}-abc123"
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-abc123"
    other_name = tmp_path / f".outer.tmp-{host}-{dead_pid}-abc123"
    user_file = tmp_path / "out.tmp-notes"
    for d in (stale_dir, stale_old, other_host, live, other_name):
        d.mkdir()
        (d / "part.parquet").write_text("x")
    user_file.write_text("keep")
    removed = sweep_stale(out)
    assert sorted(p.name for p in removed) == sorted([stale_dir.name, stale_old.name])
    assert not stale_dir.exists() and not stale_old.exists()
    for kept in (other_host, live, other_name, user_file):
        assert kept.exists()


def test_sweep_of_missing_folder_is_a_no_op(tmp_path: Path):
    assert sweep_stale(tmp_path / "nowhere" / "out") == []
