"""Inputs of batch ranking on Spark: the candidate table and the log tables, checked as the polars engine checks them.

Every check runs on the Spark schema (mapped onto polars types by
:func:`dwellrank_logs.spark_tables.polars_schema`) with the polars engine's own
validators, or, for what needs the data (row count, nulls, non-finite
features), on one Spark aggregation whose counts feed messages worded as the
polars engine's (:func:`dwellrank_logs.protocol.validate_candidates`,
:func:`ranking.features.validate_feature_matrix`,
``ranking.ranker._read_candidates``).  Only those counts reach the driver.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import polars as pl

from dwellrank_logs.checks import require_columns
from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from dwellrank_logs.io import open_parquet
from dwellrank_logs.protocol import CANDIDATE_COLUMNS, validate_candidates
from dwellrank_logs.schema import TABLES
from dwellrank_logs.spark_tables import col, polars_schema, read_tables_spark, spark_message
from ranking.features import FeatureSet, validate_feature_matrix
from ranking.ranker import _read_candidates

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["LOG_TABLES", "check_candidates_spark", "check_features_spark", "read_candidates_spark", "read_logs_spark"]

#: The log tables that features from history read.
LOG_TABLES: tuple[str, ...] = ("impressions", "sessions", "updates", "members")

# A type of each candidate column that validate_candidates accepts.
_CANONICAL: dict[str, pl.DataType] = {
    c: pl.String() if c in ("update_type", "client") else pl.Datetime("us", "UTC") if c.endswith("_ts") else pl.Int64()
    for c in CANDIDATE_COLUMNS
}


def _local(path: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(the path as given, the local path) for a plain path or ``file:`` URI; (uri, None) for another filesystem."""
    src = os.fspath(path)
    if not isinstance(src, str):
        raise ConfigError(f"path must be a str or os.PathLike of str, got {type(src).__name__}")
    if "://" in src and not src.startswith("file:"):
        return src, None
    return src, Path(urlparse(src).path if src.startswith("file:") else src)


def _read(spark: SparkSession, uri: str, what: str, src: str) -> DataFrame:
    try:
        frame = spark.read.parquet(uri)
        frame.schema  # noqa: B018 (resolves the schema: an unreadable footer fails here, not in the job)
    except DwellrankError:
        raise
    except Exception as exc:  # AnalysisException and py4j errors, with a JVM stack trace
        raise SchemaError(f"{src}: cannot read the {what} ({spark_message(exc)})") from exc
    return frame


def read_candidates_spark(path: str | os.PathLike[str], spark: SparkSession) -> tuple[DataFrame, str]:
    """The candidate table at ``path`` (one Parquet file, or a directory of part files) and its name for messages.

    A local file gets the checks and messages of the polars engine's reader
    (no such file, empty, not Parquet); a local directory those of
    :func:`dwellrank_logs.io.open_parquet`; a URI (``hdfs://``, ``s3a://``) goes
    to Spark as it is.
    """
    src, local = _local(path)
    if local is None:
        return _read(spark, src, "candidates", src), src
    if not local.exists():
        raise SchemaError(f"{local}: no such candidates file (expected Parquet)")
    if local.is_dir():
        open_parquet(local, "candidates")
    else:
        _check_file(local)
    return _read(spark, "file://" + str(local.absolute()), "candidates", src), src


def _check_file(path: Path) -> None:
    """The polars reader's checks of one file, without reading its rows (the footer only)."""
    if path.stat().st_size == 0:
        _read_candidates(path)  # raises its 'empty or a directory' message
    try:
        pl.scan_parquet(path, glob=False).collect_schema()
    except Exception:
        _read_candidates(path)  # raises its 'not a readable Parquet file' message
        raise


