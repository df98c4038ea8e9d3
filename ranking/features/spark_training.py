"""The training frame on Spark: the polars batch path as window functions and joins.

The same reduction as :func:`ranking.features.training_frame` (one row per
impression: raw history counts of strictly earlier UTC days, the features
derived from them, the labels), as one Spark plan of built-in functions:

1. the impressions joined with their session (request time, client) and update
   (author, topic, creation time), the day of the request and the
   per-impression indicators (an action, a viral action, not skipped);
2. per key of :data:`~ranking.features.catalogue._RAW` (update, member x type,
   member x author, member x topic, member), the sums of each (key, day) (a
   small table, partially aggregated), cumulated over the key's strictly
   earlier days by a window on that small table (``ROWS BETWEEN UNBOUNDED
   PRECEDING AND 1 PRECEDING``, one row per day), and joined back on (key,
   day): the polars engine's backward as-of join of cumulated daily counts
   without the exact day.  A row with a null key, or on its key's first day,
   gets no history (0), as polars' join leaves it;
3. the features rendered from the one table of definitions,
   :data:`~ranking.features.catalogue._DEFS`, by :func:`_spark_feature` (the
   polars rendering is :mod:`ranking.features.evaluate`), and the labels, the
   skip label from :func:`dwellrank_logs.protocol.not_skipped`.

The full-width rows are never sorted by a window: only the five small daily
tables are, and the rows meet them in equi-joins.  Nothing is collected but
the check that every member has a profile (a count and at most five ids).

pyspark is imported inside the functions: without it, :mod:`ranking` imports
and these raise :class:`~dwellrank_logs.errors.ConfigError` saying how to
install it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

from dwellrank_logs.checks import check_number
from dwellrank_logs.errors import ConfigError, DwellrankError, SchemaError
from dwellrank_logs.io import atomic_dir
from dwellrank_logs.protocol import not_skipped
from dwellrank_logs.schema import ACTION_COLUMN, ACTION_COLUMNS, ACTIONS, VIRAL_COLUMNS
from dwellrank_logs.spark import require_pyspark
from dwellrank_logs.spark_tables import run_reduction, spark_message
from ranking.features.catalogue import _DEFS, _PRIOR_K, _RAW, FeatureSet, get_feature_set
from ranking.features.evaluate import _HOURS_PER_US
from ranking.features.frame_file import FRAME_META, frame_meta
from ranking.features.spark_tables import _NEEDED, _canonical

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["training_frame_spark", "write_training_frame_spark"]

#: The most impressions per shuffle partition of the training frame's job (a partition is about 0.5 KB a row there).
ROWS_PER_PARTITION = 500_000
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000


def training_frame_spark(
    tables: Mapping[str, DataFrame],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float = 10.0,
) -> DataFrame:
    """:func:`~ranking.features.training_frame` as a lazy Spark DataFrame: same columns, types and values.

    Parameters
    ----------
    tables : mapping of table name to pyspark.sql.DataFrame
        ``impressions``, ``sessions``, ``updates`` and ``members``.  The
        columns read are checked with the polars engine's messages (source
        ``<table>``) and cast to the schema's types.
    feature_set : str or FeatureSet
    t_skip_s, t_long_s : float, seconds
        As :func:`~ranking.features.training_frame`.

    Returns
    -------
    pyspark.sql.DataFrame, one row per impression, unordered
        The polars frame's columns, in its order and of its types (Int64 ids,
        ``ts`` a TIMESTAMP, ``day`` an INT, Boolean labels, DOUBLE features and
        targets).  Nothing is computed until an action runs on it
        (:func:`write_training_frame_spark` sorts it by day, ts, request_id, update_id).

    Raises
    ------
    ConfigError
        pyspark is not installed.
    SchemaError
        A table or column is missing or of the wrong type; a bad threshold;
        impressions of members without a profile (one small Spark job counts them).
    """
    require_pyspark()
    from pyspark.sql import functions as F

    fs = get_feature_set(feature_set)
    for name, v in (("t_skip_s", t_skip_s), ("t_long_s", t_long_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SchemaError(f"{name} must be a finite number > 0 seconds, got {v!r}")
    check_number("t_skip_s", t_skip_s)
    for name in _NEEDED:
        if name not in tables:
            raise SchemaError(f"training needs the {name} table; got tables {', '.join(tables) or 'none'}")
    t = {name: _canonical(tables[name], name, f"<{name}>") for name in _NEEDED}
    members = t["members"].select(*_NEEDED["members"])
    _check_profiles_spark(t["impressions"], members)

    action = _any(ACTION_COLUMNS)
    rows = (
        t["impressions"]
        .select(*_NEEDED["impressions"])
        .join(t["sessions"].select("session_id", F.col("start_ts").alias("request_ts"), "client"), "session_id", "left")
        .join(
            t["updates"].select("update_id", "author_id", F.col("topic").cast("bigint").alias("topic"), "created_ts"), "update_id", "left"
        )
        .withColumns(
            {
                "day": _epoch_day(F.col("request_ts")),
                "_action": action.cast("int"),
                "_viral": _any(VIRAL_COLUMNS).cast("int"),
                "_ns": _not_skipped(F.col("dwell_s"), action, t_skip_s).cast("int"),
            }
        )
    )
    # Per history count of _RAW, what one impression adds to it.
    adds = {
        "n_impressions": F.lit(1),
        "n_clicks": F.col(ACTION_COLUMN["click"]).cast("int"),
        "n_virals": F.col("_viral"),
        "n_not_skipped": F.col("_ns"),
        "n_actions": F.col("_action"),
    }
    rows = _add_history(rows, adds)
    rows = rows.join(members, "member_id", "left")
    labels: list[Column | str] = [
        F.col("session_id").alias("request_id"),
        "member_id",
        "update_id",
        "ts",
        "day",
        *[F.col(ACTION_COLUMN[a]).alias(a) for a in ACTIONS],
        (~_not_skipped(F.col("dwell_s"), action, t_skip_s)).alias("skip"),
        (F.col("dwell_s") > F.lit(float(t_long_s))).alias("long_dwell"),
        F.col("dwell_s").cast("double").alias("dwell"),
        (F.col("downstream_clicks").cast("bigint") + F.col("downstream_virals").cast("bigint")).cast("double").alias("downstream"),
        F.col("upstream_value").cast("double").alias("upstream"),
    ]
    return rows.select(*labels, *[_spark_feature(_DEFS[c]).cast("double").alias(c) for c in fs.columns])


def _add_history(rows: DataFrame, adds: Mapping[str, Column]) -> DataFrame:
    """``rows`` with every raw count of ``_RAW`` (DOUBLE, 0 without history): the sums over strictly earlier days.

    Per key, the sums of each (key, day) are a small table (partially
    aggregated), cumulated over the key's earlier days by a window on that
    table: a row's (key, day) is always in it, since the row itself is.  The
    update counts join on (update_id, day); the member-keyed ones are packed
    into one table per (member_id, day), the member x type/author/topic counts
    as maps from the second key, so the full-width rows are shuffled twice and
    never sorted (hash joins that build on the small side).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def cumulated(keys: tuple[str, ...], cols: Mapping[str, str]) -> DataFrame:
        known = reduce(lambda a, b: a & b, [F.col(k).isNotNull() for k in keys])
        daily = rows.where(known).groupBy(*keys, "day").agg(*[F.sum(adds[hist]).alias(raw) for hist, raw in cols.items()])
        # One row per (key, day): the rows before are the strictly earlier days (none: null).
        before = Window.partitionBy(*keys).orderBy("day").rowsBetween(Window.unboundedPreceding, -1)
        return daily.select(*keys, "day", *[F.sum(raw).over(before).alias(raw) for raw in cols.values()])

    member_keyed = {n: kc for n, kc in _RAW.items() if kc[0][0] == "member_id"}
    per_member = next(cumulated(k, c) for k, c in member_keyed.values() if k == ("member_id",))
    lookups: dict[str, Column] = {}
    for name, (keys, cols) in member_keyed.items():
        if keys == ("member_id",):
            lookups.update({raw: F.col(raw) for raw in cols.values()})
            continue
        (second,) = keys[1:]
        packed = (
            cumulated(keys, cols)
            .groupBy("member_id", "day")
            .agg(F.map_from_entries(F.collect_list(F.struct(F.col(second), F.struct(*cols.values())))).alias(f"_{name}"))
        )
        per_member = per_member.join(packed, ["member_id", "day"], "left")
        # A null second key, or none of it: no entry, null (the polars as-of join finds nothing either).
        lookups.update({raw: F.try_element_at(F.col(f"_{name}"), F.col(second))[raw] for raw in cols.values()})
    (update_keys, update_cols), *_ = [kc for n, kc in _RAW.items() if n not in member_keyed]
    out = rows.join(cumulated(update_keys, update_cols).hint("shuffle_hash"), [*update_keys, "day"], "left")
    out = out.join(per_member.hint("shuffle_hash"), ["member_id", "day"], "left")
    lookups.update({raw: F.col(raw) for raw in update_cols.values()})
    out = out.withColumns({raw: F.coalesce(lookups[raw], F.lit(0)).cast("double") for _, cols in _RAW.values() for raw in cols.values()})
    return out.drop(*[f"_{name}" for name in member_keyed])


