"""The engine-neutral reduction of the logs, and the shared code that builds :class:`EngagementData` from it.

An engine (polars on one machine, Spark on a cluster) reduces the members,
sessions, events and deliveries tables to a :class:`LogReduction`: the kept
members with their session and active-day counts, the valid history-window
sessions with their event-type counts (the events themselves are gone), and
each kept member's latest delivery, and the transitions between consecutive
events per member and history day.  :func:`assemble_dataset` then builds the
padded model inputs from it with the functions of :mod:`engagement.features`
and :mod:`engagement.labels`, the same operations in the same order as
:func:`engagement.dataset.build_dataset`, so both engines give the same
arrays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from dwellrank_logs.schema import EVENT_TYPES, TABLES
from engagement.config import WindowConfig
from engagement.dataset import EngagementData, assemble_members
from engagement.features import MEMBER_COLUMNS, delivery_matrix
from engagement.transitions import TRANSITION_COLUMNS

__all__ = ["KEPT_COUNTS", "LogReduction", "assemble_dataset"]

_US_PER_DAY = 86_400 * 1_000_000
#: The per-member counts of :attr:`LogReduction.kept`: valid sessions and active days in the history (``_h``)
#: and future (``_f``) windows and in the last ``RECENT_DAYS`` history days (``_h7``).
KEPT_COUNTS: tuple[str, ...] = ("n_h", "n_f", "a_h", "a_f", "n_h7", "a_h7")


@dataclass(frozen=True)
class LogReduction:
    """What the logs reduce to before the model inputs are built; every frame a row per member or per session.

    Attributes
    ----------
    kept : polars.DataFrame
        One row per member that passes the filter, sorted by ``member_id``:
        the members table's ``member_id``, its ``member_columns`` and the
        Int64 counts :data:`KEPT_COUNTS`.
    hist : polars.DataFrame
        Every valid history-window session of every member (before the
        filter), sorted by ``member_id``, ``start_ts``, ``session_id``:
        ``member_id``, ``session_id``, ``start_ts`` (UTC), ``duration_s``
        (seconds), ``client``.
    counts : ndarray of int64, shape (len(hist), 10)
        Event counts of each row of ``hist`` by :data:`EVENT_TYPES`.
    latest_delivery : polars.DataFrame
        One row per kept member with a delivery in the history window:
        ``member_id``, the latest delivery's ``ts``, ``channel`` and
        ``content``, and ``n`` (Int64) deliveries in the window.
    transitions : polars.DataFrame
        Transition counts between consecutive events of the history sessions,
        summed by member and history day: :data:`engagement.transitions.TRANSITION_COLUMNS`
        (at least the kept members'; any row order).
    start : datetime.datetime
        UTC start of history day 0.
    window : WindowConfig
    member_columns : tuple of str
        The members-table columns of ``kept`` that the macroscopic features come from.
    """

    kept: pl.DataFrame
    hist: pl.DataFrame
    counts: np.ndarray
    latest_delivery: pl.DataFrame
    transitions: pl.DataFrame
    start: dt.datetime
    window: WindowConfig
    member_columns: tuple[str, ...] = MEMBER_COLUMNS

    def __post_init__(self) -> None:
        if self.counts.shape != (self.hist.height, len(EVENT_TYPES)):
            raise ValueError(f"counts must have shape ({self.hist.height}, {len(EVENT_TYPES)}), got {self.counts.shape}")


def assemble_dataset(r: LogReduction) -> EngagementData:
    """The model inputs and labels of :class:`EngagementData` from a reduction of the logs.

    The members table's columns are cast to their schema types first, so an
    engine may deliver them in any width of their kind.
    """
    w = r.window
    members = TABLES["members"]
    kept = r.kept.with_columns(
        # The schema's columns to their schema type; a platform's own columns as they arrived.
        *(pl.col(c).cast(members.column(c).dtype) for c in ("member_id", *r.member_columns) if c in members.names and c != "client"),
        pl.col(*KEPT_COUNTS).cast(pl.Int64),
    ).with_row_index("row")
    start_lit = pl.lit(r.start).cast(r.hist.schema["start_ts"])
    hist = (
        r.hist.with_columns(t_days=(pl.col("start_ts") - start_lit).dt.total_microseconds() / _US_PER_DAY)
        .with_columns(day=pl.col("t_days").floor().cast(pl.Int64))
        .with_row_index("sidx")
    )
    counts = np.ascontiguousarray(r.counts, dtype=np.int64)
    delivery = latest_delivery_features(r.latest_delivery, kept, r.start, w)
    transitions = r.transitions.select(pl.col(c).cast(pl.Int64) for c in TRANSITION_COLUMNS)
    return assemble_members(hist, kept, counts, delivery, w, r.start, r.member_columns, transitions=transitions)


def latest_delivery_features(latest: pl.DataFrame, kept: pl.DataFrame, start: dt.datetime, w: WindowConfig) -> np.ndarray:
    """Latest delivery D, float32, shape (N, len(DELIVERY_NAMES)), from each member's latest delivery and count.

    The arithmetic of :func:`engagement.features.delivery_features` on its
    per-member aggregate (``latest``: ``member_id``, ``ts``, ``channel``,
    ``content``, ``n``); ``kept`` has ``member_id`` and ``row``.  Members
    without a delivery in the window get a row of zeros.
    """
    end = start + dt.timedelta(days=w.history_days)
    dl = latest.join(kept.select("member_id", "row"), on="member_id", how="inner")
    return delivery_matrix(dl, kept.height, end)