def read_logs_spark(logs: str | os.PathLike[str] | Mapping[str, DataFrame], spark: SparkSession) -> dict[str, DataFrame]:
    """The four log tables of :data:`LOG_TABLES`, checked as ``dwellrank_logs.io.scan_logs`` checks them.

    ``logs`` is a logs directory (``<dir>/<table>.parquet``, each a file or a
    directory of parts; local, or a URI Spark resolves) or a mapping of table
    name to Spark DataFrame (Hive tables: ``spark.table(name)``).  Every
    schema column is checked, values too (nulls, repeated keys), as the polars
    engine checks them (:func:`dwellrank_logs.spark_tables.read_tables_spark`).
    """
    tables, _ = read_tables_spark(logs, {t: TABLES[t].names for t in LOG_TABLES}, spark, what="ranking with features from logs")
    return tables


def _count(frame: DataFrame, columns: dict[str, Column], source: str) -> dict[str, int]:
    """One aggregation over ``frame``: ``_n`` (rows) and a count per entry of ``columns`` (name -> Column predicate)."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("_n")] + [F.count(F.when(pred, F.lit(1))).alias(f"_c{i}") for i, pred in enumerate(columns.values())]
    try:
        row = frame.agg(*aggs).collect()[0]
    except DwellrankError:
        raise
    except Exception as exc:
        raise SchemaError(f"{source}: cannot read the candidates ({spark_message(exc)})") from exc
    return {"_n": int(row["_n"]), **{name: int(row[f"_c{i}"]) for i, name in enumerate(columns)}}


def _no_rows(source: str) -> SchemaError:
    return SchemaError(f"{source}: candidates file has no rows")


def check_candidates_spark(frame: DataFrame, source: str) -> None:
    """:func:`dwellrank_logs.protocol.validate_candidates` on a Spark DataFrame: same checks, same messages.

    Also refuses a table without rows, as the polars engine's reader does
    (that check comes first there too).  One aggregation (rows and nulls).
    """
    pl_schema = polars_schema(frame.schema, [], source)
    present = [c for c in CANDIDATE_COLUMNS if c in pl_schema]
    counts = _count(frame, {c: col(c).isNull() for c in present}, source)
    if counts["_n"] == 0:
        raise _no_rows(source)
    require_columns(pl_schema.names(), CANDIDATE_COLUMNS, "candidate table", source)
    for i, c in enumerate(CANDIDATE_COLUMNS):
        # Column by column, as the polars check: its type (the polars check itself, on a schema whose
        # later columns are valid), then its nulls.
        schema = {k: pl_schema[k] if j <= i else _CANONICAL[k] for j, k in enumerate(CANDIDATE_COLUMNS)}
        validate_candidates(pl.DataFrame(schema=schema), source)
        if counts[c]:
            raise SchemaError(f"{source}: candidate column '{c}' has {counts[c]} null value(s)")


def check_features_spark(frame: DataFrame, fs: FeatureSet, source: str) -> None:
    """:func:`ranking.features.validate_feature_matrix` on a Spark DataFrame (``position`` is not read).

    Also refuses a table without rows first, as the polars engine's reader
    does.  One aggregation (rows, and null/NaN/infinite values per feature).
    """
    from pyspark.sql import functions as F

    pl_schema = polars_schema(frame.schema, [], source)
    need = [c for c in fs.columns if c != "position"]
    numeric = [c for c in need if c in pl_schema and (pl_schema[c].is_numeric() or pl_schema[c] == pl.Boolean)]

    def bad(c: str) -> Column:
        x = col(c).cast("double")
        return x.isNull() | F.isnan(x) | (F.abs(x) == F.lit(float("inf")))

    counts = _count(frame, {c: bad(c) for c in numeric}, source)
    if counts["_n"] == 0:
        raise _no_rows(source)
    validate_feature_matrix(pl.DataFrame(schema=pl_schema), fs, source, skip=("position",))
    for c in need:
        if counts[c]:
            raise SchemaError(f"{source}: feature column '{c}' has {counts[c]} null/NaN/infinite value(s); the model needs finite values")
