"""Per-member model inputs: session sequences with their context, macroscopic features M and the latest delivery D.

The functions here scatter the rows that :func:`engagement.dataset.build_dataset`
has windowed and filtered into arrays, one row per kept member (numpy fancy
indexing, no Python loop over members).  Their frames carry the columns
``build_dataset`` adds: ``row`` (the member's output row), ``sidx`` (the
session's row in the history-session count matrix), ``day`` and ``t_days``
(days since the window start), and the per-member counts ``n_h``, ``a_h``,
``n_h7``, ``a_h7``.  Names of the columns of each array are in
:data:`CONTEXT_NAMES`, :data:`MACRO_NAMES` and :data:`DELIVERY_NAMES`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from dwellrank_logs.schema import CHANNELS, CLIENTS, CONTENTS
from engagement.config import WindowConfig

__all__ = [
    "CONTEXT_NAMES",
    "DELIVERY_NAMES",
    "MACRO_NAMES",
    "MEMBER_COLUMNS",
    "RECENT_DAYS",
    "delivery_features",
    "delivery_matrix",
    "macro_features",
    "macro_names",
    "member_feature_columns",
    "sequence_inputs",
]

#: The recent part of the history window, days (the ``*_last7`` macroscopic features).
RECENT_DAYS = 7

#: Session context c (paper section 5.1: start time, duration, client).
CONTEXT_NAMES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "day_in_history",
    "log1p_duration_min",
    *(f"client_{c}" for c in CLIENTS),
)
#: Macroscopic features M (member attributes and history-window activity rates).
MACRO_NAMES: tuple[str, ...] = (
    "log1p_connections",
    "log1p_tenure_days",
    "seniority",
    "is_premium",
    *(f"main_client_{c}" for c in CLIENTS),
    "sessions_per_day",
    "active_day_rate",
    "sessions_per_day_last7",
    "active_day_rate_last7",
    "log1p_events_per_session",
    "mean_log1p_duration_min",
)
#: Members-table columns of the schema that become macroscopic features when present, in this order.
MEMBER_COLUMNS: tuple[str, ...] = ("connections", "tenure_days", "client", "seniority", "is_premium")
#: Members-table columns of the schema that are never features: the key, the A/B arm, a categorical code.
_NOT_FEATURES = ("member_id", "arm", "industry")
#: The activity rates of M, computed from the sessions whatever the members table holds.
_ACTIVITY_NAMES: tuple[str, ...] = MACRO_NAMES[-6:]

#: The latest platform delivery D in the history window (channel, content, recency, count).
DELIVERY_NAMES: tuple[str, ...] = (
    "has_delivery",
    *(f"channel_{c}" for c in CHANNELS),
    *(f"content_{c}" for c in CONTENTS),
    "log1p_hours_before_end",
    "log1p_deliveries_in_history",
)


def sequence_inputs(hist: pl.DataFrame, kept: pl.DataFrame, counts: np.ndarray, w: WindowConfig) -> dict[str, np.ndarray]:
    """Padded arrays of the most recent ``max_sessions`` history sessions per member.

    Parameters
    ----------
    hist : polars.DataFrame
        Valid history-window sessions (``member_id``, ``session_id``,
        ``start_ts``, ``duration_s``, ``client``, ``t_days``, ``sidx``).
    kept : polars.DataFrame
        Kept members, one per output row (``member_id``, ``row``, ``n_h``).
    counts : ndarray of int64, shape (S, 10)
        Event counts of each history session, indexed by ``sidx``.
    w : WindowConfig

    Returns
    -------
    dict
        ``nu`` float32 (N, T, 10) event frequencies, ``ctx`` float32
        (N, T, len(CONTEXT_NAMES)) session context, both zero-padded after the
        last valid step, and ``lengths`` int64 (N,).
    """
    hs = hist.join(kept.select("member_id", "row"), on="member_id", how="inner").sort("row", "start_ts", "session_id")
    hs = hs.with_columns(pos=pl.int_range(pl.len(), dtype=pl.Int64).over("row"), n=pl.len().over("row").cast(pl.Int64))
    # Keep the last max_sessions steps, shifted so that they start at position 0.
    hs = hs.filter(pl.col("pos") >= pl.col("n") - w.max_sessions).with_columns(
        pos=pl.col("pos") - (pl.col("n") - pl.min_horizontal(pl.col("n"), pl.lit(w.max_sessions)))
    )
    n = kept.height
    lengths = np.minimum(kept["n_h"].to_numpy(), w.max_sessions).astype(np.int64)
    t = int(lengths.max())
    row, pos = hs["row"].to_numpy(), hs["pos"].to_numpy()
    c = counts[hs["sidx"].to_numpy()].astype(np.float32)
    nu = np.zeros((n, t, counts.shape[1]), dtype=np.float32)
    nu[row, pos] = c / c.sum(axis=1, keepdims=True)
    hour = (hs["start_ts"].dt.hour().cast(pl.Float64) + hs["start_ts"].dt.minute() / 60.0).to_numpy()
    client = hs["client"].to_numpy()
    ctx_rows = np.column_stack(
        [
            np.sin(2 * np.pi * hour / 24.0),
            np.cos(2 * np.pi * hour / 24.0),
            hs["t_days"].to_numpy() / w.history_days,
            np.log1p(np.maximum(hs["duration_s"].to_numpy(), 0.0) / 60.0),
            *((client == c).astype(np.float64) for c in CLIENTS),
        ]
    ).astype(np.float32)
    ctx = np.zeros((n, t, len(CONTEXT_NAMES)), dtype=np.float32)
    ctx[row, pos] = ctx_rows
    return {"nu": nu, "ctx": ctx, "lengths": lengths}


def member_feature_columns(schema: pl.Schema | dict[str, pl.DataType]) -> tuple[str, ...]:
    """The members-table columns that become macroscopic features, given the table's schema.

    The schema's :data:`MEMBER_COLUMNS` that are present, in that order,
    then every other numeric or boolean column in table order (the key
    ``member_id``, ``arm`` and the categorical ``industry`` code excepted).
    """
    names = list(schema)
    extra = [c for c in names if c not in MEMBER_COLUMNS and c not in _NOT_FEATURES and (schema[c].is_numeric() or schema[c] == pl.Boolean)]
    return (*(c for c in MEMBER_COLUMNS if c in names), *extra)


def macro_names(member_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The names of M's columns for these members-table columns (:data:`MACRO_NAMES` for all of :data:`MEMBER_COLUMNS`)."""
    named = {
        "connections": ("log1p_connections",),
        "tenure_days": ("log1p_tenure_days",),
        "client": tuple(f"main_client_{c}" for c in CLIENTS),
    }
    # Today's order of M: the log counts, seniority and premium, the client one-hot, then any other column.
    order = ("connections", "tenure_days", "seniority", "is_premium", "client")
    known = [n for c in order if c in member_columns for n in named.get(c, (c,))]
    return (*known, *(c for c in member_columns if c not in order), *_ACTIVITY_NAMES)


