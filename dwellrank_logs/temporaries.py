"""The temporaries of atomic writes: locked siblings of an output, swept when their run is gone.

Each write holds ``flock`` on ``.<name>.lock-<token>`` beside ``.<name>.tmp-<token>``;
the kernel drops the lock however the process dies, so the next write of the
same output removes exactly the temporaries no live run holds.  SIGINT, SIGTERM
and SIGHUP remove the running write's temporaries before the process exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on Windows: temporaries of killed runs are then left in place
    fcntl = None  # type: ignore[assignment]

__all__ = ["sweep_stale"]


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


# Signals that would end the process without unwinding the stack: while an output is being
# written they raise SystemExit instead, so the temporaries go (SIGINT already raises
# KeyboardInterrupt, unless a parent set it to the default action).
_EXIT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _cleanup_on_signals() -> Iterator[None]:
    """For the block, turn a terminating signal left at its default action into ``SystemExit(128 + signum)``.

    Only in the main thread (where Python runs signal handlers), only for
    signals whose handler is the default (an application's own handler, an
    ignored signal and an enclosing block's handler are left alone), and the
    previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = {}
    for s in _EXIT_SIGNALS:
        if signal.getsignal(s) == signal.SIG_DFL:
            installed[s] = signal.signal(s, _exit_on_signal)
    try:
        yield
    finally:
        for s, previous in installed.items():
            signal.signal(s, previous)


@contextlib.contextmanager
def _temporary(target: Path, directory: bool) -> Iterator[Path]:
    """A locked temporary file or folder next to ``target``, removed if the block fails.

    Temporaries of ``target`` left by killed runs are removed first.  The
    block renames the temporary into place; permissions follow the umask, as
    for any file or folder.  A terminating signal during the block removes
    the temporary and its lock before the process exits.
    """
    sweep_stale(target)
    with _cleanup_on_signals(), _run_lock(target) as token:
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
