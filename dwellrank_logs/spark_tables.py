"""The log tables on Spark, checked as the polars engine checks them, with the same one-line messages.

A Spark schema is mapped onto polars types (:func:`polars_schema`: ``string``
is ``String``, ``double`` is ``Float64``, ``timestamp`` is ``Datetime(us,
UTC)``, ...), so the polars engine's own validator
(:func:`dwellrank_logs.schema.validate_frame`) checks the columns and their
types and raises its own messages.  The value checks that need the rows (nulls
in non-null columns, repeated keys, strings outside a domain) run as one Spark
aggregation per table whose counts are worded as the polars engine words them
(``dwellrank_logs.schema._check_values``); only those counts, and at most a
few example values when a check fails, reach the driver.
:func:`spark_message` turns a Spark error into one line, without the JVM stack
trace.

Logs are given as a directory (a local path, or a URI Spark resolves:
``file://``, ``hdfs://``, ``s3a://``), or as tables of the Spark catalog
(Hive metastore, Glue, Unity, or temporary views) named ``hive:DB`` (tables
``DB.members``, ``DB.impressions``, ...) or ``hive:DB.PREFIX`` (tables
``DB.PREFIX_members``, ...): :mod:`dwellrank_logs.spark_sources`.

pyspark is imported inside the functions: without it, this module imports and
they raise :class:`~dwellrank_logs.errors.ConfigError` saying how to install it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import polars as pl

from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError, first_line
from dwellrank_logs.read import open_parquet, table_path
from dwellrank_logs.schema import TABLES, TableSchema, _share, validate_frame
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_sources import CATALOG_SCHEME, catalog_names, logs_for_spark, table_uri

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

__all__ = [
    "DeferredChecks",
    "check_table_spark",
    "col",
    "polars_schema",
    "read_tables_spark",
    "reduced_to_polars",
    "run_reduction",
    "session_of",
    "spark_message",
    "timestamp_micros",
]


def session_of(spark: SparkSession | None, what: str) -> SparkSession:
    """``spark``, or the session active in this thread; :class:`ConfigError` naming ``what`` when there is none."""
    require_pyspark()
    from pyspark.sql import SparkSession

    session = spark if spark is not None else SparkSession.getActiveSession()
    if session is None:
        raise ConfigError(f"{what} on Spark needs a SparkSession: pass spark=..., e.g. dwellrank_logs.spark.local_session()")
    return session


def read_tables_spark(
    logs: str | os.PathLike[str] | Mapping[str, DataFrame],
    columns: Mapping[str, Sequence[str]],
    spark: SparkSession | None,
    what: str = "this stage",
    deferred: tuple[str, ...] = (),
) -> tuple[dict[str, DataFrame], dict[str, str]]:
    """Read and check the tables named in ``columns``, as :func:`dwellrank_logs.io.scan_table` reads and checks them.

    Parameters
    ----------
    logs : path-like, str or mapping of table name to Spark DataFrame
        A logs directory (``<dir>/<table>.parquet``, each one file or a
        directory of part files), local or a URI Spark resolves (``file://``,
        ``hdfs://``, ``s3a://``); catalog tables as ``hive:DB`` or
        ``hive:DB.PREFIX`` (:func:`~dwellrank_logs.spark_sources.catalog_names`); or the tables as Spark
        DataFrames (``spark.table(name)``).  A local path gets the polars engine's
        file-level checks and messages first (no such directory or file,
        empty, not Parquet, inconsistent parts).
    columns : mapping of table name to column names
        The schema columns each table must have; others are not read.
    spark : SparkSession, optional
        Reads a path; default the session active in this thread.
    what : str
        The stage, for the message of a mapping that lacks a table.
    deferred : tuple of str
        Tables whose value checks (row count, nulls, domains) the caller runs
        itself inside its own first pass over them, with :class:`DeferredChecks`;
        their schema is checked here.

    Returns
    -------
    tables : dict of str to pyspark.sql.DataFrame
        The tables as read (uncast; see :func:`check_table_spark`).
    sources : dict of str to str
        Each table's name in messages: its path, or ``<table table>``.

    Raises
    ------
    ConfigError
        pyspark is not installed; a path without a session.
    SchemaError
        A table is missing, unreadable or breaks the schema (columns, types,
        nulls, repeated keys, domains).
    """
    require_pyspark()
    from pyspark.sql import DataFrame

    tables: dict[str, DataFrame] = {}
    sources: dict[str, str] = {}
    if isinstance(logs, str) and logs.startswith(CATALOG_SCHEME):
        names = catalog_names(logs, tuple(columns))
        for t, frame in logs_for_spark(logs, tuple(columns), spark).items():  # type: ignore[union-attr]
            tables[t], sources[t] = frame, CATALOG_SCHEME + names[t]
            _check(frame, t, tuple(columns[t]), sources[t], t in deferred)
    elif isinstance(logs, Mapping):
        for t in columns:
            if t not in logs:
                raise SchemaError(f"the {t} table is missing; {what} needs {', '.join(columns)}")
            if not isinstance(logs[t], DataFrame):
                raise ConfigError(f"the {t} table must be a Spark DataFrame, got {type(logs[t]).__name__}")
            tables[t], sources[t] = logs[t], f"<{t} table>"
            _check(tables[t], t, tuple(columns[t]), sources[t], t in deferred)
    else:
        session = session_of(spark, "reading logs")
        src = os.fspath(logs)
        if not isinstance(src, str):
            raise ConfigError(f"logs must be a str or os.PathLike of str, got {type(src).__name__}")
        remote = "://" in src and not src.startswith("file:")
        local = None if remote else Path(urlparse(src).path if src.startswith("file:") else src)
        if local is not None and not local.is_dir():
            raise SchemaError(f"{local}: not a directory of log tables")
        for t in columns:
            if local is None:
                uri = sources[t] = table_uri(src, t)
            else:
                p = table_path(local, t)
                open_parquet(p, t)  # the polars reader's checks and messages
                # An explicit file URI: a cluster whose default filesystem is HDFS must still read the local file.
                uri, sources[t] = "file://" + str(p.absolute()), str(p)
            try:
                frame = session.read.parquet(uri)
                frame.schema  # noqa: B018 (resolves the schema: an unreadable footer fails here, not in a job)
            except DwellrankError:
                raise
            except Exception as exc:  # AnalysisException and py4j errors, with a JVM stack trace
                raise SchemaError(f"{sources[t]}: cannot read the {t} table ({spark_message(exc)})") from exc
            tables[t] = frame
            _check(frame, t, tuple(columns[t]), sources[t], t in deferred)  # table by table, as the polars reader
    return tables, sources


def _check(frame: DataFrame, table: str, columns: tuple[str, ...], source: str, deferred: bool) -> None:
    if deferred:
        DeferredChecks(frame, table, columns, source)  # the schema now; the values in the caller's pass
    else:
        check_table_spark(frame, table, columns, source)


class DeferredChecks:
    """:func:`check_table_spark`'s value checks, run inside a caller's own aggregation of the table.

    The schema is checked on construction.  :attr:`indicators` are per-row
    LONG columns (a 1 per row, per null of each non-null column, per
    out-of-domain value of each domain column) whose sums are all the
    checks need: the caller selects them with its other columns, sums them
    in any grouping (the sums are additive), and passes the totals to
    :meth:`judge`, which raises the same error, with the same message, as
    :func:`check_table_spark`.  This saves a pass over a large table.  A
    table whose key is among ``columns`` (a distinct count, not additive)
    cannot be checked this way.
    """

    def __init__(self, frame: DataFrame, table: str, columns: tuple[str, ...], source: str) -> None:
        from pyspark.sql import functions as F

        spec = TABLES[table]
        if spec.key is not None and spec.key in columns:
            raise ValueError(f"the {table} table's key '{spec.key}' needs a distinct count: use check_table_spark")
        validate_frame(
            pl.LazyFrame(schema=polars_schema(frame.schema, list(columns), source)),
            table,
            source=source,
            columns=columns,
            check_domains=False,
        )
        self.frame, self.table, self.source, self.spec = frame, table, source, spec
        wanted = [spec.column(c) for c in columns]
        self.non_null = [c.name for c in wanted if not c.nullable]
        self.domains = [c for c in wanted if c.domain is not None]
        self.indicators: dict[str, Column] = {"_chk_rows": F.lit(1).cast("long")}
        self.indicators.update({f"_chk_null{i}": col(c).isNull().cast("long") for i, c in enumerate(self.non_null)})
        self.indicators.update({f"_chk_bad{i}": _outside(c).cast("long") for i, c in enumerate(self.domains)})

    def totals(self, frame: DataFrame) -> dict[str, Any]:
        """The sums of the indicator columns of ``frame`` (the caller's table that carries them), read as this table."""
        from pyspark.sql import functions as F

        return cast(
            dict[str, Any],
            _collect(lambda: frame.agg(*(F.sum(c).alias(c) for c in self.indicators)).collect()[0].asDict(), self.table, self.source),
        )

    def judge(self, totals: Mapping[str, Any]) -> int:
        """Raise the first failing check's error from the indicators' ``totals`` (by name); else the row count."""
        rows = int(totals["_chk_rows"] or 0)
        nulls = {c: int(totals[f"_chk_null{i}"]) for i, c in enumerate(self.non_null) if totals[f"_chk_null{i}"]}
        if nulls:
            _raise_nulls(self.spec, nulls, rows, self.source)
        for i, c in enumerate(self.domains):
            if totals[f"_chk_bad{i}"]:
                _raise_domain(self.frame, c, self.table, self.source)
        return rows


def check_table_spark(frame: DataFrame, table: str, columns: tuple[str, ...], source: str) -> int:
    """:func:`~dwellrank_logs.schema.validate_frame` (with its value checks) of a Spark DataFrame: same checks, same messages.

    The schema first, by the polars validator on the mapped schema; then one
    aggregation: the row count, the nulls of each non-null column, the
    repeated values of the table's key and the out-of-domain values of each
    domain column.  A failing key or domain check runs one more small job
    for the example it quotes.

    Returns
    -------
    int
        The table's row count.

    Raises
    ------
    SchemaError
        As the polars validator, in the same order: columns, types, nulls,
        repeated key, domain.
    """
    from pyspark.sql import functions as F

    spec = TABLES[table]
    validate_frame(
        pl.LazyFrame(schema=polars_schema(frame.schema, list(columns), source)), table, source=source, columns=columns, check_domains=False
    )
    wanted = [spec.column(c) for c in columns]
    non_null = [c.name for c in wanted if not c.nullable]
    key = spec.key if spec.key is not None and spec.key in columns else None
    domains = [c for c in wanted if c.domain is not None]

    outside = _outside
    aggs = [F.count(F.lit(1)).alias("_rows")]
    aggs += [F.count(F.when(col(c).isNull(), F.lit(1))).alias(f"_null{i}") for i, c in enumerate(non_null)]
    if key is not None:
        aggs.append(F.count_distinct(col(key)).alias("_distinct"))
    aggs += [F.count(F.when(outside(c), F.lit(1))).alias(f"_bad{i}") for i, c in enumerate(domains)]
    got = _collect(lambda: frame.agg(*aggs).collect()[0].asDict(), table, source)
    rows = int(got["_rows"])
    nulls = {c: int(got[f"_null{i}"]) for i, c in enumerate(non_null) if got[f"_null{i}"]}
    if nulls:
        _raise_nulls(spec, nulls, rows, source)
    if key is not None and rows - int(got["_distinct"]):
        ex = _collect(
            lambda: frame.groupBy(col(key).alias("k")).agg(F.count(F.lit(1)).alias("n")).where("n > 1").orderBy("k").limit(1).collect()[0],
            table,
            source,
        )
        raise SchemaError(
            f"{source}: column '{key}' is the key of the {spec.name} table, but {rows - int(got['_distinct']):,} of {rows:,} rows repeat "
            f"a value (e.g. {key} {ex['k']} appears {ex['n']:,} times); each {key} must appear once"
        )
    for i, c in enumerate(domains):
        if got[f"_bad{i}"]:
            _raise_domain(frame, c, table, source)
    return rows


def _outside(c: Any) -> Column:
    """True where the domain column ``c`` holds a value outside its domain (null is not outside)."""
    return ~col(c.name).isin(list(c.domain)) & col(c.name).isNotNull()


def _raise_domain(frame: DataFrame, c: Any, table: str, source: str) -> None:
    bad = _collect(
        lambda: [r[0] for r in frame.where(_outside(c)).select(col(c.name)).distinct().orderBy(c.name).limit(5).collect()],
        table,
        source,
    )
    raise SchemaError(f"{source}: column '{c.name}' has unknown value(s) {bad}; expected one of {', '.join(c.domain or ())}")


def _raise_nulls(spec: TableSchema, nulls: dict[str, int], rows: int, source: str) -> None:
    (first, n), *others = nulls.items()
    also = f"; also null: {', '.join(f'{c!r} ({k:,})' for c, k in others)}" if others else ""
    raise SchemaError(
        f"{source}: column '{first}' has {n:,} null value(s) in {rows:,} rows ({_share(n, rows)}); the {spec.name} schema allows none{also}"
    )


def _collect(job: Any, table: str, source: str) -> Any:
    try:
        return job()
    except DwellrankError:
        raise
    except Exception as exc:  # Spark raises several types (and py4j's) for unreadable files
        raise SchemaError(f"{source}: cannot read the {table} table ({spark_message(exc)})") from exc


def polars_schema(schema: StructType, columns: list[str], source: str, what: str = "a log table") -> pl.Schema:
    """The polars schema of the same table as Spark sees it (every column, in order).

    Columns outside ``columns`` whose Spark type has no polars equivalent
    become ``pl.Object`` (they are never read); one inside ``columns`` is an
    error.

    Raises
    ------
    SchemaError
        A column of ``columns`` has a Spark type with no polars equivalent.
    """
    out: dict[str, pl.DataType] = {}
    for f in schema.fields:
        dt = _polars_dtype(f.dataType)
        if dt is None:
            if f.name in columns:
                raise SchemaError(f"{source}: column '{f.name}' has Spark type {f.dataType.simpleString()}, which {what} cannot hold")
            dt = pl.Object()
        out[f.name] = dt
    return pl.Schema(out)


def spark_message(exc: BaseException) -> str:
    """One line of a Spark error: its message and its root cause, without the JVM stack trace.

    ``[FAILED_READ_FILE.NO_HINT] Encountered error while reading file ...; ZstdIOException: Data corruption detected``.
    """
    # py4j's Py4JJavaError (its own first line names only the JVM call) and pyspark's captured exceptions.
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        return first_line(exc)
    try:
        top = first_line(exc) if getattr(exc, "java_exception", None) is None else first_line(Exception(java.getMessage()))
        root = java
        for _ in range(20):  # the cause chain, bounded: a cycle must not hang an error path
            cause = root.getCause()
            if cause is None:
                break
            root = cause
        if root is java:
            return top
        return f"{top}; {root.getClass().getSimpleName()}: {first_line(Exception(root.getMessage() or ''))}"
    except Exception:  # the JVM may be gone
        return first_line(exc)


def timestamp_micros(frame: DataFrame, name: str) -> Column:
    """Microseconds since the epoch of a timestamp column; one without time zone is read as UTC, as the polars engine reads it."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(frame.schema[name].dataType, T.TimestampNTZType):
        return F.timestamp_diff("MICROSECOND", F.lit(dt.datetime(1970, 1, 1)).cast("timestamp_ntz"), col(name))
    return F.unix_micros(col(name))


def run_reduction(job: Any, what: str) -> Any:
    """``job()``, a Spark action of a stage's reduction; a Spark failure becomes one :class:`SchemaError` line naming ``what``."""
    try:
        return job()
    except DwellrankError:
        raise
    except Exception as exc:  # AnalysisException and py4j errors, with a JVM stack trace
        raise SchemaError(f"cannot reduce the {what} table(s) on Spark ({spark_message(exc)})") from exc


def reduced_to_polars(frame: DataFrame, what: str) -> pl.DataFrame:
    """The (small, aggregated) ``frame`` on the driver, through Arrow (:func:`run_reduction`'s errors)."""
    return cast(pl.DataFrame, pl.from_arrow(run_reduction(frame.toArrow, what)))


def col(name: str) -> Column:
    """The column ``name`` (backticks: a name with a dot is a column, not a struct field)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _polars_dtype(t: DataType) -> pl.DataType | None:
    from pyspark.sql import types as T

    atomic: list[tuple[type[DataType], pl.DataType]] = [
        (T.BooleanType, pl.Boolean()),
        (T.ByteType, pl.Int8()),
        (T.ShortType, pl.Int16()),
        (T.IntegerType, pl.Int32()),
        (T.LongType, pl.Int64()),
        (T.FloatType, pl.Float32()),
        (T.DoubleType, pl.Float64()),
        (T.StringType, pl.String()),
        (T.BinaryType, pl.Binary()),
        (T.DateType, pl.Date()),
        (T.TimestampNTZType, pl.Datetime("us")),
        (T.TimestampType, pl.Datetime("us", "UTC")),
        (T.NullType, pl.Null()),
    ]
    for spark_type, dtype in atomic:
        if isinstance(t, spark_type):
            return dtype
    if isinstance(t, T.DecimalType):
        return pl.Decimal(t.precision, t.scale)
    if isinstance(t, T.ArrayType):
        inner = _polars_dtype(t.elementType)
        return None if inner is None else pl.List(inner)
    if isinstance(t, T.StructType):
        fields = {f.name: _polars_dtype(f.dataType) for f in t.fields}
        return None if any(v is None for v in fields.values()) else pl.Struct({k: v for k, v in fields.items() if v is not None})
    return None
