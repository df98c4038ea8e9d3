"""Where the Spark engine's inputs and outputs are: paths, URIs Spark resolves, and tables of the Spark catalog.

Logs are a directory of ``<table>.parquet`` (a local path, or a URI:
``file://``, ``hdfs://``, ``s3a://``; :func:`table_uri`) or tables of the
Spark catalog (a Hive metastore, Glue, Unity, or temporary views) given as
``hive:DB`` or ``hive:DB.PREFIX`` (:func:`catalog_names`,
:func:`logs_for_spark`); one table as ``hive:NAME`` (:func:`table_for_spark`).
Files the driver writes (models, scores, JSON) take a local path or a
``file:`` URI (:func:`driver_path`).

pyspark is imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from dwellrank_logs.errors import ConfigError, OutputError, SchemaError
from dwellrank_logs.read import table_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["CATALOG_SCHEME", "catalog_names", "driver_path", "logs_for_spark", "table_for_spark", "table_uri"]

CATALOG_SCHEME = "hive:"
"""The prefix of logs (or a table) given as names in the Spark catalog rather than as a path."""


def catalog_names(spec: str, tables: Sequence[str]) -> dict[str, str]:
    """The catalog table of each of ``tables`` for logs given as ``hive:DB`` or ``hive:DB.PREFIX``.

    ``hive:feed`` names ``feed.members``, ``feed.sessions``, ...;
    ``hive:feed.dwell`` names ``feed.dwell_members``, ...; the part before
    the last dot is the database (``hive:cat.feed.dwell``: catalog ``cat``,
    database ``feed``), and a trailing dot means no prefix (``hive:cat.feed.``).

    Raises
    ------
    ConfigError
        ``spec`` does not start with ``hive:`` or names nothing after it.
    """
    body = spec[len(CATALOG_SCHEME) :] if spec.startswith(CATALOG_SCHEME) else None
    if not body or any(ch.isspace() for ch in body) or body.startswith(".") or ".." in body:
        raise ConfigError(f"{spec!r}: catalog tables are named hive:DB (DB.members, ...) or hive:DB.PREFIX (DB.PREFIX_members, ...)")
    database, dot, prefix = body.rpartition(".")
    if not dot:
        return {t: f"{body}.{t}" for t in tables}
    return {t: f"{database}.{prefix}_{t}" if prefix else f"{database}.{t}" for t in tables}


def logs_for_spark(
    logs: str | os.PathLike[str] | Mapping[str, DataFrame], tables: Sequence[str], spark: SparkSession | None
) -> str | os.PathLike[str] | Mapping[str, DataFrame]:
    """``logs`` as the Spark stages take them: catalog names (``hive:...``) become the tables; a path stays as it is.

    Raises
    ------
    SchemaError
        A table named by ``hive:...`` is not in the catalog.
    """
    if isinstance(logs, str) and logs.startswith(CATALOG_SCHEME):
        from dwellrank_logs.spark_tables import session_of

        session = session_of(spark, "reading catalog tables")
        return {t: _catalog_table(session, name, t) for t, name in catalog_names(logs, tables).items()}
    return logs


def table_for_spark(source: str, spark: SparkSession | None, table: str) -> str | DataFrame:
    """One table given as ``hive:NAME`` (the catalog table ``NAME``) or a path (returned as it is)."""
    if not source.startswith(CATALOG_SCHEME):
        return source
    name = source[len(CATALOG_SCHEME) :]
    if not name or any(ch.isspace() for ch in name):
        raise ConfigError(f"{source!r}: a catalog table is named hive:NAME, e.g. hive:feed.{table}")
    from dwellrank_logs.spark_tables import session_of

    return _catalog_table(session_of(spark, "reading catalog tables"), name, table)


def table_uri(logs: str | os.PathLike[str], table: str) -> str:
    """``<logs>/<table>.parquet`` for a local path or a URI (``Path`` would fold ``hdfs://host`` into ``hdfs:/host``)."""
    src = os.fspath(logs)
    return f"{src.rstrip('/')}/{table}.parquet" if "://" in src else str(table_path(src, table))


def driver_path(path: str, flag: str) -> str:
    """A file the driver writes (a model, scores, JSON): a local path, or a ``file:`` URI as its local path.

    Raises
    ------
    OutputError
        Another filesystem (``hdfs://``, ``s3a://``): the driver writes
        through its own filesystem only; write locally and copy it there.
    """
    if path.startswith("file:"):
        return urlparse(path).path
    if "://" in path:
        raise OutputError(
            f"{flag} {path}: written by the driver, which writes local paths and file:// URIs only; "
            f"write it locally and copy it (hdfs dfs -put, aws s3 cp)"
        )
    return path


def _catalog_table(session: SparkSession, name: str, table: str) -> DataFrame:
    from dwellrank_logs.spark_tables import spark_message

    try:
        frame = session.table(name)
        frame.schema  # noqa: B018 (resolves the table now: a missing one fails here, not in a job)
    except Exception as exc:  # AnalysisException (TABLE_OR_VIEW_NOT_FOUND) and py4j errors
        raise SchemaError(f"{CATALOG_SCHEME}{name}: cannot read the {table} table from the Spark catalog ({spark_message(exc)})") from exc
    return frame
