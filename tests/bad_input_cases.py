"""Fixtures of the bad-input corpus (``tests/test_bad_input.py``): one small world, its broken copies, faults.

Everything here builds inputs; the corpus rows and their assertions are in the test module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Entries a write may leave only while it runs (see dwellrank_logs.write).
TEMPORARY_MARKS = (".tmp-", ".lock-", ".old-")


def _null_every(column: str, k: int) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """Set ``column`` to null in every ``k``-th row (k = 5: 20% of the rows)."""

    def apply(f: pl.DataFrame) -> pl.DataFrame:
        return f.with_columns(pl.when(pl.int_range(pl.len()) % k == 0).then(None).otherwise(pl.col(column)).alias(column))

    return apply


#: Broken copies of the shared logs: name -> (table, how the table is changed).
LOG_VARIANTS: dict[str, tuple[str, Callable[[pl.DataFrame], pl.DataFrame]]] = {
    "null_clicked": ("impressions", _null_every("clicked", 100)),
    "null_session_id_20pct": ("impressions", _null_every("session_id", 5)),
    "null_dwell": ("impressions", _null_every("dwell_s", 50)),
    "null_ts": ("impressions", _null_every("ts", 10)),
    "null_update_id": ("impressions", _null_every("update_id", 7)),
    "null_connections": ("members", _null_every("connections", 5)),
    "null_member_id_sessions_20pct": ("sessions", _null_every("member_id", 5)),
    "null_start_ts": ("sessions", _null_every("start_ts", 9)),
    "null_author": ("updates", _null_every("author_id", 4)),
    "null_event_type": ("events", _null_every("event_type", 100)),
    "dup_members": ("members", lambda f: pl.concat([f, f])),
    "dup_updates": ("updates", lambda f: pl.concat([f, f.head(3)])),
    "dup_sessions": ("sessions", lambda f: pl.concat([f, f.tail(1)])),
    "clicked_as_string": ("impressions", lambda f: f.with_columns(pl.col("clicked").cast(pl.String))),
    "no_clicked": ("impressions", lambda f: f.drop("clicked")),
    "dwell_as_string": ("impressions", lambda f: f.with_columns(pl.col("dwell_s").cast(pl.String))),
    "connections_all_null": ("members", lambda f: f.with_columns(pl.lit(None).alias("connections"))),
    "ts_as_int": ("impressions", lambda f: f.with_columns(pl.col("ts").dt.epoch("us").alias("ts"))),
}
#: Broken files instead of tables: name -> (table, what the file holds).
FILE_VARIANTS = {
    "missing_impressions": ("impressions", None),
    "empty_members": ("members", b""),
    "garbage_sessions": ("sessions", b"member_id,session_id\n1,2\n"),
}


def tree(*roots: Path) -> dict[str, str]:
    """Every entry below ``roots``: a file's sha256, ``dir``, or a link's target (links are not followed)."""
    out: dict[str, str] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            continue
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(folder, name)
                if p.is_symlink():
                    out[str(p)] = "link->" + os.readlink(p)
                elif p.is_dir():
                    out[str(p)] = "dir"
                else:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temporaries(*roots: Path) -> list[str]:
    """Temporaries and lock files of unfinished writes below ``roots``."""
    return [p for p in tree(*roots) if any(m in Path(p).name for m in TEMPORARY_MARKS)]


@dataclass
class World:
    """The module's small simulated world: logs, a model trained on them, the last day's candidates."""

    base: Path
    logs: Path
    model: Path
    candidates: Path
    _made: dict[str, Path] = field(default_factory=dict)

    @property
    def impressions(self) -> Path:
        return self.logs / "impressions.parquet"

    def bad_logs(self, name: str) -> Path:
        """A copy of the logs with one table broken as :data:`LOG_VARIANTS` or :data:`FILE_VARIANTS` says (built once)."""
        if name in self._made:
            return self._made[name]
        d = self.base / "bad" / name
        shutil.copytree(self.logs, d)
        if name in LOG_VARIANTS:
            table, change = LOG_VARIANTS[name]
            p = d / f"{table}.parquet"
            change(pl.read_parquet(p)).write_parquet(p)
        else:
            table, content = FILE_VARIANTS[name]
            p = d / f"{table}.parquet"
            if content is None:
                p.unlink()
            else:
                p.write_bytes(content)
        self._made[name] = d
        return d

    def bad_candidates(self, kind: str) -> Path:
        """A broken candidates file: empty, not Parquet, no rows, a missing or mistyped key column."""
        key = f"cand:{kind}"
        if key in self._made:
            return self._made[key]
        p = self.base / "bad" / f"candidates_{kind}.parquet"
        p.parent.mkdir(exist_ok=True)
        good = pl.read_parquet(self.candidates)
        if kind == "empty":
            p.write_bytes(b"")
        elif kind == "garbage":
            p.write_bytes(b"PAR1 not really")
        elif kind == "no_rows":
            good.clear().write_parquet(p)
        elif kind == "no_member_id":
            good.drop("member_id").write_parquet(p)
        elif kind == "ts_as_string":
            good.with_columns(pl.col("request_ts").cast(pl.String)).write_parquet(p)
        else:
            raise KeyError(kind)
        self._made[key] = p
        return p

    def nan_impressions(self) -> Path:
        """The impressions with NaN dwell in a few rows (dropped with a warning, refused with --strict)."""
        p = self.base / "bad" / "impressions_nan.parquet"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            f = pl.read_parquet(self.impressions)
            f.with_columns(
                pl.when(pl.int_range(pl.len()) < 5).then(float("nan")).otherwise(pl.col("dwell_s")).alias("dwell_s")
            ).write_parquet(p)
        return p


@dataclass
class Case:
    """The per-case folder and the faults a row may ask for; mounts are undone at teardown."""

    dir: Path
    world: World
    _mounts: list[Path] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return self.dir / name

    def full_dir(self, name: str = "full") -> Path:
        """A non-empty directory (an earlier output)."""
        d = self.dir / name
        d.mkdir()
        (d / "earlier.txt").write_text("an earlier output\n")
        return d

    def file(self, name: str = "a_file", text: str = "not a directory\n") -> Path:
        p = self.dir / name
        p.write_text(text)
        return p

    def link(self, target: Path, name: str = "link") -> Path:
        p = self.dir / name
        p.symlink_to(target)
        return p

    def readonly_chmod(self) -> Path:
        """A folder made read-only by its mode; skipped where that does not stop writes (root)."""
        d = self.dir / "ro"
        d.mkdir()
        d.chmod(0o555)
        if os.access(d, os.W_OK):
            d.chmod(0o755)
            pytest.skip("mode 0555 does not stop this user from writing (root)")
        return d

    def mount(self, name: str, size: str, read_only: bool = False) -> Path:
        """A small tmpfs at ``name`` (read-only, or ``size`` bytes to fill); skipped where mounting is not allowed."""
        d = self.dir / name
        d.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is None or done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
        self._mounts.append(d)
        return d

    def readonly_mount(self) -> Path:
        return self.mount("rofs", "1m", read_only=True)

    def full_fs(self, size: str = "48k") -> Path:
        return self.mount("smallfs", size)

    def filled_fs(self) -> Path:
        """A small tmpfs with no free block left (a disk already full when the command starts)."""
        d = self.full_fs("16k")
        with contextlib.suppress(OSError), (d / "filler").open("wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
        return d

    def unmount(self) -> None:
        for d in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=20, check=False)
        self._mounts.clear()


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eacces(*_args: object, **_kwargs: object) -> None:
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def _patch_all(mp: pytest.MonkeyPatch, *patches: tuple[object, str, object]) -> None:
    for owner, name, value in patches:
        mp.setattr(owner, name, value)


def _polars_enospc(*_args: object, **_kwargs: object) -> None:
    # What polars raises when the disk fills (polars 1.x and 2.x): the OS error only in its message.
    raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left on device (os error 28)")


#: Write faults injected in-process: name -> monkeypatch(setattr-style) applications.
FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "enospc_rename": lambda mp: _patch_all(mp, (os, "replace", _enospc), (os, "link", _enospc)),
    "enospc_polars": lambda mp: mp.setattr(pl.DataFrame, "write_parquet", _polars_enospc),
    "enospc_arrow": lambda mp: mp.setattr(pq.ParquetWriter, "write_table", _enospc),
    "eacces_mkdir": lambda mp: mp.setattr(Path, "mkdir", _eacces),
}


def case_folder(tmp_path: Path, world: World) -> Iterator[Case]:
    case = Case(tmp_path / "case", world)
    case.dir.mkdir()
    try:
        yield case
    finally:
        case.unmount()
        for folder, dirs, _files in os.walk(case.dir):  # give back write access so that pytest can clean up
            for d in dirs:
                p = Path(folder, d)
                if not p.is_symlink():
                    with contextlib.suppress(OSError):
                        p.chmod(0o755)
