"""Reading log tables lazily: one Parquet file or a directory of part files.

Inputs are Parquet scanned lazily with polars so that a stage reads only the
columns it needs.  A table may be a Spark/Hive/pyarrow dataset directory; its
parts are checked (readable, one schema, a consistent Hive layout) before any
stage reads them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import polars as pl

from dwellrank_logs.errors import SchemaError, first_line
from dwellrank_logs.schema import TABLE_NAMES, validate_frame

__all__ = ["open_parquet", "parquet_parts", "scan_logs", "scan_table", "table_path"]


def table_path(logs_dir: str | os.PathLike[str], table: str) -> Path:
    """Path of ``table`` inside a logs directory (``<dir>/<table>.parquet``)."""
    return Path(logs_dir) / f"{table}.parquet"


def scan_table(
    path: str | os.PathLike[str],
    table: str,
    columns: tuple[str, ...] | None = None,
    check_domains: bool = True,
) -> pl.LazyFrame:
    """Lazily scan one Parquet log table and validate its schema.

    Parameters
    ----------
    path : path-like
        A Parquet file, or a directory of part files (see :func:`open_parquet`).
    table : str
        Which schema to validate against (one of ``dwellrank_logs.schema.TABLE_NAMES``).
    columns : tuple of str, optional
        Validate only these columns of the schema.
    check_domains : bool
        Check the values in one aggregation pass: no nulls in non-null
        columns, the table's key (members' ``member_id``, updates'
        ``update_id``, sessions' ``session_id``) unique, string columns with a
        fixed domain (event types, channels) within it.  See
        :func:`dwellrank_logs.schema.validate_frame`.

    Raises
    ------
    SchemaError
        The file does not exist, is empty or not Parquet, or breaks the
        schema; the message names the file, the column and how many rows.
    """
    p = Path(path)
    return validate_frame(open_parquet(p, table), table, source=str(p), columns=columns, check_domains=check_domains)


def open_parquet(path: str | os.PathLike[str], table: str) -> pl.LazyFrame:
    """The plain lazy scan of a Parquet file or dataset directory, after file-level checks.

    ``path`` is one Parquet file, or a directory of Parquet part files such
    as Spark or pyarrow write them: every ``*.parquet`` file below it, at
    any depth, is a part (see :func:`parquet_parts`), and ``key=value``
    folders between it and a part become columns (Hive partitioning; polars
    infers their types from the values, so ``g=01`` and ``g=1`` are both the
    integer 1).

    Every file exists, is not empty and has a readable Parquet footer, and
    the parts of a directory agree on their columns and types; the schema is
    resolved once and kept by the returned frame, so a caller that validates
    some columns itself (:func:`dwellrank_logs.schema.validate_frame`) and computes on
    the uncast columns reads the footer only once.

    Raises
    ------
    SchemaError
        Naming the file (the part, for a directory) and ``table`` (what it
        was expected to hold).
    """
    p = Path(path)
    if not p.exists():
        raise SchemaError(f"{p}: no such file (expected the {table} table as Parquet)")
    if p.is_dir():
        return _open_dataset(p, table)
    _check_part(p, table)
    try:
        lf = pl.scan_parquet(p, glob=False)
        lf.collect_schema()
    except Exception as exc:
        raise SchemaError(f"{p}: not a readable Parquet file ({first_line(exc)})") from exc
    return lf


# Names of files and directories that are not data: Spark's _SUCCESS and _temporary/, Hadoop's
# .crc checksums, and the .<name>.tmp-* temporaries of this module.
_NOT_DATA = (".", "_")


def parquet_parts(directory: str | os.PathLike[str], table: str = "log") -> list[Path]:
    """The Parquet part files of a dataset directory, sorted.

    Every file below ``directory`` (at any depth, following symbolic links
    as polars does) whose name does not start with ``.`` or ``_`` (markers
    such as ``_SUCCESS``, ``.crc`` checksums and the temporaries of
    unfinished writes); each must be named ``*.parquet``.  Folders named
    ``key=value`` are Hive partitions: where there are any, every part must
    sit under the same keys, in the same order.

    Raises
    ------
    SchemaError
        The directory holds no part; a file not named ``*.parquet``; a file
        inside a folder whose name starts with ``.`` or ``_`` (such as
        Spark's ``_temporary/``); parts under different Hive keys; a folder
        that cannot be listed or is reached twice through links.
    """
    d = Path(directory)
    parts: list[Path] = []
    seen: set[str] = set()

    def unreadable(exc: OSError) -> None:
        raise SchemaError(f"{exc.filename}: cannot list this folder of the {table} dataset {d} ({exc.strerror})")

    for root, dirs, files in os.walk(d, onerror=unreadable, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            # polars would read the parts below it twice.
            raise SchemaError(f"{root}: reached twice through symbolic links in the {table} dataset {d}; each part must be listed once")
        seen.add(real)
        dirs.sort()
        hidden = [c for c in Path(root).relative_to(d).parts if c.startswith(_NOT_DATA)]
        for name in sorted(files):
            if name.startswith(_NOT_DATA):
                continue
            f = Path(root, name)
            if hidden:
                # polars skips marked file names but not marked folders: refuse rather than
                # read what is likely an unfinished write.
                raise SchemaError(
                    f"{f}: inside '{hidden[0]}', which marks an unfinished write or non-data, in the {table} dataset "
                    f"directory {d}; move it out or point at a directory of finished part files"
                )
            if f.suffix != ".parquet":
                raise SchemaError(
                    f"{f}: not named *.parquet; the {table} dataset directory {d} must hold only Parquet part files "
                    "(names starting with '.' or '_' are skipped)"
                )
            parts.append(f)
    if not parts:
        raise SchemaError(f"{d}: directory holds no *.parquet files (expected the {table} table as Parquet)")
    parts.sort()
    _check_hive_layout(parts, d, table)
    return parts


def _hive_keys(part: Path, d: Path) -> tuple[tuple[str, ...], bool]:
    """The Hive keys of the folders between ``d`` and ``part``, and whether any folder is not ``key=value``."""
    folders = part.relative_to(d).parts[:-1]
    return tuple(c.split("=", 1)[0] for c in folders if "=" in c), any("=" not in c for c in folders)


def _check_hive_layout(parts: list[Path], d: Path, table: str) -> None:
    layouts = [_hive_keys(f, d) for f in parts]
    if not any(keys for keys, _ in layouts):
        return
    ref, ref_keys = next((f, keys) for f, (keys, _) in zip(parts, layouts, strict=True) if keys)
    for f, (keys, plain) in zip(parts, layouts, strict=True):
        if keys != ref_keys or plain:
            got = "/".join(f"{k}=" for k in keys) or "no key=value folder"
            if plain:
                got += ", and a folder that is not key=value"
            raise SchemaError(
                f"{f}: sits under {got}, but {ref} under {'/'.join(f'{k}=' for k in ref_keys)}; every part of the "
                f"{table} dataset {d} must sit under the same Hive key=value folders"
            )


def _check_part(p: Path, table: str) -> None:
    try:
        st = p.stat()
    except OSError as exc:  # a dangling link, a part removed meanwhile, no permission
        raise SchemaError(f"{p}: cannot read ({exc.strerror}), expected the {table} table as Parquet") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SchemaError(f"{p}: not a regular file, expected the {table} table as Parquet")
    if st.st_size == 0:
        raise SchemaError(f"{p}: file is empty, expected the {table} table as Parquet")


def _read_schema(p: Path) -> pl.Schema:
    # glob=False: a path with '[' or '*' in it names one file, not a pattern.
    try:
        return pl.scan_parquet(p, glob=False).collect_schema()
    except Exception as exc:
        raise SchemaError(f"{p}: not a readable Parquet file ({first_line(exc)})") from exc


def _open_dataset(d: Path, table: str) -> pl.LazyFrame:
    parts = parquet_parts(d, table)
    first: pl.Schema | None = None
    for f in parts:
        _check_part(f, table)
        schema = _read_schema(f)
        if first is None:
            first = schema
            continue
        # polars would stop at the first difference too, but without naming the files.
        missing = [c for c in first if c not in schema]
        extra = [c for c in schema if c not in first]
        if missing or extra:
            what = "; ".join(
                s
                for s in (
                    f"missing column(s) {', '.join(repr(c) for c in missing)}" if missing else "",
                    f"extra column(s) {', '.join(repr(c) for c in extra)}" if extra else "",
                )
                if s
            )
            raise SchemaError(f"{f}: {what} compared with {parts[0]}; the parts of the {table} dataset {d} must have the same columns")
        for c, dtype in schema.items():
            if dtype != first[c]:
                raise SchemaError(
                    f"{f}: column '{c}' is {dtype}, but {first[c]} in {parts[0]}; the parts of the {table} dataset {d} "
                    "must have the same column types"
                )
    assert first is not None
    keys = _hive_keys(parts[0], d)[0]
    both = [k for k in keys if k in first]
    if both:
        # polars would silently replace the file's column with the folder's value.
        raise SchemaError(
            f"{parts[0]}: column '{both[0]}' is both a Hive folder key and a column of the file; the {table} dataset {d} "
            "must hold each column in one place"
        )
    # Polars lists the directory itself, so Hive columns start below it (a list of files would
    # also parse key=value folders above it); the prefixes skip the same files as parquet_parts.
    try:
        lf = pl.scan_parquet(d, hive_partitioning=True, hidden_file_prefix=list(_NOT_DATA))
        lf.collect_schema()
    except Exception as exc:
        raise SchemaError(f"{d}: not a readable Parquet dataset ({first_line(exc)})") from exc
    return lf


def scan_logs(logs_dir: str | os.PathLike[str], tables: tuple[str, ...] = TABLE_NAMES) -> dict[str, pl.LazyFrame]:
    """Scan and validate several tables of a logs directory (types, nulls, keys, domains); see :func:`scan_table`."""
    d = Path(logs_dir)
    if not d.is_dir():
        raise SchemaError(f"{d}: not a directory of log tables")
    return {t: scan_table(table_path(d, t), t) for t in tables}


# Temporaries of an output ``<name>`` are ``.<name>.tmp-<token>`` (and, while atomic_dir swaps
# directories, ``.<name>.old-<token>``), with a lock file ``.<name>.lock-<token>`` that the
# writing process holds locked (flock) for as long as it runs.  The kernel releases the lock
# when the process dies, however it dies, so a lock that can be taken marks a killed run:
# this works across containers and pid namespaces on one machine, and across NFS clients.
