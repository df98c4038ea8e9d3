"""Writing outputs atomically: a temporary sibling first, renamed into place.

A failed run never leaves a half-written result: an error, SIGINT or SIGTERM
removes the run's temporaries, and a run killed outright leaves them behind a
lock it no longer holds, so the next write of the same output sweeps them.
An existing output is replaced only when asked, checked again by the final
rename, so of two runs writing one output without ``overwrite`` one wins and
the other fails.  Every operating-system error becomes one
:class:`~dwellrank_logs.errors.OutputError` line naming the path and the
system's reason.  The checks made before any work are in :mod:`dwellrank_logs.paths`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from dwellrank_logs.errors import DwellrankError, OutputError, OutputExistsError
from dwellrank_logs.paths import check_output_dir, check_output_file, os_reason, output_target
from dwellrank_logs.temporaries import _OLD, _TMP, _sibling, _temporary, _token, sweep_stale

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


def _write_failure(shown: str, exc: BaseException, tmp: Path) -> OutputError | None:
    """The one-line error for an operating-system error ``exc`` met while writing ``shown``, or None for any other error."""
    if isinstance(exc, DwellrankError):
        return None
    reason = os_reason(exc)
    if reason is None:
        return None
    where = getattr(exc, "filename", None)
    if where and not os.fspath(where).startswith(os.fspath(tmp)):
        reason += f": {where}"
    return OutputError(f"{shown}: cannot write the output ({reason})")


def _in_final_terms(exc: DwellrankError, tmp: Path, shown: str) -> DwellrankError | None:
    """``exc`` with the temporary directory's path in its message replaced by the output's, or None if it has none."""
    text = str(exc)
    if os.fspath(tmp) not in text:
        return None
    try:
        return type(exc)(text.replace(os.fspath(tmp), shown))
    except Exception:  # an exception type with another constructor: keep the original
        return None


@contextlib.contextmanager
def _as_output(tmp: Path, shown: str, commit: Callable[[], None]) -> Iterator[None]:
    """Run the block writing ``tmp``, then ``commit()`` it; every error names the output ``shown``, not ``tmp``."""
    try:
        yield
    except DwellrankError as exc:  # a nested write's error names this temporary: name the output instead
        renamed = _in_final_terms(exc, tmp, shown)
        if renamed is None:
            raise
        raise renamed from exc
    except Exception as exc:
        failure = _write_failure(shown, exc, tmp)
        if failure is None:
            raise
        raise failure from exc
    try:
        commit()
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"{shown}: cannot write the output ({os_reason(exc)})") from exc


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    Temporaries of ``path`` left by killed runs are removed first
    (:func:`sweep_stale`).  A symbolic link at ``path`` is written through.

    Parameters
    ----------
    path : path-like
    overwrite : bool
        Replace an existing file.  Without it a file at ``path``, there before
        or created by another run meanwhile, raises :class:`OutputExistsError`
        and is left as it is.

    Raises
    ------
    OutputError
        Any operating-system error while creating, writing or renaming
        (permissions, a read-only or full file system, a file in the way),
        as one line naming ``path`` and the system's reason.
    """
    shown = os.fspath(path)
    target = output_target(path)
    if target.is_dir():
        raise OutputExistsError(f"{shown}: is a directory, expected a file path")
    with contextlib.ExitStack() as stack:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(_temporary(target, directory=False))
        except OSError as exc:
            raise OutputError(f"{shown}: cannot write output here ({os_reason(exc)})") from exc
        with _as_output(tmp, shown, lambda: _commit_file(tmp, target, shown, overwrite)):
            yield tmp


def _commit_file(tmp: Path, target: Path, shown: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if target exists, however it got there: no run replaces another's file
    except FileExistsError:
        raise OutputExistsError(
            f"{shown}: appeared while this run was writing (another run?); left as it is (pass --overwrite to replace it)"
        ) from None
    except OSError:  # a file system without hard links: the check and the rename are then two steps
        if target.exists():
            raise OutputExistsError(f"{shown}: exists (pass --overwrite to replace it)") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_files(paths: Mapping[str, str | os.PathLike[str] | None], overwrite: bool = True) -> Iterator[dict[str, Path]]:
    """Temporaries for several file outputs, renamed into place together when the block succeeds.

    ``paths`` maps a label (an option name such as ``"--out"``, used in messages) to
    a path or None (that output is not wanted).  Each path is checked with
    :func:`check_output_file` before anything is written.  Yields label -> temporary
    path for the wanted outputs.  On any exception every temporary is removed and no
    output is touched: all outputs or none (only a failing rename itself, after the
    block, can leave the earlier ones renamed).  Errors are as for :func:`atomic_file`.
    """
    wanted = {k: p for k, p in paths.items() if p is not None}
    for label, p in wanted.items():
        check_output_file(p, label, overwrite=overwrite)
    with contextlib.ExitStack() as stack:
        yield {label: stack.enter_context(atomic_file(p, overwrite=overwrite)) for label, p in wanted.items()}


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The output directory.  A symbolic link is written through: the link
        stays, the directory it points at is what gets replaced.
    overwrite : bool
        Replace an existing non-empty directory.  Without it such a directory
        raises :class:`OutputExistsError` before any work is done, and again
        at the final rename if one appeared meanwhile (another run finished
        first): that run's output is left intact and this one's discarded.

    Temporaries of ``path`` left by killed runs are removed first
    (:func:`sweep_stale`); a terminating signal removes this run's.  Messages
    of errors raised in the block name the output's path, not the temporary's.

    Raises
    ------
    OutputError
        Any operating-system error while creating, writing or renaming,
        as one line naming ``path`` and the system's reason.
    """
    shown = os.fspath(path)
    check_output_dir(path, overwrite)
    target = output_target(path)
    parent = target.parent if str(target.parent) else Path(".")
    with contextlib.ExitStack() as stack:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = stack.enter_context(_temporary(target, directory=True))
        except OSError as exc:
            raise OutputError(f"{shown}: cannot write output here ({os_reason(exc)})") from exc
        with _as_output(tmp, shown, lambda: _commit_dir(tmp, target, shown, overwrite)):
            yield tmp


def _commit_dir(tmp: Path, target: Path, shown: str, overwrite: bool) -> None:
    """Rename ``tmp`` onto ``target``; a non-empty ``target`` only with ``overwrite``, checked by the rename itself."""
    if not overwrite or not target.exists():
        try:
            os.replace(tmp, target)  # rename(2) replaces an empty directory only: atomic against another run
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputExistsError(
                    f"{shown}: appeared while this run was writing (another run?); left as it is, this run's output "
                    "discarded (pass --overwrite to replace it)"
                ) from None
            if exc.errno == errno.ENOTDIR:
                raise OutputExistsError(f"{shown}: exists and is not a directory") from None
            raise
        return
    old = _sibling(target, _OLD, _token(target, _TMP, tmp))
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.exists():  # put the previous output back rather than leave nothing
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike[str], obj: Any, overwrite: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_file` for ``overwrite`` and errors)."""
    with atomic_file(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Write ``frame`` as Parquet (zstd), atomically (see :func:`atomic_file` for ``overwrite`` and errors).

    Statistics are written; the file's bytes depend only on the data, so the
    same seed gives byte-identical files.
    """
    with atomic_file(path, overwrite=overwrite) as tmp:
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
