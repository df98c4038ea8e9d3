"""The reduction of a logged experiment on Spark: per-member aggregates by arm, equal to the polars engine's.

:func:`reduce_logs_spark` reads the members, sessions and impressions where
they are and computes, as DataFrame operations (built-in functions, no
Python UDFs): the sessions' first and last start (one small job); per
member, one group-by of the sessions (sessions and active days per window)
and one of the impressions joined with their sessions (counts per window,
and the float sums); per arm and day, the sums of the daily trajectories.
Only per-member rows (and the per-arm daily sums) reach the driver, never an
impression.  The checks and the statistics are the shared code of
:mod:`simulate.ab.logged`.

Determinism: counts are integer sums, exact.  The float sums (dwell, time
spent, time well spent) are sums of integer nanoseconds, the values split as
the polars engine splits them (:func:`simulate.ab.split_seconds`, here as
column arithmetic), so Spark's ordinary partial aggregation gives exactly
the polars engine's integers whatever the partitioning, and both engines turn
them into seconds with the same numpy code.  Every per-member aggregate and
every daily sum therefore equals the polars engine's bit for bit.

Shuffles: the sessions by ``session_id`` (the join) and both tables by
``member_id`` (the group-bys); the daily sums by (arm, day).  The joined
impressions are cached for the two jobs that read them.  Every sum is an
ordinary Spark aggregate, combined within each partition before the shuffle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from dwellrank_logs.protocol import not_skipped
from dwellrank_logs.schema import VIRAL_COLUMNS
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import DeferredChecks, col, read_tables_spark, reduced_to_polars, run_reduction, timestamp_micros
from simulate.ab.aggregates import AGGREGATES, FIXED_LIMIT_S, NS_PER_S, daily_frame, seconds_from_parts
from simulate.ab.config import ARMS
from simulate.ab.logged import NEEDED_COLUMNS, LogReduction, experiment_members
from simulate.ab.logged_config import LoggedABConfig, resolve_period
from simulate.config import DAY_US

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["reduce_logs_spark"]

_FLOAT_SUMS = {"feed_dwell_s": "dwell_s", "time_spent_s": "time_s", "time_well_spent_s": "well_s"}
_COUNT_SUMS = {"n_skipped": "skipped", "n_clicked": "clicked", "n_viral_impressions": "viral", "n_virals": "n_virals"}


def reduce_logs_spark(
    logs: str | os.PathLike[str] | Mapping[str, DataFrame], config: LoggedABConfig, spark: SparkSession | None = None
) -> LogReduction:
    """:func:`simulate.ab.reduce_logs` on Spark: the same :class:`~simulate.ab.LogReduction` on the same logs.

    Parameters
    ----------
    logs : path-like, str or mapping of table name to Spark DataFrame
        A logs directory (local, or a URI such as ``hdfs://...``) or the tables
        (``members``, ``sessions``, ``impressions``; Hive tables: ``spark.table(name)``).
    config : LoggedABConfig
    spark : SparkSession, optional
        Reads a path; default the session active in this thread.

    Raises
    ------
    ConfigError
        pyspark is not installed; a path without a session; the pre-period does not fit.
    SchemaError
        As the polars engine, with the same messages.
    """
    require_pyspark()
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    # The impressions' value checks (nulls) run in the reduction's own pass over them, not in a pass of their own.
    tables, sources = read_tables_spark(logs, NEEDED_COLUMNS, spark, "the A/B analysis", deferred=("impressions",))
    checks = DeferredChecks(tables["impressions"], "impressions", NEEDED_COLUMNS["impressions"], sources["impressions"])
    members = tables["members"].select(col("member_id").cast("long").alias("member_id"), col("arm").cast("string").alias("arm"))
    arms, n_outside = experiment_members(reduced_to_polars(members, "members"), config, sources["members"])
    control, treatment = config.arms
    label = col("arm")
    inside = members.select(
        "member_id", F.when(label == control, F.lit(ARMS[0])).when(label == treatment, F.lit(ARMS[1])).alias("arm")
    ).where(col("arm").isNotNull())
    sess = tables["sessions"].select(
        col("member_id").cast("long").alias("member_id"),
        col("session_id").cast("long").alias("session_id"),
        timestamp_micros(tables["sessions"], "start_ts").alias("start_us"),
    )
    lo, hi = run_reduction(lambda: tuple(sess.agg(F.min("start_us"), F.max("start_us")).collect()[0]), "sessions")
    period = resolve_period(lo, hi, config, sources["sessions"])
    windows = [period.experiment_us] + ([period.pre_us] if period.pre_days else [])
    w = F.lit(None).cast("int")
    for k, (a, b) in reversed(list(enumerate(windows))):
        w = F.when((col("start_us") >= a) & (col("start_us") < b), F.lit(k)).otherwise(w)
    dated = sess.withColumn("w", w).withColumn("day", _day(col("start_us")))
    # Every sum is additive: the impressions are summed per session before the join (one row per session
    # crosses the shuffle, not one per impression), and these rows feed both jobs: computed once.
    terms = _session_terms(tables["impressions"], dated, config.t_skip_s, checks).persist(StorageLevel.MEMORY_AND_DISK)
    # The sessions counted per (member, day, window): the active days and both jobs' session counts, no count_distinct
    # over the sessions themselves.
    days = dated.groupBy("member_id", "day", "w").agg(F.count(F.lit(1)).alias("n_sessions")).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        checks.judge(checks.totals(terms))  # the first job: it also fills the cache
        per_member = _member_sums(days.join(inside, "member_id", "left_semi"), terms.join(inside, "member_id", "left_semi"), len(windows))
        rows = reduced_to_polars(per_member, "sessions and impressions")
        daily = _daily(days, terms, inside, arms, period.start_us // DAY_US, period.pre_days + period.n_days)
    finally:
        terms.unpersist()
        days.unpersist()
    aggs = [_window_frame(arms, rows, k) for k in range(len(windows))]
    return LogReduction(
        arms=arms,
        experiment=aggs[0],
        pre=aggs[1] if period.pre_days else None,
        daily=daily,
        period=period,
        n_outside=n_outside,
        sources=sources,
    )


def _session_terms(impressions: DataFrame, dated: DataFrame, t_skip_s: float, checks: DeferredChecks) -> DataFrame:
    """The sums of :func:`simulate.ab.impression_terms` per (member, session), in a window or not.

    ``n`` impressions, then each count and float part of the impression terms summed, and the
    impressions' check indicators; keyed by the impression's own member_id (as the polars engine
    groups), with its session's start, window and day (null for a session the sessions table lacks:
    those impressions count in the checks only, as the polars engine's inner join leaves them out).
    """
    from functools import reduce

    from pyspark.sql import functions as F

    viral = reduce(lambda a, b: a | b, [col(c).cast("boolean") for c in VIRAL_COLUMNS])
    action = col("clicked").cast("boolean") | viral
    dwell = col("dwell_s").cast("double")
    time_s = dwell + F.coalesce(col("click_dwell_s").cast("double"), F.lit(0.0))
    # The one skip label, on Spark columns (its operators are Spark's too).
    kept = cast(Any, not_skipped)(dwell, action, float(t_skip_s))
    well = time_s * kept.cast("double")  # a multiplication, as the polars engine's: 0 * NaN stays NaN
    flags = impressions.select(
        col("member_id").cast("long").alias("member_id"),
        col("session_id").cast("long").alias("session_id"),
        (~kept).cast("long").alias("skipped"),
        col("clicked").cast("boolean").cast("long").alias("clicked"),
        viral.cast("long").alias("viral"),
        reduce(lambda a, b: a + b, [col(c).cast("boolean").cast("long") for c in VIRAL_COLUMNS]).alias("n_virals"),
        col("downstream_virals").cast("long").alias("downstream_virals"),
        *_split_seconds(dwell, "dwell_s"),
        *_split_seconds(time_s, "time_s"),
        *_split_seconds(well, "well_s"),
        *(c.alias(name) for name, c in checks.indicators.items()),
    )
    parts = [c for c in flags.columns if c not in ("member_id", "session_id")]
    per_session = flags.groupBy("member_id", "session_id").agg(F.count(F.lit(1)).alias("n"), *(F.sum(c).alias(c) for c in parts))
    return per_session.join(dated.select("session_id", "start_us", "w", "day"), "session_id", "left")


def _member_sums(sessions: DataFrame, terms: DataFrame, n_windows: int) -> DataFrame:
    """One row per member with a session or an impression in a window: the aggregates of each window ``k`` as ``<name>_<k>``."""
    from pyspark.sql import functions as F

    s_aggs = []
    for k in range(n_windows):
        s_aggs += [
            F.sum(F.when(col("w") == k, col("n_sessions")).otherwise(F.lit(0))).cast("long").alias(f"n_sessions_{k}"),
            F.count(F.when(col("w") == k, F.lit(1))).alias(f"active_days_{k}"),  # a row per (member, day, window)
        ]
    per_sessions = sessions.where(col("w").isNotNull()).groupBy("member_id").agg(*s_aggs)
    i_aggs = []
    for k in range(n_windows):
        i_aggs.append(F.sum(F.when(col("w") == k, col("n")).otherwise(F.lit(0))).cast("long").alias(f"n_impressions_{k}"))
        for name, c in {**_COUNT_SUMS, "downstream_virals": "downstream_virals"}.items():
            i_aggs.append(F.sum(F.when(col("w") == k, col(c)).otherwise(F.lit(0))).cast("long").alias(f"{name}_{k}"))
        for name, c in _FLOAT_SUMS.items():
            i_aggs += [F.sum(F.when(col("w") == k, col(f"{c}_ns"))).alias(f"{name}_ns_{k}")]
            i_aggs += [F.sum(F.when(col("w") == k, col(f"{c}_rest"))).alias(f"{name}_rest_{k}")]
    per_imp = terms.where(col("w").isNotNull()).groupBy("member_id").agg(*i_aggs)
    return per_sessions.join(per_imp, "member_id", "full_outer")


def _split_seconds(x: Column, name: str) -> tuple[Column, Column]:
    """:func:`simulate.ab.split_seconds` on a Spark column: ``<name>_ns`` (long) and ``<name>_rest`` (double)."""
    from pyspark.sql import functions as F

    fixed = F.abs(x) < F.lit(FIXED_LIMIT_S)  # null or false for NaN: both go to the remainder
    ns = F.floor(F.when(fixed, x).otherwise(F.lit(0.0)) * F.lit(float(NS_PER_S)) + F.lit(0.5)).cast("long")
    return ns.alias(f"{name}_ns"), F.when(fixed, F.lit(0.0)).otherwise(x).alias(f"{name}_rest")


def _seconds(frame: pl.DataFrame, ns: str, rest: str) -> np.ndarray:
    """The summed seconds of the columns ``ns`` (integer nanoseconds) and ``rest`` (floats); null: nothing summed."""
    return seconds_from_parts(frame[ns].fill_null(0).to_numpy(), frame[rest].fill_null(0.0).to_numpy())


def _window_frame(arms: pl.DataFrame, rows: pl.DataFrame, k: int) -> pl.DataFrame:
    """The aggregates of window ``k`` for every member of ``arms`` (zeros where Spark had no row), as the polars engine's."""
    got = rows.select(
        "member_id",
        *(
            pl.Series(a, _seconds(rows, f"{a}_ns_{k}", f"{a}_rest_{k}")) if a in _FLOAT_SUMS else pl.col(f"{a}_{k}").alias(a)
            for a in AGGREGATES
        ),
    )
    frame = arms.select("member_id").join(got, on="member_id", how="left", maintain_order="left")
    return frame.select(
        "member_id",
        *(pl.col(a).fill_null(0.0 if a.endswith("_s") else 0).cast(pl.Float64 if a.endswith("_s") else pl.Int64) for a in AGGREGATES),
    )


def _daily(dated: DataFrame, terms: DataFrame, inside: DataFrame, arms: pl.DataFrame, first_day: int, n_days: int) -> pl.DataFrame:
    """:func:`simulate.ab.arm_daily` from per (arm, day) sums computed on Spark."""
    from pyspark.sql import functions as F

    rel = (col("day") - F.lit(first_day)).alias("d")
    in_range = (col("d") >= 0) & (col("d") < n_days)
    s = dated.join(inside, "member_id", "inner").select("arm", rel, "member_id", "n_sessions").where(in_range)
    s_sums = s.groupBy("arm", "d").agg(F.sum("n_sessions").alias("sessions"), F.count_distinct("member_id").alias("active"))
    i = terms.join(inside, "member_id", "inner").select("arm", rel, "n", "skipped", "clicked", "well_s_ns", "well_s_rest").where(in_range)
    i_sums = i.groupBy("arm", "d").agg(
        F.sum("n").alias("n_imp"),
        F.sum("skipped").alias("n_skip"),
        F.sum("clicked").alias("n_click"),
        F.sum("well_s_ns").alias("well_ns"),
        F.sum("well_s_rest").alias("well_rest"),
    )
    got = reduced_to_polars(s_sums.join(i_sums, ["arm", "d"], "full_outer"), "sessions and impressions")
    names, counts = np.unique(arms["arm"].to_numpy(), return_counts=True)
    arm_names: list[str] = names.tolist()
    size = counts.astype(float)
    cells = len(arm_names) * n_days
    key = np.searchsorted(np.array(arm_names), got["arm"].to_numpy()) * n_days + got["d"].to_numpy()

    def dense(name: str, dtype: type) -> np.ndarray:
        out: np.ndarray = np.zeros(cells, dtype=dtype)
        out[key] = got[name].fill_null(0).to_numpy()
        return out

    return daily_frame(
        arm_names,
        size,
        n_days,
        dense("sessions", np.int64),
        dense("active", np.int64),
        dense("n_imp", np.float64),
        dense("n_skip", np.float64),
        dense("n_click", np.float64),
        seconds_from_parts(dense("well_ns", np.int64), dense("well_rest", np.float64)),
    )


def _day(micros: Column) -> Column:
    """UTC days since 1970-01-01 of a microsecond count, as an exact integer (floor, also before 1970)."""
    from pyspark.sql import functions as F

    return ((micros - F.pmod(micros, F.lit(DAY_US))) / F.lit(DAY_US)).cast("long")
