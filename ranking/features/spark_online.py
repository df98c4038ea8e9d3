"""Candidate features on Spark: the history counts before each request's UTC day, joined in Spark.

The Spark engine of :meth:`ranking.FeedRanker.predict_from_logs` (the polars
path: one :func:`~ranking.features.history_from_logs` snapshot per request
day, then :func:`~ranking.features.candidate_features`).  The same raw counts
come from one as-of join per history table, as window functions:

1. impressions are dated by their session's start (``_day``, days since
   1970-01-01 UTC) and summed per (key, day) (``daily``);
2. the candidate rows are added to ``daily`` (a union), ordered after every
   earlier day and before their own day;
3. a running sum over ``Window.partitionBy(key).orderBy(_day, _q)`` at a
   candidate row is then the sum over strictly earlier days (no history:
   null, read as 0), and the candidate rows are kept.

Two shuffles per table (the daily sums, the window), no join back, whatever
the number of request days; nothing reaches the driver.  The features are then the definitions of
:data:`ranking.features.catalogue._DEFS` as Spark expressions with the
floating-point operations of :mod:`ranking.features.evaluate` in the same
order, so the columns equal the polars engine's bit for bit.

pyspark is imported inside the functions (an optional extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import TYPE_CHECKING, Any, cast

from dwellrank_logs.protocol import not_skipped
from dwellrank_logs.schema import ACTION_COLUMNS, VIRAL_COLUMNS
from dwellrank_logs.spark_tables import timestamp_micros
from ranking.features.catalogue import _DEFS, _PRIOR_K, _RAW, PROFILE_COLUMNS, FeatureSet
from ranking.features.evaluate import _HOURS_PER_US

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["DAY_US", "candidate_features_spark"]

#: Microseconds per day.
DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000

# History column -> how one impression contributes to it (flags below); n_impressions counts rows.
_SUMS = {"n_clicks": "_click", "n_virals": "_viral", "n_not_skipped": "_ns", "n_actions": "_action"}


def _day(micros: Column) -> Column:
    """Days since 1970-01-01 of a UTC microsecond count, as an exact integer (floor, also before 1970)."""
    from pyspark.sql import functions as F

    return ((micros - F.pmod(micros, F.lit(DAY_US))) / F.lit(DAY_US)).cast("long")


def _events(tables: Mapping[str, DataFrame], t_skip_s: float) -> DataFrame:
    """One row per impression with a dated session: keys, ``_day`` and the 0/1 flags the counts sum."""
    from pyspark.sql import functions as F

    imp, ses, upd = tables["impressions"], tables["sessions"], tables["updates"]
    sessions = ses.select(F.col("session_id").cast("long").alias("session_id"), _day(timestamp_micros(ses, "start_ts")).alias("_day"))
    updates = upd.select(F.col("update_id").cast("long").alias("update_id"), F.col("author_id").cast("long"), F.col("topic").cast("long"))

    def any_of(cols: tuple[str, ...]) -> Column:
        # SQL's OR is Kleene's, as polars' any_horizontal (dwellrank_logs.protocol.any_action_expr).
        return reduce(lambda a, b: a | b, [F.col(c).cast("boolean") for c in cols])

    action = any_of(ACTION_COLUMNS)
    flags = imp.select(
        F.col("session_id").cast("long").alias("session_id"),
        F.col("member_id").cast("long").alias("member_id"),
        F.col("update_id").cast("long").alias("update_id"),
        F.col("update_type").cast("string").alias("update_type"),
        F.col("clicked").cast("boolean").cast("long").alias("_click"),
        any_of(VIRAL_COLUMNS).cast("long").alias("_viral"),
        action.cast("long").alias("_action"),
        # The one skip label, on Spark columns (its operators are Spark's too).
        cast(Any, not_skipped)(F.col("dwell_s").cast("double"), action, float(t_skip_s)).cast("long").alias("_ns"),
    )
    # An impression whose session is unknown has no date and is never counted (polars: ts null < cutoff is not true).
    dated = flags.join(sessions, on="session_id", how="inner").where(F.col("_day").isNotNull())
    return dated.join(updates, on="update_id", how="left")


def _add_counts_before(rows: DataFrame, events: DataFrame, keys: tuple[str, ...], cols: Mapping[str, str]) -> DataFrame:
    """``rows`` (with ``keys`` and ``_day``) and the raw count columns ``cols``, summed over events of strictly earlier days."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    aggs = [(F.count(F.lit(1)) if h == "n_impressions" else F.sum(_SUMS[h])).cast("long").alias(raw) for h, raw in cols.items()]
    daily = events.groupBy(*keys, "_day").agg(*aggs).withColumn("_q", F.lit(1))
    # A candidate row sorts after every earlier day's sums and before its own day's: the running sum
    # at it is the history strictly before the request's day (its own columns are null in daily rows).
    both = rows.withColumn("_q", F.lit(0)).unionByName(daily, allowMissingColumns=True)
    w = Window.partitionBy(*keys).orderBy("_day", "_q").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    summed = both.select(*rows.columns, "_q", *[F.sum(raw).over(w).alias(raw) for raw in cols.values()])
    return summed.where(F.col("_q") == 0).drop("_q")


