"""Log tables on Spark: read and checked as the polars reader checks them, cast to the schema's types.

:func:`read_logs_spark` is :func:`dwellrank_logs.io.scan_logs` for Spark (the
same file checks and one-line messages); :func:`_canonical` checks the columns
a Spark stage reads on the polars view of the Spark schema
(:func:`ranking.tskip.spark_counts.polars_schema`) and casts them to the
schema's canonical types, so both engines compute on the same values.

pyspark is imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

import polars as pl

from dwellrank_logs.errors import ConfigError, SchemaError
from dwellrank_logs.io import open_parquet, table_path
from dwellrank_logs.schema import ACTION_COLUMNS, TABLES, validate_frame
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import polars_schema, spark_message
from ranking.features.catalogue import PROFILE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["member_profiles_spark", "read_logs_spark"]

#: The columns of each table the training frame reads (validated and cast to the schema's types).
_NEEDED: dict[str, tuple[str, ...]] = {
    "impressions": (
        "session_id",
        "member_id",
        "update_id",
        "update_type",
        "ts",
        "position",
        "dwell_s",
        *ACTION_COLUMNS,
        "downstream_clicks",
        "downstream_virals",
        "upstream_value",
    ),
    "sessions": ("session_id", "start_ts", "client"),
    "updates": ("update_id", "author_id", "topic", "created_ts"),
    "members": ("member_id", *PROFILE_COLUMNS),
}
# Spark's names of the schema's canonical polars types (datetimes: TIMESTAMP, an instant in UTC).
_SPARK_TYPE = {
    pl.Int8: "tinyint",
    pl.Int16: "smallint",
    pl.Int32: "int",
    pl.Int64: "bigint",
    pl.Float64: "double",
    pl.Boolean: "boolean",
    pl.String: "string",
    pl.Datetime: "timestamp",
}


def read_logs_spark(logs: str | os.PathLike[str], spark: SparkSession, tables: tuple[str, ...] = tuple(_NEEDED)) -> dict[str, DataFrame]:
    """The log tables of a logs directory as Spark DataFrames, checked as :func:`dwellrank_logs.io.scan_logs` checks them.

    A local path gets the polars reader's file checks first (the directory,
    each ``<table>.parquet`` file or part directory); then each table's Spark
    schema, mapped onto polars types, is validated against the whole schema of
    its table by :func:`dwellrank_logs.schema.validate_frame`: the same
    one-line messages as the polars engine.  A URI other than ``file://``
    (``hdfs://``, ``s3a://``) goes to Spark as it is.

    Raises
    ------
    SchemaError
        A missing, unreadable or mistyped table.
    """
    require_pyspark()
    src = os.fspath(logs)
    if not isinstance(src, str):
        raise ConfigError(f"logs must be a str or os.PathLike of str, got {type(src).__name__}")
    remote = "://" in src and not src.startswith("file:")
    if not remote:
        d = Path(urlparse(src).path if src.startswith("file:") else src)
        if not d.is_dir():
            raise SchemaError(f"{d}: not a directory of log tables")
    out = {}
    for name in tables:
        if remote:
            uri = source = f"{src.rstrip('/')}/{name}.parquet"
        else:
            p = table_path(d, name)
            open_parquet(p, name)  # the polars reader's messages: no such file, empty, not Parquet, layout
            uri, source = "file://" + str(p.absolute()), str(p)
        try:
            frame = spark.read.parquet(uri)
            schema = frame.schema
        except Exception as exc:
            raise SchemaError(f"{source}: cannot read the {name} table ({spark_message(exc)})") from exc
        validate_frame(pl.LazyFrame(schema=polars_schema(schema, list(TABLES[name].names), source)), name, source=source)
        out[name] = frame
    return out


def member_profiles_spark(members: DataFrame) -> pl.DataFrame:
    """:func:`~ranking.features.member_profiles` of a Spark ``members`` table, on the driver (a row per member)."""
    require_pyspark()
    frame = _canonical(members, "members", "<members>").select(*_NEEDED["members"])
    try:
        return cast(pl.DataFrame, pl.from_arrow(frame.toArrow()))
    except Exception as exc:
        raise SchemaError(f"<members>: cannot read the members table ({spark_message(exc)})") from exc


def _canonical(frame: DataFrame, table: str, source: str) -> DataFrame:
    """Check the columns training reads from ``table`` and cast them to the schema's types.

    Messages are :func:`dwellrank_logs.schema.validate_frame`'s on the polars
    view of the Spark schema.  A timestamp without a time zone is read as UTC,
    as the polars engine reads it.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    needed = _NEEDED[table]
    validate_frame(pl.LazyFrame(schema=polars_schema(frame.schema, list(needed), source)), table, source=source, columns=needed)
    types = {f.name: f.dataType for f in frame.schema.fields}
    casts: dict[str, Column] = {}
    for name in needed:
        want = _SPARK_TYPE[type(TABLES[table].column(name).dtype)]
        got = types[name]
        if isinstance(got, T.TimestampNTZType):
            epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
            casts[name] = F.timestamp_micros(F.timestamp_diff("MICROSECOND", epoch, F.col(name)))
        elif got.simpleString() != want:
            casts[name] = F.col(name).cast(want)
    return frame.withColumns(casts) if casts else frame