def write_training_frame_spark(
    tables: Mapping[str, DataFrame],
    path: str | os.PathLike[str],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float = 10.0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build the training frame on Spark and write it as Parquet part files, atomically.

    The parts hold the rows in the order of Spark's partitions (no global
    sort: the reader orders what it keeps, and draws its seeded sample by a
    hash of each row's key, see
    :func:`ranking.features.frame_file.read_training_frame`).  Spark writes
    into a temporary sibling directory that replaces ``path`` when the job
    and the description file ``_dwellrank_frame.json`` (feature set,
    thresholds, row count; skipped by Parquet readers) are written, as
    :func:`dwellrank_logs.io.atomic_dir` does for every output directory.

    Parameters
    ----------
    tables, feature_set, t_skip_s, t_long_s
        As :func:`training_frame_spark`.
    path : path-like
        A local directory (or a ``file://`` URI), which the driver reads back.
    overwrite : bool
        Replace an existing non-empty directory.

    Returns
    -------
    dict
        The description written beside the parts (``n_rows`` among it).

    Raises
    ------
    ConfigError
        pyspark missing, or ``path`` on a filesystem other than the local one.
    OutputExistsError
        ``path`` is not empty and ``overwrite`` is false.
    SchemaError
        As :func:`training_frame_spark`; Spark could not read the logs.
    """
    fs = get_feature_set(feature_set)
    target = _local_path(path)
    frame = training_frame_spark(tables, fs, t_skip_s, t_long_s)
    session = frame.sparkSession
    with atomic_dir(target, overwrite=overwrite) as tmp:
        # Spark writes INT96 timestamps by default; polars (and the schema) read microseconds in UTC.
        settings = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
        # The hash joins build, and the cache holds, one shuffle partition at a time: at most ROWS_PER_PARTITION
        # impressions each, whatever the session's count (a local session's 2 per thread held 12.5M of 50M
        # impressions each and ran out of a 4 GB driver).  A Parquet count reads the footers only.
        n_imp = run_reduction(lambda: tables["impressions"].count(), "impressions")
        parts = int(session.conf.get("spark.sql.shuffle.partitions") or 200)
        if n_imp > parts * ROWS_PER_PARTITION:
            settings["spark.sql.shuffle.partitions"] = str(-(-n_imp // ROWS_PER_PARTITION))
        before = {key: session.conf.get(key, None) for key in settings}
        for key, value in settings.items():
            session.conf.set(key, value)
        try:
            frame.write.mode("overwrite").parquet("file://" + str(tmp.absolute()))
            n_rows = session.read.parquet("file://" + str(tmp.absolute())).count()  # from the footers
        except DwellrankError:
            raise
        except Exception as exc:  # Spark's and py4j's errors, with a JVM stack trace
            raise SchemaError(f"{target}: cannot build the training frame on Spark ({spark_message(exc)})") from exc
        finally:
            for name, old in before.items():
                if old is None:
                    session.conf.unset(name)
                else:
                    session.conf.set(name, old)
        meta = frame_meta("spark", fs, float(t_skip_s), float(t_long_s), int(n_rows))
        (tmp / FRAME_META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# --------------------------------------------------------------------------- the Spark rendering of _DEFS


def _spark_feature(d: tuple[Any, ...]) -> Column:
    """A feature definition of ``_DEFS`` as a Spark column: the operations, in order, of ``evaluate._expr``.

    Raw count columns are already DOUBLE and 0 where there is no history, as
    :func:`ranking.features.evaluate._derive` makes them; the rate is
    ``(x + k p) / (n + k)`` with ``k p`` one Python float, as in polars, so the
    values are equal bit for bit.  Times are read as microseconds since the
    epoch, independent of the session's time zone.
    """
    from pyspark.sql import functions as F

    kind = d[0]
    if kind == "col":
        return F.col(d[1]).cast("double")
    if kind == "rate":
        return (F.col(d[1]).cast("double") + F.lit(_PRIOR_K * d[3])) / (F.col(d[2]).cast("double") + F.lit(_PRIOR_K))
    if kind == "is":
        return (F.col(d[1]) == F.lit(d[2])).cast("double")
    if kind == "age_h":
        return (F.unix_micros("request_ts") - F.unix_micros("created_ts")).cast("double") * F.lit(_HOURS_PER_US)
    if kind == "hour":
        return F.floor(F.pmod(F.unix_micros("request_ts"), F.lit(_US_PER_DAY)) / F.lit(_US_PER_HOUR)).cast("double")
    raise SchemaError(f"feature definition {d!r} has no Spark rendering (ranking.features.spark_training._spark_feature)")


# The one skip label (dwellrank_logs.protocol), applied to Spark columns: its operators are Spark's too.
_not_skipped = cast(Callable[["Column", "Column", float], "Column"], not_skipped)


def _any(columns: tuple[str, ...]) -> Column:
    """True where any of ``columns`` is true, with SQL's three-valued OR (polars' ``any_horizontal``)."""
    from pyspark.sql import functions as F

    return reduce(lambda a, b: a | b, [F.col(c) for c in columns])


def _epoch_day(ts: Column) -> Column:
    """Days since 1970-01-01 (UTC) of a timestamp, as polars' ``dt.epoch("d")``: exact integer arithmetic."""
    from pyspark.sql import functions as F

    us = F.unix_micros(ts)
    return ((us - F.pmod(us, F.lit(_US_PER_DAY))) / F.lit(_US_PER_DAY)).cast("int")