def candidate_features_spark(
    candidates: DataFrame,
    tables: Mapping[str, DataFrame],
    fs: FeatureSet,
    t_skip_s: float,
    keep: tuple[str, ...] = (),
) -> DataFrame:
    """The feature columns of candidate rows, with history from the log tables (lazy).

    Parameters
    ----------
    candidates : pyspark.sql.DataFrame
        Validated candidate columns (:data:`dwellrank_logs.protocol.CANDIDATE_COLUMNS`)
        in canonical types: ids ``long``, ``update_type``/``client`` ``string``,
        ``created_ts``/``request_ts`` ``timestamp``; ``keep`` columns pass through.
    tables : mapping of str to pyspark.sql.DataFrame
        ``impressions``, ``sessions``, ``updates``, ``members``, columns checked.
    fs : FeatureSet
    t_skip_s : float, seconds
        T_skip of the not-skipped counts (the model's).
    keep : tuple of str
        Further candidate columns to carry (keys, a row id).

    Returns
    -------
    pyspark.sql.DataFrame
        ``keep`` and the columns of ``fs`` as ``double``, position 0 (unknown
        before ranking).  A member without a profile gets null profile
        features: the caller refuses those first.  Row order is not kept; carry a row id.
    """
    from pyspark.sql import functions as F

    req = timestamp_micros(candidates, "request_ts")
    created = timestamp_micros(candidates, "created_ts")
    cand = candidates.select(
        *keep,
        *[c for c in ("member_id", "update_id", "update_type", "author_id", "client") if c not in keep],
        F.col("topic").cast("long").alias("topic"),
        req.alias("_req_us"),
        created.alias("_created_us"),
        _day(req).alias("_day"),
    )
    events = _events(tables, t_skip_s)
    out = cand
    for keys, cols in _RAW.values():
        out = _add_counts_before(out, events, keys, cols)
    members = tables["members"]
    profiles = members.select(F.col("member_id").cast("long").alias("member_id"), *PROFILE_COLUMNS)
    out = out.join(profiles, on="member_id", how="left")
    return out.select(*keep, *[_expr(_DEFS[c]).cast("double").alias(c) for c in fs.columns])


def _expr(d: tuple[Any, ...]) -> Column:
    """One definition of ``_DEFS`` as a Spark column (the operations of ranking.features.evaluate._expr)."""
    from pyspark.sql import functions as F

    def num(c: str) -> Column:
        raw = {v for _, (_, cols) in _RAW.items() for v in cols.values()}
        x = F.col(c).cast("double")
        return F.coalesce(x, F.lit(0.0)) if c in raw else x  # no history: 0

    kind = d[0]
    if kind == "col":
        return F.lit(0.0) if d[1] == "position" else num(d[1])  # scored at slot 0, as the polars engine does
    if kind == "rate":
        return (num(d[1]) + F.lit(_PRIOR_K * d[3])) / (num(d[2]) + F.lit(_PRIOR_K))
    if kind == "is":
        return (F.col(d[1]) == F.lit(d[2])).cast("double")
    if kind == "age_h":
        return (F.col("_req_us") - F.col("_created_us")).cast("double") * F.lit(_HOURS_PER_US)
    # hour of request_ts in UTC (the logs' time zone), whatever the session's time zone.
    return (F.pmod(F.col("_req_us"), F.lit(DAY_US)) / F.lit(_HOUR_US)).cast("long").cast("double")
