"""T_skip on Spark: the entry point for a Spark DataFrame or a Parquet path Spark reads.

The Spark engine reduces the impressions to :class:`~ranking.tskip.BinnedCounts`
(:func:`~ranking.tskip.spark_counts.bin_counts_spark`); the curve, intervals,
threshold and per-group check are then the same code as on polars
(:func:`~ranking.tskip.estimate_tskip` of the counts), so both engines return
the same :class:`~ranking.tskip.TskipResult` on the same rows.

The session comes from the caller (``spark=``, or the one active in this
thread): the library never builds one; :func:`dwellrank_logs.spark.local_session`
does at the CLI boundary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import polars as pl

from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from dwellrank_logs.io import open_parquet
from dwellrank_logs.schema import TABLES, validate_frame
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import polars_schema, spark_message
from ranking.tskip.config import DEFAULT_CONFIG, TskipConfig
from ranking.tskip.estimate import estimate_tskip
from ranking.tskip.result import TskipResult
from ranking.tskip.spark_counts import bin_counts_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["estimate_tskip_spark", "read_impressions_spark"]


def estimate_tskip_spark(
    frame_or_path: DataFrame | str | os.PathLike[str],
    config: TskipConfig = DEFAULT_CONFIG,
    spark: SparkSession | None = None,
    source: str | None = None,
) -> TskipResult:
    """:func:`~ranking.tskip.estimate_tskip` with the reduction on Spark.

    Parameters
    ----------
    frame_or_path : pyspark.sql.DataFrame, str or path-like
        Impressions as a Spark DataFrame, or the path of a Parquet file or of
        a directory of part files (Hive ``key=value`` folders are columns),
        read with ``spark.read.parquet``.  A plain path is local and is
        checked as :func:`~ranking.tskip.estimate_tskip_file` checks it (same
        messages); a URI (``hdfs://``, ``s3a://``, ``file://``) goes to Spark
        as it is.
    config : TskipConfig
    spark : pyspark.sql.SparkSession, optional
        Reads a path; default the session active in this thread.  Not used
        for a DataFrame.
    source : str, optional
        Name of the input in messages and in the result; default the path, or
        ``"<frame>"`` for a DataFrame.

    Returns
    -------
    TskipResult
        Equal to the polars engine's on the same rows (its ``to_dict()`` too,
        ``source`` aside when the names differ).

    Raises
    ------
    ConfigError
        pyspark is not installed; a path without a session; an input of
        another type.
    SchemaError
        Missing, unreadable or mistyped input; unusable values in strict mode.
    InsufficientDataError
        As :func:`~ranking.tskip.estimate_tskip`.
    """
    require_pyspark()
    from pyspark.sql import DataFrame

    if isinstance(frame_or_path, (str, os.PathLike)):
        frame, src = read_impressions_spark(frame_or_path, spark, config)
    elif isinstance(frame_or_path, DataFrame):
        frame, src = frame_or_path, "<frame>"
    else:
        raise ConfigError(f"frame_or_path must be a Spark DataFrame or a Parquet path, got {type(frame_or_path).__name__}")
    return estimate_tskip(bin_counts_spark(frame, config, src if source is None else source), config)


def read_impressions_spark(
    path: str | os.PathLike[str], spark: SparkSession | None = None, config: TskipConfig = DEFAULT_CONFIG
) -> tuple[DataFrame, str]:
    """The impressions table at ``path`` as a Spark DataFrame, with the checks of the polars engine's reader.

    A local path is checked first by ``dwellrank_logs.io.open_parquet`` (the
    file or every part exists, is Parquet and agrees on the schema, a
    consistent Hive layout); then, on the schema Spark reads, the columns of
    the impressions schema that ``config`` uses are checked by
    ``dwellrank_logs.schema.validate_frame``, as ``estimate_tskip_file`` does.

    Returns
    -------
    (pyspark.sql.DataFrame, str)
        The lazy Spark read and the source name for messages (the path as given).

    Raises
    ------
    ConfigError
        No session passed and none active.
    SchemaError
        Missing, unreadable or mistyped input.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    session = spark if spark is not None else SparkSession.getActiveSession()
    if session is None:
        raise ConfigError("reading a path on Spark needs a SparkSession: pass spark=..., e.g. dwellrank_logs.spark.local_session()")
    src = os.fspath(path)
    if not isinstance(src, str):
        raise ConfigError(f"path must be a str or os.PathLike of str, got {type(src).__name__}")
    if "://" in src and not src.startswith("file:"):
        uri = src  # a filesystem Spark resolves (hdfs, s3a, ...): checked by Spark alone
    else:
        local = Path(urlparse(src).path if src.startswith("file:") else src)
        open_parquet(local, "impressions")  # messages as the polars engine's: no such file, empty, not Parquet, layout
        # An explicit file URI: a cluster whose default filesystem is HDFS must still read the local file.
        uri = "file://" + str(local.absolute())
    try:
        frame = session.read.parquet(uri)
        schema = frame.schema
    except DwellrankError:
        raise
    except Exception as exc:  # AnalysisException and py4j errors, with a JVM stack trace
        raise SchemaError(f"{src}: cannot read the impressions table ({spark_message(exc)})") from exc
    known = TABLES["impressions"].names
    cols = tuple(c for c in (config.dwell_col, *config.action_cols, *((config.by,) if config.by else ())) if c in known)
    pl_schema = polars_schema(schema, list(cols), src, "the impressions table")
    present = tuple(c for c in cols if c in pl_schema and pl_schema[c] != pl.Null)
    if present:
        validate_frame(pl.LazyFrame(schema=pl_schema), "impressions", source=src, columns=present, check_domains=False)
    return frame, src
