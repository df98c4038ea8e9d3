"""The daily action graphs of the Temporal GCN-LSTM channel: transitions between consecutive events within sessions.

Liu et al. (the paper's reference [2]) describe a member's day by a directed
graph over the actions: an edge ``a -> b`` weighted by how often action ``b``
directly followed action ``a`` in one session.  Here the actions are the 10
event types of Table 1, so a member's day is a 10 x 10 count matrix; a
session with ``n`` events contributes ``n - 1`` transitions, all to the day
the session starts on (the day :attr:`EngagementData.activity` counts its
events on).

Within a session events are ordered by time, ties by event-type index: the
transition counts then depend only on the events, not on the row order of the
events table, and the Spark engine (a ``lag`` over the session ordered by the
same keys) gives the same counts.

* :func:`session_transitions`: per session, (from, to) counts (polars, lazy).
* :func:`member_day_transitions`: summed to (member, day, from, to) over the history sessions.
* :func:`transition_array`: the dense (N, days, 10, 10) array of the kept members.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.schema import EVENT_TYPES

__all__ = ["TRANSITION_COLUMNS", "member_day_transitions", "session_transitions", "transition_array"]

#: Columns of a per-(member, day) transition table: the member, the history day, the event-type indices
#: (positions in :data:`EVENT_TYPES`) of the earlier and the later event, and how often (Int64).
TRANSITION_COLUMNS: tuple[str, ...] = ("member_id", "day", "src", "dst", "n")


def session_transitions(events: pl.LazyFrame) -> pl.LazyFrame:
    """Counts of each (from, to) pair of consecutive events per session.

    Parameters
    ----------
    events : polars.LazyFrame
        ``session_id``, ``ts`` (event time) and ``event_type`` (one of :data:`EVENT_TYPES`).

    Returns
    -------
    polars.LazyFrame
        ``session_id``, ``src``, ``dst`` (Int64 event-type indices) and ``n``
        (Int64, >= 1); one row per pair that occurs.
    """
    typed = events.select(
        "session_id",
        "ts",
        type=pl.col("event_type").replace_strict(list(EVENT_TYPES), list(range(len(EVENT_TYPES))), return_dtype=pl.Int64),
    ).sort("session_id", "ts", "type")
    # One shift over the sorted frame: the previous row is the previous event when it is of the same session.
    return (
        typed.with_columns(src=pl.col("type").shift(1), same=pl.col("session_id") == pl.col("session_id").shift(1))
        .filter(pl.col("same"))
        .group_by("session_id", "src", pl.col("type").alias("dst"))
        .agg(n=pl.len().cast(pl.Int64))
    )


def member_day_transitions(per_session: pl.DataFrame, hist: pl.DataFrame) -> pl.DataFrame:
    """Per-session transition counts summed by member and history day.

    Parameters
    ----------
    per_session : polars.DataFrame
        As :func:`session_transitions` returns it (collected).
    hist : polars.DataFrame
        The history sessions: ``session_id``, ``member_id`` and ``day`` (history day of the session's start).

    Returns
    -------
    polars.DataFrame
        :data:`TRANSITION_COLUMNS`, sorted by them.
    """
    return (
        per_session.join(hist.select("session_id", "member_id", "day"), on="session_id", how="inner")
        .group_by("member_id", "day", "src", "dst")
        .agg(n=pl.col("n").sum().cast(pl.Int64))
        .select(TRANSITION_COLUMNS)
        .sort(TRANSITION_COLUMNS)
    )


def transition_array(transitions: pl.DataFrame, kept: pl.DataFrame, history_days: int) -> np.ndarray:
    """The kept members' daily transition matrices.

    Parameters
    ----------
    transitions : polars.DataFrame
        :data:`TRANSITION_COLUMNS` (members that are not kept are ignored).
    kept : polars.DataFrame
        ``member_id`` and ``row`` (the member's position in the output).
    history_days : int, days

    Returns
    -------
    ndarray of float32, shape (len(kept), history_days, 10, 10)
        ``[i, t, a, b]``: how often event type ``b`` directly followed type
        ``a`` within member ``i``'s sessions that started on history day ``t``.
    """
    v = len(EVENT_TYPES)
    out = np.zeros((kept.height, history_days, v, v), dtype=np.float32)
    tk = transitions.join(kept.select("member_id", "row"), on="member_id", how="inner")
    idx = tuple(tk[c].to_numpy() for c in ("row", "day", "src", "dst"))
    # np.add.at: an engine may deliver a (member, day, from, to) key more than once.
    np.add.at(out, idx, tk["n"].to_numpy().astype(np.float32))
    return out