def macro_features(
    kept: pl.DataFrame, hk: pl.DataFrame, counts: np.ndarray, w: WindowConfig, member_columns: tuple[str, ...] = MEMBER_COLUMNS
) -> np.ndarray:
    """Macroscopic features M, float32, shape (N, len(macro_names(member_columns))), in that order.

    ``kept`` holds the member attributes named in ``member_columns`` and the
    history counts (``n_h``, ``a_h``, ``n_h7``, ``a_h7``); ``hk`` the kept
    members' history sessions (``row``, ``sidx``, ``duration_s``, seconds);
    ``counts`` as for :func:`sequence_inputs`.  Counts enter as log1p,
    ``client`` one-hot, any other column as its value.
    """
    n = kept.height
    rows = hk["row"].to_numpy()
    n_ev = np.bincount(rows, weights=counts[hk["sidx"].to_numpy()].sum(axis=1), minlength=n)
    dur = np.bincount(rows, weights=np.log1p(np.maximum(hk["duration_s"].to_numpy(), 0.0) / 60.0), minlength=n)
    n_h = kept["n_h"].to_numpy().astype(np.float64)
    recent = min(RECENT_DAYS, w.history_days)
    member: list[np.ndarray] = []
    for c in ("connections", "tenure_days", "seniority", "is_premium", "client"):
        if c not in member_columns:
            continue
        if c in ("connections", "tenure_days"):
            member.append(np.log1p(np.maximum(kept[c].to_numpy(), 0)))
        elif c == "client":
            client = kept["client"].to_numpy()
            member.extend((client == v).astype(np.float64) for v in CLIENTS)
        else:
            member.append(kept[c].to_numpy().astype(np.float64))
    member.extend(kept[c].cast(pl.Float64).to_numpy() for c in member_columns if c not in MEMBER_COLUMNS)
    cols = [
        *member,
        n_h / w.history_days,
        kept["a_h"].to_numpy() / w.history_days,
        kept["n_h7"].to_numpy() / recent,
        kept["a_h7"].to_numpy() / recent,
        np.log1p(n_ev / n_h),
        dur / n_h,
    ]
    return np.column_stack(cols).astype(np.float32)


def delivery_features(deliveries: pl.LazyFrame, kept: pl.DataFrame, start: dt.datetime, w: WindowConfig) -> np.ndarray:
    """Latest delivery D in the history window, float32, shape (N, len(DELIVERY_NAMES)).

    ``deliveries`` has ``member_id``, ``ts``, ``channel`` and ``content``;
    ``start`` is the UTC start of history day 0.  Members without a delivery
    in the window get a row of zeros.
    """
    end = start + dt.timedelta(days=w.history_days)
    dl = (
        deliveries.filter((pl.col("ts") >= pl.lit(start)) & (pl.col("ts") < pl.lit(end)))
        .join(kept.select("member_id", "row").lazy(), on="member_id", how="inner")
        .sort("row", "ts")
        .group_by("row")
        .agg(pl.col("ts", "channel", "content").last(), n=pl.len())
        .collect()
    )
    return delivery_matrix(dl, kept.height, end)


def delivery_matrix(latest: pl.DataFrame, n_members: int, end: dt.datetime) -> np.ndarray:
    """D, float32, shape (n_members, len(DELIVERY_NAMES)), from each member's latest delivery.

    ``latest`` has ``row`` (the member's row), ``ts``, ``channel``, ``content``
    and ``n`` (deliveries in the window); ``end`` is the end of the history
    window.  Rows absent from ``latest`` stay zero.
    """
    out = np.zeros((n_members, len(DELIVERY_NAMES)), dtype=np.float32)
    if latest.height == 0:
        return out
    dl = latest
    r = dl["row"].to_numpy()
    hours = dl.select(h=(pl.lit(end).cast(dl.schema["ts"]) - pl.col("ts")).dt.total_seconds())["h"].to_numpy() / 3600.0
    channel, content = dl["channel"].to_numpy(), dl["content"].to_numpy()
    cols = [
        np.ones(r.size),
        *((channel == c).astype(np.float64) for c in CHANNELS),
        *((content == c).astype(np.float64) for c in CONTENTS),
        np.log1p(np.maximum(hours, 0.0)),
        np.log1p(dl["n"].to_numpy()),
    ]
    out[r] = np.column_stack(cols)
    return out
