"""Output paths and write faults: checks before work, OS errors as one line, races, links, signals."""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path

import polars as pl
import pytest

import dwellrank_logs.temporaries as temporaries
from dwellrank_logs.errors import OutputError, OutputExistsError
from dwellrank_logs.io import (
    atomic_dir,
    atomic_file,
    atomic_files,
    check_not_input,
    check_output_dir,
    check_output_file,
    check_writable,
    write_json,
    write_parquet,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _layout(tmp: Path) -> dict[str, Path]:
    (tmp / "logs").mkdir()
    (tmp / "logs" / "impressions.parquet").write_text("x")
    (tmp / "a_file").write_text("x")
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("keep")
    (tmp / "link_full").symlink_to(tmp / "full")
    return {"logs": tmp / "logs", "file": tmp / "a_file", "full": tmp / "full"}


@pytest.mark.parametrize(
    ("check", "pattern"),
    [
        (lambda t: check_output_dir("", what="--out"), r"--out '': empty path"),
        (lambda t: check_output_dir(f"{t}/.", what="--out"), r"--out .*/\.: names a directory itself"),
        (lambda t: check_output_dir(f"{t}/x/..", what="--out"), r"names a directory itself"),
        (lambda t: check_output_dir("/", what="--out"), r"names a directory itself"),
        (lambda t: check_output_dir(t / "full", what="--out"), r"--out .*full: directory is not empty \(pass --overwrite"),
        (lambda t: check_output_dir(t / "link_full", what="--out"), r"link_full: directory is not empty"),
        (lambda t: check_output_dir(t / "a_file", True, "--out"), r"a_file: exists and is not a directory"),
        (
            lambda t: check_output_dir(t / "a_file" / "sub" / "deeper", what="--out"),
            r"cannot write output here \(.*a_file is a file, not a directory\)",
        ),
        (lambda t: check_output_file(t / "full", "--out"), r"--out .*full: is a directory, expected a file path"),
        (lambda t: check_output_file(t / "a_file", "--out", overwrite=False), r"--out .*a_file: exists \(pass --overwrite to replace it\)"),
        (lambda t: check_output_file("", "--out"), r"--out '': empty path"),
        (lambda t: check_writable(t / "a_file" / "p.png", "--plot"), r"--plot .*: cannot write output here"),
        (lambda t: check_not_input(t / "logs", {"--logs": t / "logs"}, "--out"), r"--out .*logs: is the --logs input"),
        (lambda t: check_not_input(t / "logs" / "model", {"--logs": t / "logs"}, "--out"), r"lies inside the --logs input"),
        (
            lambda t: check_not_input(t, {"--logs": t / "logs"}, "--out"),
            r"holds the --logs input .*, which writing the output would replace",
        ),
        (lambda t: check_not_input(t / "link_logs", {"--logs": t / "logs"}, "--out"), r"link_logs: is the --logs input"),
        (lambda t: check_not_input(f"{t}/logs/../a_file", {"--x": t / "a_file"}, "--out"), r"is the --x input"),
    ],
)
def test_output_checks_refuse_with_one_line(tmp_path: Path, check, pattern):
    _layout(tmp_path)
    (tmp_path / "link_logs").symlink_to(tmp_path / "logs")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError, match=pattern):
        check(tmp_path)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # the checks create nothing


def test_hard_link_to_an_input_is_the_input(tmp_path: Path):
    src = tmp_path / "cand.parquet"
    src.write_text("x")
    os.link(src, tmp_path / "alias.parquet")
    with pytest.raises(OutputError, match="is the --candidates input"):
        check_not_input(tmp_path / "alias.parquet", {"--candidates": src}, "--out")
    check_not_input(tmp_path / "other.parquet", {"--candidates": src, "--logs": None}, "--out")


def test_read_only_folder_is_refused_before_work(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    with pytest.raises(OutputError, match=r"--out .*: cannot write output here \(.*: Permission denied\)"):
        check_output_dir(tmp_path / "out", what="--out")


@pytest.mark.skipif(not hasattr(os, "statvfs"), reason="statvfs")
@pytest.mark.parametrize(("flag", "free", "reason"), [(os.ST_RDONLY, 10, "Read-only file system"), (0, 0, "No space left on device")])
def test_read_only_or_full_file_system_is_refused_before_work(tmp_path: Path, monkeypatch, flag, free, reason):
    fs = os.statvfs_result((4096, 4096, 100, free, free, 10, 10, 10, flag, 255))
    monkeypatch.setattr(os, "statvfs", lambda _p: fs)
    with pytest.raises(OutputError, match=rf"--out .*: cannot write output here \({tmp_path}: {reason}\)"):
        check_output_dir(tmp_path / "out", what="--out")


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["rename", "write", "polars"])
@pytest.mark.parametrize("kind", ["file", "files", "dir"])
def test_disk_full_is_one_line_naming_the_output(tmp_path: Path, monkeypatch, kind, where):
    if where == "rename":
        monkeypatch.setattr(os, "replace", _enospc)
    elif where == "polars":
        msg = "parquet: File out of specification: underlying IO error: No space left on device (os error 28)"
        monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda *_a, **_k: (_ for _ in ()).throw(pl.exceptions.ComputeError(msg)))
    frame = pl.DataFrame({"a": [1, 2]})

    def write(p: Path) -> None:
        if where == "write":
            _enospc()
        frame.write_parquet(p)

    out = tmp_path / ("out" if kind == "dir" else "out.parquet")

    def run() -> None:
        if kind == "file":
            with atomic_file(out) as t:
                write(t)
        elif kind == "files":
            with atomic_files({"--out": out}) as ts:
                write(ts["--out"])
        else:
            with atomic_dir(out) as t:
                write_parquet(frame, t / "x.parquet") if where != "write" else write(t / "x.parquet")

    with pytest.raises(OutputError, match=rf"^{tmp_path}/out\S*: cannot write the output \(No space left on device\)$"):
        run()
    assert _names(tmp_path) == []


