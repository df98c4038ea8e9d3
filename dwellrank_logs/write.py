"""Writing outputs atomically: a temporary sibling first, renamed into place.

A failed run never leaves a half-written result, and a killed run's
temporaries are recognised by a lock it no longer holds and swept by the next
write of the same output.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

try:
    import fcntl
except ImportError:  # not on Windows: temporaries of killed runs are then left in place
    fcntl = None  # type: ignore[assignment]

from dwellrank_logs.errors import OutputExistsError

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_files",
    "check_output_dir",
    "check_output_file",
    "sweep_stale",
    "write_json",
    "write_parquet",
]


_TMP, _OLD, _LOCK = "tmp", "old", "lock"


def _sibling(target: Path, kind: str, token: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{token}"


def _token(target: Path, kind: str, sibling: str | os.PathLike[str]) -> str:
    """The run token in the name of ``sibling`` (the inverse of :func:`_sibling`)."""
    return Path(sibling).name[len(f".{target.name}.{kind}-") :]


@contextlib.contextmanager
def _run_lock(target: Path) -> Iterator[str]:
    """Hold a fresh lock file next to ``target`` for the block; yield its token."""
    fd, lock = tempfile.mkstemp(prefix=f".{target.name}.{_LOCK}-", dir=target.parent)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield _token(target, _LOCK, lock)
    finally:
        # Unlinked before the lock goes: a sweeper never takes a lock whose run is finishing.
        Path(lock).unlink(missing_ok=True)
        os.close(fd)


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def sweep_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``target`` left by runs that were killed.

    A run killed outright (SIGKILL, out of memory) cannot clean up: its
    ``.<name>.tmp-<token>`` folder or file stays next to the output.  Each
    run holds a lock on ``.<name>.lock-<token>`` while it writes; the kernel
    releases it when the process dies.  An entry is removed only when its lock
    can be taken, so a live run's temporaries (another process, container or
    NFS client) are never touched, and entries without a lock file are left
    alone.  A run killed between the two renames of :func:`atomic_dir` leaves
    the previous output in ``.<name>.old-<token>``: it is removed once
    ``target`` exists again, and kept (with a warning) while it is the only
    copy.  Entries that cannot be removed (permissions) are skipped.

    Returns
    -------
    list of Path
        What was removed.
    """
    t = Path(target)
    parent = t.parent if str(t.parent) else Path(".")
    if fcntl is None or not parent.is_dir():
        return []
    prefix = f".{t.name}.{_LOCK}-"
    removed = []
    for lock in parent.iterdir():
        if not lock.name.startswith(prefix) or lock.is_symlink() or not lock.is_file():
            continue
        token = _token(t, _LOCK, lock)
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: a live run
            if not lock.exists():
                continue  # finished (and unlinked) while we opened it
            tmp, old = _sibling(t, _TMP, token), _sibling(t, _OLD, token)
            gone = [tmp] if (tmp.exists() or tmp.is_symlink()) and _remove(tmp) else []
            if old.exists() and not t.exists():
                warnings.warn(
                    f"{old}: the previous {t.name} of a run killed while replacing it; kept, as {t} does not exist",
                    stacklevel=3,
                )
                removed.extend(gone)
                continue  # the lock file stays, so the next sweep looks again
            if old.exists() and _remove(old):
                gone.append(old)
            if _remove(lock):
                gone.append(lock)
            removed.extend(gone)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _temporary(target: Path, directory: bool) -> Iterator[Path]:
    """A locked temporary file or folder next to ``target``, removed if the block fails.

    Temporaries of ``target`` left by killed runs are removed first.  The
    block renames the temporary into place; permissions follow the umask, as
    for any file or folder.
    """
    sweep_stale(target)
    with _run_lock(target) as token:
        tmp = _sibling(target, _TMP, token)
        if directory:
            tmp.mkdir(mode=0o777)
        else:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            yield tmp
        except BaseException:
            _remove(tmp)
            raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    Temporaries of ``path`` left by killed runs are removed first
    (:func:`sweep_stale`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _temporary(target, directory=False) as tmp:
        yield tmp
        os.replace(tmp, target)


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """Refuse, before any work, a file output whose path is a directory.

    Raises
    ------
    OutputExistsError
        ``<what> <path>: is a directory, expected a file path``.
    """
    if Path(path).is_dir():
        raise OutputExistsError(f"{what} {path}: is a directory, expected a file path")


@contextlib.contextmanager
def atomic_files(paths: Mapping[str, str | os.PathLike[str] | None]) -> Iterator[dict[str, Path]]:
    """Temporaries for several file outputs, renamed into place together when the block succeeds.

    ``paths`` maps a label (an option name such as ``"--out"``, used in messages) to
    a path or None (that output is not wanted).  Each path is checked with
    :func:`check_output_file` before anything is written.  Yields label -> temporary
    path for the wanted outputs.  On any exception every temporary is removed and no
    output is touched: all outputs or none (only a failing rename itself, after the
    block, can leave the earlier ones renamed).
    """
    wanted = {k: p for k, p in paths.items() if p is not None}
    for label, p in wanted.items():
        check_output_file(p, label)
    with contextlib.ExitStack() as stack:
        yield {label: stack.enter_context(atomic_file(p)) for label, p in wanted.items()}


def check_output_dir(path: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse, before any work and without creating anything, an output directory that cannot be written.

    Raises
    ------
    OutputExistsError
        ``path`` is a file, or a non-empty directory while ``overwrite`` is false.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise OutputExistsError(f"{p}: directory is not empty (pass --overwrite to replace it)")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The output directory.
    overwrite : bool
        Replace an existing non-empty directory.  Without it such a directory
        raises :class:`OutputExistsError` before any work is done.

    Temporaries of ``path`` left by killed runs are removed first
    (:func:`sweep_stale`).
    """
    target = Path(path)
    check_output_dir(target, overwrite)
    parent = target.parent if str(target.parent) else Path(".")
    with contextlib.ExitStack() as stack:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(_temporary(target, directory=True))
        except OSError as exc:
            raise OutputExistsError(f"{target}: cannot write output here ({exc.strerror})") from exc
        yield tmp
        if target.exists():
            old = _sibling(target, _OLD, _token(target, _TMP, tmp))
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` as Parquet (zstd), atomically.

    Statistics are written; the file's bytes depend only on the data, so the
    same seed gives byte-identical files.
    """
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
