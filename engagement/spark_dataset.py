"""The forecasting dataset on Spark: the logs reduced by Spark, the model inputs built by the shared code.

:func:`reduce_logs_spark` expresses the reduction of
:func:`engagement.dataset.build_dataset` as Spark DataFrame operations (one
aggregation of the events into per-session event-type counts, a join with
the sessions, per-member and per-day group-bys, the latest delivery per
member as a max over structs; no Python UDFs) and collects only its result,
an :class:`~engagement.reduction.LogReduction`: a row per kept member (its
attributes, counts and latest delivery) and a row per member holding its
history-window sessions, each a context and 10 event counts; and the
transitions between consecutive events per member and history day (a
``lag`` over each session, summed by member, day and pair).  Events and
future-window sessions never reach the driver.  :func:`build_dataset_spark`
then builds :class:`~engagement.dataset.EngagementData` with
:func:`~engagement.reduction.assemble_dataset`, equal array for array to the
polars engine's on the same logs.

Shuffles: the events by ``session_id`` (partially aggregated first), the
sessions by ``session_id`` for the join and by ``member_id`` for the
per-member tables, the deliveries by ``member_id``.  The valid sessions are
cached for the few jobs that read them.

pyspark is imported inside the functions: without it, :mod:`engagement`
imports and these raise :class:`~dwellrank_logs.errors.ConfigError` saying
how to install it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from dwellrank_logs.errors import DwellrankError
from dwellrank_logs.schema import EVENT_TYPES, TABLES
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import (
    check_table_spark,
    col,
    polars_schema,
    read_tables_spark,
    reduced_to_polars,
    run_reduction,
    timestamp_micros,
)
from engagement.config import WindowConfig
from engagement.dataset import NEEDED_COLUMNS, EngagementData, check_feature_nulls, check_kept, check_member_columns
from engagement.features import RECENT_DAYS, member_feature_columns
from engagement.reduction import KEPT_COUNTS, LogReduction, assemble_dataset

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["build_dataset_spark", "read_logs_spark", "reduce_logs_spark", "session_documents_spark"]

_US_PER_DAY = 86_400 * 1_000_000
_COUNT_COLS = tuple(f"_c{k}" for k in range(len(EVENT_TYPES)))
_SESSION_FIELDS = ("start_us", "session_id", "duration_s", "client", *_COUNT_COLS)


def read_logs_spark(logs: str | os.PathLike[str] | Mapping[str, DataFrame], spark: SparkSession | None = None) -> dict[str, DataFrame]:
    """The members, sessions, events and deliveries tables on Spark, checked as :func:`engagement.read_logs` checks them.

    Parameters
    ----------
    logs : path-like, str or mapping of table name to Spark DataFrame
        A logs directory (local, or a URI such as ``hdfs://...``) or the tables.
    spark : SparkSession, optional
        Reads a path; default the session active in this thread.

    Raises
    ------
    SchemaError
        As :func:`engagement.read_logs` (same messages), for a mapping as
        :func:`engagement.build_dataset` (a missing table).
    """
    tables, sources = read_tables_spark(logs, NEEDED_COLUMNS, spark, "build_dataset")
    # As the polars reader: the members table's other schema columns are validated when present.
    names = set(tables["members"].columns)
    present = tuple(c for c in TABLES["members"].names if c in names and c not in NEEDED_COLUMNS["members"])
    if present:
        check_table_spark(tables["members"], "members", (*NEEDED_COLUMNS["members"], *present), sources["members"])
    return tables


def build_dataset_spark(
    logs: str | os.PathLike[str] | Mapping[str, DataFrame],
    window: WindowConfig | None = None,
    spark: SparkSession | None = None,
    member_columns: tuple[str, ...] | None = None,
) -> EngagementData:
    """:func:`engagement.build_dataset` with the reduction on Spark: the same :class:`EngagementData` on the same logs.

    Parameters
    ----------
    logs : path-like, str or mapping of table name to Spark DataFrame
        As :func:`read_logs_spark`.
    window : WindowConfig, optional
    spark : SparkSession, optional
        Reads a path; default the session active in this thread.
    member_columns : tuple of str, optional
        As for :func:`engagement.build_dataset`.

    Raises
    ------
    ConfigError
        pyspark is not installed; a path without a session.
    SchemaError
        A table is missing or breaks the schema (the polars engine's messages).
    DwellrankError
        As :func:`engagement.build_dataset`.
    """
    return assemble_dataset(reduce_logs_spark(read_logs_spark(logs, spark), window, member_columns))


def reduce_logs_spark(
    tables: Mapping[str, DataFrame], window: WindowConfig | None = None, member_columns: tuple[str, ...] | None = None
) -> LogReduction:
    """The reduction of :func:`engagement.build_dataset`, on Spark; ``tables`` as :func:`read_logs_spark` returns them.

    ``member_columns`` as for :func:`engagement.build_dataset` (default every
    numeric and boolean column of the members table, by the same rule).

    Raises
    ------
    DwellrankError
        No member table rows, no valid session, logs shorter than the two
        windows, or no member left after the filter (the polars engine's messages).
    SchemaError
        Spark cannot read the data.
    """
    require_pyspark()
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    w = window if window is not None else WindowConfig()
    H, Fd = w.history_days, w.future_days
    mschema = polars_schema(tables["members"].schema, list(NEEDED_COLUMNS["members"]), "<members table>", "the members table")
    mcols = member_feature_columns(mschema) if member_columns is None else tuple(member_columns)
    check_member_columns(mschema, mcols, "<members table>")
    # Schema columns as their kind (cast to the schema's type on the driver, as polars casts); others as read.
    kinds = {"connections": "long", "tenure_days": "long", "seniority": "long", "client": "string", "is_premium": "boolean"}
    members = tables["members"].select(
        col("member_id").cast("long").alias("member_id"),
        # Renamed while on Spark: a platform's column may share a name with the reduction's own (n, ts_us, ...).
        *((col(c).cast(kinds[c]) if c in kinds else col(c)).alias(f"_m{i}") for i, c in enumerate(mcols)),
    )
    valid = _valid_sessions(tables).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One job for the three numbers the checks need: members, and the first and last valid session.
        nulls = [_null_count(f"_m{i}", mschema[c].is_float()).alias(f"_null{i}") for i, c in enumerate(mcols)]
        sizes = members.agg(F.count(F.lit(1)).alias("n"), *nulls).crossJoin(
            valid.agg(F.min("start_us").alias("lo"), F.max("start_us").alias("hi"))
        )
        n_members, *null_counts, lo, hi = run_reduction(lambda: tuple(sizes.collect()[0]), "members, sessions and events")
        check_feature_nulls({c: int(n or 0) for c, n in zip(mcols, null_counts, strict=True)})
        if n_members == 0:
            raise DwellrankError("members table has no rows; nothing to forecast")
        if lo is None:
            raise DwellrankError("sessions table has no valid session (a session with at least one event in the events table)")
        start = _window_start(lo, w)
        start_us = _micros(start)
        last_day = math.floor((hi - start_us) / _US_PER_DAY)
        if last_day < H + Fd - 1:
            raise DwellrankError(
                f"sessions.start_ts covers days 0..{last_day} from {start.date()}; history_days + future_days = {H + Fd} "
                f"needs sessions up to day {H + Fd - 1} (shorten the windows or pass longer logs)"
            )
        windowed = valid.withColumn("day", _day(start_us)).where((col("day") >= 0) & (col("day") < H + Fd))
        kept = members.join(_member_counts(windowed, H).where(col("n_h") >= max(w.min_history_sessions, 1)), "member_id", "inner")
        latest = _latest_deliveries(tables["deliveries"], kept.select("member_id"), start_us, _micros(start + dt.timedelta(days=H)))
        # One row per member with a history session (every kept member has one): its sessions, and for a kept
        # member its attributes, counts and latest delivery.
        per_member = (
            _history_sessions(windowed.where(col("day") < H))
            .join(kept.withColumn("_kept", F.lit(True)), "member_id", "left")
            .join(latest, "member_id", "left")
        )
        rows = reduced_to_polars(per_member, "members, sessions, events and deliveries").sort("member_id")
        # Every member's history transitions (the shared assembly keeps the kept members'): no second pass over `kept`.
        transitions = reduced_to_polars(_day_transitions(tables["events"], windowed.where(col("day") < H)), "sessions and events")
    finally:
        valid.unpersist()
    kept_rows = rows.filter(pl.col("_kept").fill_null(False))
    check_kept(int(n_members), kept_rows.height, w, start)
    hist, counts = _flatten_sessions(rows)
    kept_frame = kept_rows.select(*NEEDED_COLUMNS["members"], *(pl.col(f"_m{i}").alias(c) for i, c in enumerate(mcols)), *KEPT_COUNTS)
    delivered = kept_rows.filter(pl.col("n").is_not_null()).select(
        "member_id",
        pl.col("ts_us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
        "channel",
        "content",
        pl.col("n").cast(pl.Int64),
    )
    return LogReduction(
        kept=kept_frame,
        hist=hist,
        counts=counts,
        latest_delivery=delivered,
        transitions=transitions,
        start=start,
        window=w,
        member_columns=mcols,
    )


def _null_count(name: str, is_float: bool) -> Column:
    """Rows of a members column that are null (or NaN, for a float column): the polars engine's count."""
    from pyspark.sql import functions as F

    bad = col(name).isNull() | F.isnan(col(name)) if is_float else col(name).isNull()
    return F.sum(bad.cast("long")).cast("long")


def session_documents_spark(tables: Mapping[str, DataFrame], start: dt.datetime, window: WindowConfig) -> DataFrame:
    """The LDA corpus as a Spark DataFrame: a row per valid history-window session of every member.

    Columns ``session_id`` and one count per event type, named as
    :data:`EVENT_TYPES` (the rows of :attr:`EngagementData.session_counts`,
    unordered); ``start`` is :attr:`EngagementData.start`.  Lazy: nothing runs
    until it is read (:func:`engagement.spark_lda.mine_intents_spark`).
    """
    docs = _valid_sessions(tables).withColumn("day", _day(_micros(start))).where((col("day") >= 0) & (col("day") < window.history_days))
    return docs.select("session_id", *(col(c).alias(e) for c, e in zip(_COUNT_COLS, EVENT_TYPES, strict=True)))


def _day(start_us: int) -> Column:
    """Days since the window start, floored: ``t_days`` of the polars engine (microseconds / 86,400e6 in float64)."""
    from pyspark.sql import functions as F

    return F.floor((col("start_us") - F.lit(start_us)) / F.lit(float(_US_PER_DAY))).cast("long")


def _valid_sessions(tables: Mapping[str, DataFrame]) -> DataFrame:
    """Sessions with at least one event, with their event-type counts ``_c0..``: one row per session."""
    from pyspark.sql import functions as F

    # 1-based position in EVENT_TYPES (the checks have refused other values).
    pos = F.array_position(F.array(*(F.lit(e) for e in EVENT_TYPES)), col("event_type").cast("string"))
    per_session = (
        tables["events"]
        .select(col("session_id").cast("long").alias("session_id"), pos.alias("_t"))
        .groupBy("session_id")
        .agg(*(F.count(F.when(col("_t") == k + 1, F.lit(1))).alias(c) for k, c in enumerate(_COUNT_COLS)))
    )
    sessions = tables["sessions"].select(
        col("member_id").cast("long").alias("member_id"),
        col("session_id").cast("long").alias("session_id"),
        timestamp_micros(tables["sessions"], "start_ts").alias("start_us"),
        col("duration_s").cast("double").alias("duration_s"),
        col("client").cast("string").alias("client"),
    )
    return sessions.join(per_session, "session_id", "inner")


def _day_transitions(events: DataFrame, hist: DataFrame) -> DataFrame:
    """Transitions between consecutive events per (member, history day, from, to): :func:`engagement.transitions.session_transitions`.

    ``lag`` over each session ordered by event time, ties by event-type index
    (the polars engine's order), counted per session before the join with the
    history sessions (``hist``: ``session_id``, ``member_id``, ``day``).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pos = F.array_position(F.array(*(F.lit(e) for e in EVENT_TYPES)), col("event_type").cast("string")) - 1
    typed = events.select(
        col("session_id").cast("long").alias("session_id"), timestamp_micros(events, "ts").alias("ts_us"), pos.cast("long").alias("dst")
    )
    per_session = (
        typed.withColumn("src", F.lag("dst").over(Window.partitionBy("session_id").orderBy("ts_us", "dst")))
        .where(col("src").isNotNull())
        .groupBy("session_id", "src", "dst")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    return (
        per_session.join(hist.select("session_id", "member_id", "day"), "session_id", "inner")
        .groupBy("member_id", "day", "src", "dst")
        .agg(F.sum("n").cast("long").alias("n"))
    )


def _member_counts(windowed: DataFrame, H: int) -> DataFrame:
    """Valid sessions and active days per member in the history, future and recent windows (two group-bys, no distinct count)."""
    from pyspark.sql import functions as F

    per_day = windowed.groupBy("member_id", "day").agg(F.count(F.lit(1)).alias("n"))
    is_h, recent = col("day") < H, (col("day") < H) & (col("day") >= H - RECENT_DAYS)
    exprs = {
        "n_h": F.sum(F.when(is_h, col("n")).otherwise(0)),
        "n_f": F.sum(F.when(~is_h, col("n")).otherwise(0)),
        "a_h": F.count(F.when(is_h, F.lit(1))),
        "a_f": F.count(F.when(~is_h, F.lit(1))),
        "n_h7": F.sum(F.when(recent, col("n")).otherwise(0)),
        "a_h7": F.count(F.when(recent, F.lit(1))),
    }
    return per_day.groupBy("member_id").agg(*(exprs[k].cast("long").alias(k) for k in KEPT_COUNTS))


def _history_sessions(hist: DataFrame) -> DataFrame:
    """Each member's history sessions as one array ``s`` in time order (one row per member)."""
    from pyspark.sql import functions as F

    # sort_array orders the structs by their fields in turn: start time, then session_id, as the polars engine sorts.
    return hist.groupBy("member_id").agg(F.sort_array(F.collect_list(F.struct(*(col(c) for c in _SESSION_FIELDS)))).alias("s"))


def _flatten_sessions(rows: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The per-member session arrays of ``rows`` (sorted by member) as one row per session, and their event counts."""
    flat = rows.select("member_id", "s").explode("s").unnest("s")
    counts = flat.select(_COUNT_COLS).to_numpy().astype(np.int64).reshape(flat.height, len(EVENT_TYPES))
    frame = flat.select(
        "member_id",
        "session_id",
        pl.col("start_us").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("start_ts"),
        "duration_s",
        "client",
    )
    return frame, counts


def _latest_deliveries(deliveries: DataFrame, kept: DataFrame, start_us: int, end_us: int) -> DataFrame:
    """Per kept member: the latest delivery in [start, end) and the number of them (ties in time: the greatest channel, content)."""
    from pyspark.sql import functions as F

    d = deliveries.select(
        col("member_id").cast("long").alias("member_id"),
        timestamp_micros(deliveries, "ts").alias("ts_us"),
        col("channel").cast("string").alias("channel"),
        col("content").cast("string").alias("content"),
    ).where((col("ts_us") >= start_us) & (col("ts_us") < end_us))
    return (
        d.join(kept, "member_id", "left_semi")
        .groupBy("member_id")
        .agg(F.max(F.struct("ts_us", "channel", "content")).alias("last"), F.count(F.lit(1)).alias("n"))
        .select("member_id", "last.ts_us", "last.channel", "last.content", "n")
    )


def _window_start(first_us: int, w: WindowConfig) -> dt.datetime:
    if w.start_date is not None:
        return dt.datetime.combine(dt.date.fromisoformat(w.start_date), dt.time(), tzinfo=dt.timezone.utc)
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=first_us // _US_PER_DAY)


def _micros(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