def test_nested_write_errors_name_the_output_not_the_temporary(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(OutputError) as info, atomic_dir(tmp_path / "model") as t:
        write_json(t / "metadata.json", {"a": 1})
    assert str(info.value).startswith(f"{tmp_path}/model/metadata.json: cannot write the output") and ".tmp-" not in str(info.value)


def test_other_errors_pass_through_untouched(tmp_path: Path):
    with pytest.raises(KeyError), atomic_dir(tmp_path / "out"):
        raise KeyError("not an OS error")
    with pytest.raises(ValueError, match="bad value"), atomic_file(tmp_path / "f.json"):
        raise ValueError("bad value")
    assert _names(tmp_path) == []


def test_a_file_in_the_way_of_the_parent(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with (
        pytest.raises(OutputError, match=r"f/sub/out\.json: cannot write output here \("),
        atomic_file(tmp_path / "f" / "sub" / "out.json"),
    ):
        pass
    assert _names(tmp_path) == ["f"]


def test_symlinked_outputs_are_written_through(tmp_path: Path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OutputExistsError, match="not empty"), atomic_dir(link):
        pass
    with atomic_dir(link, overwrite=True) as t:
        (t / "new.txt").write_text("new")
    assert link.is_symlink() and _names(target) == ["new.txt"] and _names(tmp_path) == ["link", "target"]
    flink = tmp_path / "flink.json"
    flink.symlink_to(target / "new.txt")
    write_json(flink, {"a": 1})
    assert flink.is_symlink() and (target / "new.txt").read_text().startswith("{")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "created")
    with atomic_dir(dangling) as t:
        (t / "x").write_text("x")
    assert dangling.is_symlink() and _names(tmp_path / "created") == ["x"]


def test_no_overwrite_file_refuses_one_that_appeared(tmp_path: Path):
    out = tmp_path / "r.parquet"

    def race() -> None:
        with atomic_file(out, overwrite=False) as t:
            t.write_text("mine")
            out.write_text("theirs")  # another run finished first

    with pytest.raises(OutputExistsError, match="appeared while this run was writing"):
        race()
    assert out.read_text() == "theirs" and _names(tmp_path) == ["r.parquet"]
    with atomic_file(tmp_path / "new.parquet", overwrite=False) as t:
        t.write_text("mine")
    assert (tmp_path / "new.parquet").read_text() == "mine"


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_two_concurrent_writers_exactly_one_wins(tmp_path: Path, kind: str):
    out = tmp_path / ("out" if kind == "dir" else "out.json")
    both_inside = threading.Barrier(2)
    results: dict[str, str] = {}

    def writer(name: str) -> None:
        try:
            if kind == "dir":
                with atomic_dir(out) as t:
                    (t / "who.txt").write_text(name)
                    both_inside.wait(timeout=30)
            else:
                with atomic_file(out, overwrite=False) as t:
                    t.write_text(name)
                    both_inside.wait(timeout=30)
            results[name] = "won"
        except OutputExistsError as exc:
            results[name] = str(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    winners = [n for n, r in results.items() if r == "won"]
    assert len(results) == 2 and len(winners) == 1, results
    loser = next(r for r in results.values() if r != "won")
    assert "appeared while this run was writing" in loser
    who = (out / "who.txt") if kind == "dir" else out
    assert who.read_text() == winners[0]  # the winner's output, intact
    assert _names(tmp_path) == [out.name]


@pytest.mark.skipif(temporaries.fcntl is None, reason="POSIX signals")
@pytest.mark.parametrize("fn", ["atomic_dir", "atomic_file"])
def test_sigterm_inside_a_write_removes_its_temporaries_and_restores_the_handler(tmp_path: Path, fn: str):
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"

    def killed() -> None:
        with atomic_dir(out) if fn == "atomic_dir" else atomic_file(out) as t:
            (t / "half.parquet").write_text("x") if fn == "atomic_dir" else t.write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # the handler raises at the latest here

    with pytest.raises(SystemExit) as info:
        killed()
    assert info.value.code == 128 + signal.SIGTERM
    assert _names(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_application_signal_handler_is_left_alone(tmp_path: Path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with atomic_dir(tmp_path / "out") as t:
            assert signal.getsignal(signal.SIGTERM) is not temporaries._exit_on_signal
            (t / "x").write_text("x")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert _names(tmp_path / "out") == ["x"]
