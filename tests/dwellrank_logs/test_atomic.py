"""Temporaries of killed runs: swept by the next write of the same output, never a live run's."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import dwellrank_logs.temporaries as temporaries
import dwellrank_logs.write as write_module
from dwellrank_logs import atomic_dir, atomic_file, sweep_stale

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(temporaries.fcntl is None, reason="needs flock (POSIX)")

_HOLD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from dwellrank_logs import {fn}
    with {fn}({out!r}) as tmp:
        {write}
        print(tmp, flush=True)
        time.sleep(60)
    """
)


def _holder(fn: str, out: Path) -> tuple[subprocess.Popen, Path]:
    """Another process inside ``fn(out)`` with a half-written temporary, waiting to be killed."""
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


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("fn", ["atomic_dir", "atomic_file"])
def test_killed_run_leaves_temporaries_that_the_next_run_removes(tmp_path: Path, fn: str):
    out = tmp_path / ("out" if fn == "atomic_dir" else "out.json")
    proc, tmp = _holder(fn, out)
    _kill(proc)
    assert tmp.exists() and not out.exists()  # SIGKILL cannot clean up
    assert len(_names(tmp_path)) == 2  # the temporary and its lock file
    if fn == "atomic_dir":
        with atomic_dir(out) as t:
            (t / "new.txt").write_text("new")
        assert _names(out) == ["new.txt"]
    else:
        with atomic_file(out) as t:
            t.write_text("new")
        assert out.read_text() == "new"
    assert _names(tmp_path) == [out.name]


@pytest.mark.parametrize("fn", ["atomic_dir", "atomic_file"])
def test_live_run_in_another_process_keeps_its_temporaries(tmp_path: Path, fn: str):
    out = tmp_path / ("out" if fn == "atomic_dir" else "out.json")
    proc, tmp = _holder(fn, out)
    try:
        before = _names(tmp_path)
        assert sweep_stale(out) == []
        if fn == "atomic_dir":
            with atomic_dir(out) as t:
                (t / "mine.txt").write_text("mine")
            assert (tmp / "half.parquet").exists()
        else:
            with atomic_file(out) as t:
                t.write_text("mine")
            assert tmp.read_text() == "x"
        assert _names(tmp_path) == sorted([*before, out.name])
    finally:
        _kill(proc)


def test_own_temporaries_survive_a_sweep_inside_the_block(tmp_path: Path):
    out = tmp_path / "out"
    with atomic_dir(out) as t:
        (t / "a.txt").write_text("a")
        assert sweep_stale(out) == []
        assert (t / "a.txt").exists()
    assert _names(out) == ["a.txt"]


def _dead_run(tmp_path: Path, token: str, old: bool) -> dict[str, Path]:
    """The files a run killed between atomic_dir's two renames leaves: lock (unlocked), tmp, old."""
    paths = {k: tmp_path / f".out.{k}-{token}" for k in ("lock", "tmp", "old")}
    paths["lock"].write_text("")
    paths["tmp"].mkdir()
    (paths["tmp"] / "new.txt").write_text("new")
    if old:
        paths["old"].mkdir()
        (paths["old"] / "previous.txt").write_text("previous")
    return paths


def test_previous_output_is_kept_while_it_is_the_only_copy(tmp_path: Path):
    out = tmp_path / "out"
    dead = _dead_run(tmp_path, "abc123", old=True)
    with pytest.warns(UserWarning, match="previous out of a run killed while replacing it; kept"):
        removed = sweep_stale(out)
    assert removed == [dead["tmp"]]
    assert (dead["old"] / "previous.txt").read_text() == "previous" and dead["lock"].exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with atomic_dir(out) as t:  # a later run completes: the old copy is no longer the only one
            (t / "new.txt").write_text("new")
    assert sorted(sweep_stale(out)) == sorted([dead["old"], dead["lock"]])
    assert _names(tmp_path) == ["out"]


def test_entries_without_a_lock_and_other_names_are_left_alone(tmp_path: Path):
    out = tmp_path / "out"
    keep = [tmp_path / ".out.tmp-nolock1", tmp_path / "out.tmp-notes", tmp_path / ".outer.tmp-x1"]
    keep[0].mkdir()
    keep[1].write_text("keep")
    _dead_run(tmp_path, "x1", old=False)
    (tmp_path / ".out.tmp-x1").rename(keep[2])  # a dead run of another output, ".outer"
    (tmp_path / ".out.lock-x1").rename(tmp_path / ".outer.lock-x1")
    assert sweep_stale(out) == []
    for k in keep:
        assert k.exists()
    assert sorted(p.name for p in sweep_stale(tmp_path / "outer")) == [".outer.lock-x1", ".outer.tmp-x1"]


def test_what_cannot_be_removed_is_skipped_not_reported(tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    dead = _dead_run(tmp_path, "perm1", old=False)

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(write_module.shutil, "rmtree", refuse)
    assert sweep_stale(out) == [dead["lock"]]
    assert dead["tmp"].exists()


def test_sweep_of_a_missing_folder_is_a_no_op(tmp_path: Path):
    assert sweep_stale(tmp_path / "nowhere" / "out") == []


def test_outputs_get_the_usual_permissions(tmp_path: Path):
    import os

    mask = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f.json") as t:
            t.write_text("{}")
        with atomic_dir(tmp_path / "d") as t:
            (t / "x").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
