"""Table typing: the simulator's numpy arrays as polars tables of the schema (``docs/schema.md``)."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import polars as pl

from dwellrank_logs.schema import CHANNELS, CLIENTS, CONTENTS, EVENT_TYPES, TABLES, TIME_UNIT, TIME_ZONE
from simulate.config import WorldConfig
from simulate.posts import UpdatePool
from simulate.result import DAILY_TABLES
from simulate.world import Members

__all__ = ["cast_table", "day_log_tables", "labels", "log_tables", "nan_to_null", "timestamps"]

_V = TypeVar("_V", pl.Series, pl.Expr)


def nan_to_null(values: _V) -> _V:
    """``values`` with NaN as null: the schema's missing value (no click-through, no propensity) is null."""
    return values.fill_nan(None)


def labels(categories: tuple[str, ...], codes: np.ndarray | pl.Series) -> pl.Series:
    """Strings for integer codes, gathered in polars (numpy unicode arrays are slow)."""
    return pl.Series(list(categories), dtype=pl.String).gather(
        codes.cast(pl.Int64) if isinstance(codes, pl.Series) else codes.astype(np.int64)
    )


def timestamps(us: np.ndarray | pl.Series) -> pl.Series:
    """Microseconds since the Unix epoch as the schema's timestamps (UTC)."""
    s = us if isinstance(us, pl.Series) else pl.Series(np.asarray(us, dtype=np.int64))
    return s.cast(pl.Int64).cast(pl.Datetime(TIME_UNIT, TIME_ZONE))


def cast_table(table: str, data: dict[str, Any]) -> pl.DataFrame:
    """``data`` as ``table``'s columns, in schema order and types.

    Column by column rather than one ``select`` of casts: a select goes through
    polars' thread pool, whose start-up cost (~0.25 ms) outweighs the casting
    on a day's small tables.
    """
    columns = []
    for c in TABLES[table].columns:
        col = data[c.name]
        col = col.alias(c.name) if isinstance(col, pl.Series) else pl.Series(c.name, col)
        columns.append(col if col.dtype == c.dtype else col.cast(c.dtype))
    return pl.DataFrame(columns)


def log_tables(
    cfg: WorldConfig,
    members: Members,
    pool: UpdatePool,
    days: list[dict[str, pl.DataFrame]],
    arm_names: list[str] | None,
    arm_idx: np.ndarray | None,
) -> dict[str, pl.DataFrame]:
    """Members and updates, and the daily log tables end to end when they were kept.

    The daily frames are concatenated without a copy, so a table keeps one
    chunk per day: a contiguous copy of every column costs 10^5 fresh memory
    pages (a fifth of a default run) and nothing downstream needs it.

    Parameters
    ----------
    days : list of dict of str to DataFrame
        Each day's tables (:func:`day_log_tables`); empty when they went to a sink and were dropped.
    arm_names : list of str, optional
        Arm names, for a run with one ranker per arm.
    arm_idx : ndarray of int, shape (n_members,), optional
        Each member's arm, an index into ``arm_names``.
    """
    n = cfg.n_members
    arm = [None] * n if arm_idx is None else np.asarray(arm_names)[arm_idx].tolist()
    out = {
        "members": cast_table(
            "members",
            {
                "member_id": np.arange(n),
                "connections": members.connections,
                "tenure_days": members.tenure_days,
                "client": labels(CLIENTS, members.client),
                "arm": pl.Series(arm, dtype=pl.String),
                "industry": members.industry,
                "seniority": members.seniority,
                "is_premium": members.is_premium,
            },
        )
    }
    u = pool.arrays()
    out["updates"] = cast_table(
        "updates",
        {
            "update_id": np.arange(u["author"].size),
            "author_id": u["author"],
            "update_type": labels(cfg.update_types, u["utype"]),
            "created_ts": timestamps(u["created_us"]),
            "topic": u["topic"],
        },
    )
    if days:
        for name in DAILY_TABLES:
            out[name] = pl.concat([d[name] for d in days], rechunk=False)
    return out


def day_log_tables(
    cfg: WorldConfig,
    imp: dict[str, np.ndarray],
    sess: dict[str, np.ndarray],
    events: dict[str, np.ndarray],
    deliveries: dict[str, np.ndarray],
) -> dict[str, pl.DataFrame]:
    """One day's rows of the four daily log tables, in schema types.

    ``imp``, ``sess``, ``events`` and ``deliveries`` are the day's arrays
    (:func:`simulate.impressions.view_feeds`, :func:`simulate.sessions.start_sessions`,
    :func:`simulate.deliveries.deliver`); they are read, never written.
    """
    return {
        "impressions": cast_table(
            "impressions",
            {
                "member_id": imp["member"],
                "update_id": imp["update"],
                "update_type": labels(cfg.update_types, imp["utype"]),
                "session_id": imp["session_id"],
                "ts": timestamps(imp["ts_us"]),
                "position": imp["position"],
                "dwell_s": imp["dwell_s"],
                "clicked": imp["clicked"],
                "reacted": imp["reacted"],
                "commented": imp["commented"],
                "shared": imp["shared"],
                "click_dwell_s": nan_to_null(pl.Series(imp["click_dwell_s"])),
                "downstream_clicks": imp["downstream_clicks"],
                "downstream_virals": imp["downstream_virals"],
                "upstream_value": imp["upstream_value"],
                "propensity": nan_to_null(pl.Series(imp["propensity"])),
            },
        ),
        "sessions": cast_table(
            "sessions",
            {
                "member_id": sess["member"],
                "session_id": sess["session_id"],
                "start_ts": timestamps(sess["start_us"]),
                "duration_s": sess["duration_s"],
                "client": labels(CLIENTS, sess["client"]),
            },
        ),
        "events": cast_table(
            "events",
            {
                "member_id": events["member"],
                "session_id": events["session_id"],
                "ts": timestamps(events["ts_us"]),
                "event_type": labels(EVENT_TYPES, events["event_type"]),
            },
        ),
        # Each day's deliveries come sorted by time and fall inside their day, so the table is sorted.
        "deliveries": cast_table(
            "deliveries",
            {
                "member_id": deliveries["member"],
                "ts": timestamps(deliveries["ts_us"]),
                "channel": labels(CHANNELS, deliveries["channel"]),
                "content": labels(CONTENTS, deliveries["content"]),
            },
        ),
    }
