"""History counters: what a ranker may know about the past at request time.

The five count tables of :class:`~dwellrank_logs.protocol.HistoryTables` are produced two ways:

* in batch, from an impressions log, by :func:`history_tables` (for training
  features on real or simulated logs), and
* online, by the simulator's incrementally maintained state, which exposes
  :class:`HistoryTables` to rankers at the start of each simulated day.

Both count impressions strictly before a cutoff, with the skip label of
:func:`dwellrank_logs.protocol.not_skipped`.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from dwellrank_logs.protocol import HistoryTables, any_action_expr, not_skipped_expr
from dwellrank_logs.schema import VIRAL_COLUMNS

__all__ = ["history_tables"]


_U = pl.UInt32


def history_tables(
    impressions: pl.LazyFrame | pl.DataFrame,
    updates: pl.LazyFrame | pl.DataFrame,
    before: dt.datetime | None,
    t_skip_s: float,
) -> HistoryTables:
    """Count impressions with ``ts < before`` (all of them when ``before`` is None).

    Parameters
    ----------
    impressions : impressions table (schema ``impressions``)
    updates : updates table, for each update's author and topic
    before : datetime, UTC, optional
        Cutoff; only strictly earlier impressions are counted (no leakage).
    t_skip_s : float, seconds
        T_skip for the not-skipped counts.
    """
    imp = impressions.lazy()
    if before is not None:
        imp = imp.filter(pl.col("ts") < before)
    imp = imp.select(
        "member_id",
        "update_id",
        "update_type",
        pl.col("clicked").cast(_U).alias("click"),
        any_action_expr(VIRAL_COLUMNS).cast(_U).alias("viral"),
        any_action_expr().cast(_U).alias("action"),
        not_skipped_expr(t_skip_s).cast(_U).alias("not_skipped"),
    )
    n = pl.len().cast(_U).alias("n_impressions")
    upd = (
        imp.group_by("update_id")
        .agg(n, pl.sum("click").alias("n_clicks"), pl.sum("viral").alias("n_virals"), pl.sum("not_skipped").alias("n_not_skipped"))
        .sort("update_id")
    )
    mt = (
        imp.group_by("member_id", "update_type")
        .agg(n, pl.sum("not_skipped").alias("n_not_skipped"), pl.sum("action").alias("n_actions"))
        .sort("member_id", "update_type")
    )
    by_update = imp.join(updates.lazy().select("update_id", "author_id", "topic"), on="update_id", how="left")
    ma = by_update.group_by("member_id", "author_id").agg(n, pl.sum("action").alias("n_actions")).sort("member_id", "author_id")
    mp = (
        by_update.group_by("member_id", pl.col("topic").cast(pl.Int64))
        .agg(n, pl.sum("not_skipped").alias("n_not_skipped"), pl.sum("action").alias("n_actions"))
        .sort("member_id", "topic")
    )
    mem = (
        imp.group_by("member_id")
        .agg(n, pl.sum("not_skipped").alias("n_not_skipped"), pl.sum("action").alias("n_actions"))
        .sort("member_id")
    )
    u, t, a, p, m = pl.collect_all([upd, mt, ma, mp, mem])
    return HistoryTables(updates=u, member_types=t, member_authors=a, member_topics=p, members=m, t_skip_s=t_skip_s)
