"""Output paths, checked before any work: where an output goes and whether it can be written there.

One rule for every verb that writes.  An output path names a new entry (not
``''``, ``.`` or ``..``); a symbolic link is written through, so the link
stays and its target is what gets replaced; the nearest existing folder above
it is a writable directory; an existing output is replaced only when asked;
and an output is never one of the run's inputs, inside one, or a folder
holding one.  Each check raises one line naming the path (and the CLI flag,
given as ``what``) and the system's reason.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping
from pathlib import Path

from dwellrank_logs.errors import OutputError, OutputExistsError, first_line

__all__ = [
    "check_not_input",
    "check_output_dir",
    "check_output_file",
    "check_writable",
    "os_reason",
    "output_target",
]

PathArg = str | os.PathLike[str]


def _label(what: str | None, path: PathArg) -> str:
    return f"{what} {os.fspath(path)}" if what else os.fspath(path)


def output_target(path: PathArg, what: str | None = None) -> Path:
    """The entry an output at ``path`` replaces: ``path`` itself, or the target of a symbolic link.

    Raises
    ------
    OutputError
        ``path`` is empty, or ends in ``.``/``..`` or is a root, which name no
        entry that could be replaced.
    """
    raw = os.fspath(path)
    if raw == "":
        raise OutputError(f"{what or 'output'} '': empty path; give a file or directory name such as runs/out")
    p = Path(raw)
    if p.name in ("", ".", "..") or raw.rstrip("/").endswith(("/.", "/..")) or raw.rstrip("/") in (".", ".."):
        raise OutputError(
            f"{_label(what, raw)}: names a directory itself ('.', '..' or a root), not an entry to write; give a name such as runs/out"
        )
    if p.is_symlink():
        # Written through: the link is kept and what it points at is replaced (resolve() follows chains).
        return Path(os.path.realpath(p))
    return p


def os_reason(exc: BaseException) -> str | None:
    """The system's reason (``strerror``) behind ``exc``, or None when it is not an operating-system error.

    An :class:`OSError` gives its own; polars reports IO errors in its
    message as ``(os error N)``, of which the write errors (no space, quota,
    file too large, read-only) are recognised.
    """
    if isinstance(exc, OSError) and not isinstance(exc, OutputError):
        return os.strerror(exc.errno) if exc.errno else (exc.strerror or first_line(exc))
    m = re.search(r"\(os error (\d+)\)", str(exc))
    if m and int(m.group(1)) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        return os.strerror(int(m.group(1)))
    return None


def check_writable(path: PathArg, what: str | None = None) -> None:
    """Refuse, before any work and without creating anything, an output that could not be created at ``path``.

    The nearest existing folder above the output (its parent, or the first
    ancestor that exists, as the missing ones would be created) must be a
    directory this process can write in, on a file system mounted read-write
    that is not already full.  (A disk that fills during the run is reported
    when the write fails.)

    Raises
    ------
    OutputError
        ``<what> <path>: cannot write output here (<folder>: <reason>)``, or a file is in the way.
    """
    target = output_target(path, what)
    here = target.parent if str(target.parent) else Path(".")
    for folder in (here, *here.parents):
        if not (folder.exists() or folder.is_symlink()):
            continue
        if not folder.is_dir():
            raise OutputError(f"{_label(what, path)}: cannot write output here ({folder} is a file, not a directory)")
        try:
            fs = os.statvfs(folder)
        except (OSError, AttributeError):  # statvfs is not everywhere; access() below still answers
            fs = None
        if fs is not None and fs.f_flag & os.ST_RDONLY:
            raise OutputError(f"{_label(what, path)}: cannot write output here ({folder}: {os.strerror(errno.EROFS)})")
        if fs is not None and fs.f_blocks and (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) == 0:
            raise OutputError(f"{_label(what, path)}: cannot write output here ({folder}: {os.strerror(errno.ENOSPC)})")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{_label(what, path)}: cannot write output here ({folder}: {os.strerror(errno.EACCES)})")
        return


def check_output_file(path: PathArg, what: str = "output", overwrite: bool = True) -> None:
    """Refuse, before any work, a file output that could not be written or would replace a file unasked.

    Raises
    ------
    OutputExistsError
        ``<what> <path>: is a directory, expected a file path``, or ``path``
        exists and ``overwrite`` is false.
    OutputError
        See :func:`check_writable`.
    """
    target = output_target(path, what)
    if target.is_dir():
        raise OutputExistsError(f"{what} {os.fspath(path)}: is a directory, expected a file path")
    if not overwrite and target.exists():
        raise OutputExistsError(f"{what} {os.fspath(path)}: exists (pass --overwrite to replace it)")
    check_writable(path, what)


def check_output_dir(path: PathArg, overwrite: bool = False, what: str | None = None) -> None:
    """Refuse, before any work and without creating anything, an output directory that cannot be written.

    A symbolic link to a directory is checked as that directory (it is written through).

    Raises
    ------
    OutputExistsError
        ``path`` is a file, or a non-empty directory while ``overwrite`` is false.
    OutputError
        See :func:`check_writable`.
    """
    target = output_target(path, what)
    shown = _label(what, path)
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{shown}: exists and is not a directory")
    if target.is_dir():
        try:
            full = any(target.iterdir())
        except OSError as exc:
            raise OutputError(f"{shown}: cannot list the existing output ({os_reason(exc)})") from exc
        if full and not overwrite:
            raise OutputExistsError(f"{shown}: directory is not empty (pass --overwrite to replace it)")
    check_writable(path, what)


def _real(path: PathArg) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def check_not_input(out: PathArg, inputs: Mapping[str, PathArg | None], what: str = "output") -> None:
    """Refuse an output that is one of the run's inputs, lies inside one, or is a folder holding one.

    Paths are compared after following symbolic links (and by inode for
    existing files, so a hard link is caught too).  ``inputs`` maps a label
    (the CLI flag, such as ``"--logs"``) to a path, or None for an input not given.

    Raises
    ------
    OutputError
        ``<what> <out>: is the <label> input ...``, ``lies inside ...`` or ``holds ...``.
    """
    o = _real(out)
    for label, given in inputs.items():
        if given is None or os.fspath(given) == "":
            continue
        i = _real(given)
        same = o == i
        if not same and o.exists() and i.exists():
            try:
                same = os.path.samefile(o, i)
            except OSError:
                same = False
        if same:
            raise OutputError(f"{what} {os.fspath(out)}: is the {label} input {os.fspath(given)}; write the output elsewhere")
        if i in o.parents:
            raise OutputError(f"{what} {os.fspath(out)}: lies inside the {label} input {os.fspath(given)}; write the output elsewhere")
        if o in i.parents:
            raise OutputError(
                f"{what} {os.fspath(out)}: holds the {label} input {os.fspath(given)}, which writing the output would replace; "
                "write the output elsewhere"
            )