def _check_profiles_spark(impressions: DataFrame, members: DataFrame) -> None:
    """:func:`ranking.features.validate._check_profiles` on Spark: members of impressions without a profile."""
    from pyspark.sql import functions as F

    unknown = impressions.select("member_id").distinct().join(members, "member_id", "left").filter(F.col("connections").isNull())
    try:
        n = unknown.count()
        first = (
            [r["member_id"] for r in unknown.select("member_id").orderBy(F.col("member_id").asc_nulls_first()).limit(5).collect()]
            if n
            else []
        )
    except DwellrankError:
        raise
    except Exception as exc:
        raise SchemaError(f"impressions: cannot read the logs on Spark ({spark_message(exc)})") from exc
    if n:
        raise SchemaError(
            f"impressions: {n} member_id(s) have no profile in the members table "
            f"(first: {first}); member-side features need connections, tenure_days, ..."
        )


def _local_path(path: str | os.PathLike[str]) -> Path:
    src = os.fspath(path)
    if not isinstance(src, str):
        raise ConfigError(f"path must be a str or os.PathLike of str, got {type(src).__name__}")
    if "://" in src and not src.startswith("file:"):
        raise ConfigError(f"{src}: the training frame is written where the driver reads it back: a local path or file:// URI")
    return Path(urlparse(src).path if src.startswith("file:") else src)
