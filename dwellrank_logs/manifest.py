"""Manifests of saved model directories: every file with its size and sha256, checked before anything reads them.

Model directories are read by native code (LightGBM's model parser, torch's
unpickler) that may abort the whole process or misread a damaged file rather
than raise.  So a save writes ``manifest.json`` last, listing every file it
wrote, and a load calls :func:`verify_manifest` first: a missing, truncated,
changed or unexpected file is named in one line before any library opens it.
A directory without a manifest was written before manifests existed (or not
by dwellrank) and is refused with what to do about it.

``manifest.json`` holds::

    {"manifest_format": 1, "kind": "<what the directory is>", "format": <its layout version>,
     "files": {"<relative/posix/path>": {"size": <bytes>, "sha256": "<hex>"}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from dwellrank_logs.errors import DwellrankError
from dwellrank_logs.write import write_json

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "ManifestError", "file_sha256", "has_manifest", "verify_manifest", "write_manifest"]

#: The manifest's file name inside the directory it describes.
MANIFEST_NAME = "manifest.json"
#: Version of the manifest's own layout (this library reads this one and older).
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(DwellrankError, ValueError):
    """A saved directory does not match its manifest, has none, or the manifest is unreadable."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, as lowercase hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files_below(directory: Path) -> list[str]:
    """Every file below ``directory`` (links to files included), as sorted relative POSIX paths, the manifest left out."""
    found = []
    for folder, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            p = Path(folder, name)
            if p.is_file():
                found.append(p.relative_to(directory).as_posix())
    return sorted(f for f in found if f != MANIFEST_NAME)


def write_manifest(
    directory: str | os.PathLike[str], kind: str, format_version: int, files: Iterable[str | os.PathLike[str]] | None = None
) -> Path:
    """Write ``manifest.json`` into ``directory`` (atomically), listing ``files`` with their sizes and sha256.

    Call it last, once every file of the directory is written (inside the
    block of :func:`~dwellrank_logs.write.atomic_dir`, so that the manifest
    and the files it lists appear together).

    Parameters
    ----------
    directory : path-like
    kind : str
        What the directory is (e.g. ``"dwellrank.ranking.model"``); a load that
        expects another kind is refused by name.
    format_version : int
        The version of the directory's layout, checked by :func:`verify_manifest`.
    files : iterable of path-like, optional
        Paths relative to ``directory``; every file below it by default.

    Returns
    -------
    Path
        The manifest's path.
    """
    d = Path(directory)
    names = _files_below(d) if files is None else sorted({PurePosixPath(Path(f).as_posix()).as_posix() for f in files})
    listed = {}
    for name in names:
        p = d / name
        listed[name] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
    doc = {"manifest_format": MANIFEST_FORMAT, "kind": kind, "format": int(format_version), "files": listed}
    path = d / MANIFEST_NAME
    write_json(path, doc)
    return path


def has_manifest(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds a manifest file (valid or not)."""
    return (Path(directory) / MANIFEST_NAME).is_file()


def _read(path: Path) -> dict[str, Any]:
    """The manifest document, its shape checked; ManifestError naming ``path`` otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({type(exc).__name__}: {exc})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not isinstance(doc.get("manifest_format"), int):
        raise ManifestError(f"{path}: not a dwellrank manifest (expected 'manifest_format' and 'files' entries)")
    for name, entry in files.items():
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ManifestError(f"{path}: lists {name!r}, which is not a path inside the directory")
        if not (isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)):
            raise ManifestError(f"{path}: entry {name!r} lacks an integer 'size' and a 'sha256' string, got {entry!r}")
    return doc


def verify_manifest(
    directory: str | os.PathLike[str], kind: str, format_version: int, remedy: str, allow_extra: bool = False
) -> dict[str, dict[str, Any]]:
    """Check every file of ``directory`` against its manifest before anything reads them.

    Sizes are compared first (cheap; a truncated file is reported as such),
    then the sha256 of each file.

    Parameters
    ----------
    directory : path-like
    kind : str
        The kind of directory the caller reads (as given to :func:`write_manifest`).
    format_version : int
        The layout version the caller reads.
    remedy : str
        What the user can do about a directory written without a manifest
        (e.g. ``"retrain it with `dwellrank train`"``), quoted in that message.
    allow_extra : bool
        Accept files the manifest does not list.  Hidden files (a name
        starting with ``.``) are always accepted: file managers leave them.

    Returns
    -------
    dict
        The manifest's ``files`` entries: relative path -> ``{"size", "sha256"}``.

    Raises
    ------
    ManifestError
        One line naming the directory or file and what differs: no manifest,
        an unreadable one, another kind or format, a file missing, of another
        size, with another sha256, or a file the manifest does not list.
    """
    d = Path(directory)
    path = d / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"{d}: no {MANIFEST_NAME}; written by an older version of dwellrank (before model directories "
            f"carried a manifest of their files) or not by dwellrank; {remedy}"
        )
    doc = _read(path)
    if doc["manifest_format"] > MANIFEST_FORMAT:
        raise ManifestError(
            f"{path}: manifest_format {doc['manifest_format']}, this library reads up to {MANIFEST_FORMAT} (a newer dwellrank wrote it)"
        )
    if doc.get("kind") != kind:
        raise ManifestError(f"{path}: the directory holds a {doc.get('kind')!r}, expected a {kind!r}")
    if doc.get("format") != format_version:
        raise ManifestError(f"{path}: format {doc.get('format')!r}, this library reads {format_version}; retrain the model")
    files: dict[str, dict[str, Any]] = doc["files"]
    damaged = _size_problems(d, files)
    if not damaged:
        damaged = [
            f"{d / n}: changed since it was saved (sha256 differs from {MANIFEST_NAME})"
            for n, e in files.items()
            if file_sha256(d / n) != e["sha256"]
        ]
    if damaged:  # nothing in this library can repair a damaged directory
        raise ManifestError(damaged[0] + _more(damaged) + "; restore the directory from a copy or retrain")
    if not allow_extra:
        extra = [n for n in _files_below(d) if n not in files and not any(part.startswith(".") for part in PurePosixPath(n).parts)]
        if extra:
            raise ManifestError(f"{d / extra[0]}: not listed in {MANIFEST_NAME} (added after the save?)" + _more(extra) + "; remove it")
    return files


def _more(problems: list[str]) -> str:
    return f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""


def _size_problems(d: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """Files listed but missing, not regular files, or of another size than listed."""
    problems = []
    for name, entry in files.items():
        p = d / name
        if not p.exists():
            problems.append(f"{p}: missing ({MANIFEST_NAME} lists it, {entry['size']:,} bytes)")
        elif not p.is_file():
            problems.append(f"{p}: not a file ({MANIFEST_NAME} lists a file of {entry['size']:,} bytes)")
        else:
            size = p.stat().st_size
            if size != entry["size"]:
                how = "truncated or changed" if size < entry["size"] else "changed"
                problems.append(f"{p}: {size:,} bytes where {MANIFEST_NAME} lists {entry['size']:,} ({how} since it was saved)")
    return problems
