"""History counters: what a ranker may know about the past at request time.

The same five count tables are produced two ways:

* in batch, from an impressions log, by :func:`history_tables` (for training
  features on real or simulated logs), and
* online, by the simulator's incrementally maintained state, which exposes
  :class:`HistoryTables` to rankers at the start of each simulated day.

Both count impressions strictly before a cutoff.  An impression is *not
skipped* when its dwell is at least the threshold or it carries a click or
viral action (the skip label of the post: dwell < T_skip and no action).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl

from logs.schema import ACTION_COLUMNS, VIRAL_COLUMNS

__all__ = ["HistoryTables", "history_tables", "not_skipped_expr", "any_action_expr"]

_T = TypeVar("_T")


class HistoryTables:
    """Counts of past impressions, keyed for joining onto candidate rows.

    Each table is computed on first access (a ranker that needs only update
    counts never pays for the member x author table).  Row order is not
    specified; join on the keys.

    Attributes
    ----------
    updates : DataFrame
        update_id, n_impressions, n_clicks, n_virals, n_not_skipped
    member_types : DataFrame
        member_id, update_type, n_impressions, n_not_skipped, n_actions
    member_authors : DataFrame
        member_id, author_id, n_impressions, n_actions
    member_topics : DataFrame
        member_id, topic (Int64), n_impressions, n_not_skipped, n_actions
    members : DataFrame
        member_id, n_impressions, n_not_skipped, n_actions
    skip_threshold_s : float
        Dwell threshold used for the not-skipped counts.
    """

    _NAMES = ("updates", "member_types", "member_authors", "member_topics", "members")

    def __init__(
        self,
        updates: pl.DataFrame | Callable[[], pl.DataFrame],
        member_types: pl.DataFrame | Callable[[], pl.DataFrame],
        member_authors: pl.DataFrame | Callable[[], pl.DataFrame],
        member_topics: pl.DataFrame | Callable[[], pl.DataFrame],
        members: pl.DataFrame | Callable[[], pl.DataFrame],
        skip_threshold_s: float,
    ) -> None:
        self._src = dict(zip(self._NAMES, (updates, member_types, member_authors, member_topics, members)))
        self._cache: dict[str, pl.DataFrame] = {}
        self._derived: dict[str, Any] = {}
        self.skip_threshold_s = float(skip_threshold_s)

    def _get(self, name: str) -> pl.DataFrame:
        if name not in self._cache:
            src = self._src[name]
            self._cache[name] = src if isinstance(src, pl.DataFrame) else src()
        return self._cache[name]

    def derived(self, key: str, build: Callable[[], _T]) -> _T:
        """``build()``, computed on the first call for ``key`` and kept with this snapshot.

        For structures consumers derive from the tables (ranking's lookup indexes): the
        tables never change, so they stay valid for every later request, and they are freed
        with the snapshot.  ``key`` should name the consumer (``"module.name"``).
        """
        try:
            return self._derived[key]
        except KeyError:
            # Two threads may both build; the first stored result is the one every caller gets.
            return self._derived.setdefault(key, build())

    @property
    def updates(self) -> pl.DataFrame:
        return self._get("updates")

    @property
    def member_types(self) -> pl.DataFrame:
        return self._get("member_types")

    @property
    def member_authors(self) -> pl.DataFrame:
        return self._get("member_authors")

    @property
    def member_topics(self) -> pl.DataFrame:
        return self._get("member_topics")

    @property
    def members(self) -> pl.DataFrame:
        return self._get("members")


def any_action_expr(columns: tuple[str, ...] = ACTION_COLUMNS) -> pl.Expr:
    """True where any of ``columns`` (click/viral actions by default) is true."""
    return pl.any_horizontal([pl.col(c) for c in columns])


def not_skipped_expr(skip_threshold_s: float, dwell_col: str = "dwell_s") -> pl.Expr:
    """True where dwell >= threshold or any click/viral action happened."""
    return (pl.col(dwell_col) >= skip_threshold_s) | any_action_expr()


_U = pl.UInt32


def history_tables(
    impressions: pl.LazyFrame | pl.DataFrame,
    updates: pl.LazyFrame | pl.DataFrame,
    before: dt.datetime | None,
    skip_threshold_s: float,
) -> HistoryTables:
    """Count impressions with ``ts < before`` (all of them when ``before`` is None).

    Parameters
    ----------
    impressions : impressions table (schema ``impressions``)
    updates : updates table, for each update's author and topic
    before : datetime, UTC, optional
        Cutoff; only strictly earlier impressions are counted (no leakage).
    skip_threshold_s : float, seconds
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
        not_skipped_expr(skip_threshold_s).cast(_U).alias("not_skipped"),
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
    ma = (
        by_update.group_by("member_id", "author_id")
        .agg(n, pl.sum("action").alias("n_actions"))
        .sort("member_id", "author_id")
    )
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
    return HistoryTables(updates=u, member_types=t, member_authors=a, member_topics=p, members=m, skip_threshold_s=skip_threshold_s)
