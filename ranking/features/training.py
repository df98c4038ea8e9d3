"""The batch path: features and labels of every impression of a log (the training frame).

Over an impressions log, daily counts per key are cumulated and joined
backwards (``join_asof``, strictly earlier day) onto each impression: one
pass, no per-day recomputation.  The raw counts are those of
:mod:`ranking.features.online` (the simulator's online features equal them
on its own logs), and the same polars evaluator derives the features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import polars as pl

from dwellrank_logs.checks import check_number
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.protocol import any_action_expr, not_skipped_expr, skip_label_expr
from dwellrank_logs.schema import ACTION_COLUMN, ACTIONS, VIRAL_COLUMNS
from ranking.features.catalogue import _RAW, FeatureSet, get_feature_set, member_profiles
from ranking.features.evaluate import _derive
from ranking.features.validate import _check_profiles

__all__ = ["training_frame"]


def _cumulative_before(rows: pl.LazyFrame, events: pl.LazyFrame, keys: tuple[str, ...], sums: dict[str, pl.Expr]) -> pl.LazyFrame:
    """Attach, to every row, sums over events of the same key on strictly earlier days.

    ``events`` has ``day`` (Int32) and ``keys``; daily sums are cumulated per
    key and joined backwards on ``day`` with exact matches excluded.
    """
    daily = (
        events.group_by(*keys, "day")
        .agg(*[e.alias(n) for n, e in sums.items()])
        .sort(*keys, "day")
        .with_columns(pl.col(list(sums)).cum_sum().over(list(keys)))
        .sort("day")
    )
    return rows.sort("day").join_asof(
        daily, on="day", by=list(keys), strategy="backward", allow_exact_matches=False, check_sortedness=False
    )


#: The columns of the joined impressions the history counts read.
_EVENT_COLUMNS: tuple[str, ...] = (
    "day",
    "member_id",
    "update_id",
    "update_type",
    "author_id",
    "topic",
    ACTION_COLUMN["click"],
    "_action",
    "_viral",
    "_ns",
)


def _joined_impressions(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, how: Literal["left", "inner"] = "left"
) -> pl.LazyFrame:
    """Impressions numbered in log order (``_row``) with their request, update and count indicators.

    ``how="inner"`` keeps only the impressions of the given sessions (a chunk of days).
    """
    return (
        tables["impressions"]
        .lazy()
        # Numbered before any join: polars' left joins do not promise to keep row order, and ties in
        # (day, ts) are broken by this log order so the output is the same on every machine.
        .with_row_index("_row")
        .join(
            tables["sessions"].lazy().select("session_id", pl.col("start_ts").alias("request_ts"), "client"),
            on="session_id",
            how=how,
            maintain_order="left",
        )
        .join(
            tables["updates"].lazy().select("update_id", "author_id", pl.col("topic").cast(pl.Int64), "created_ts"),
            on="update_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.col("request_ts").dt.epoch("d").cast(pl.Int32).alias("day"),
            any_action_expr().cast(pl.UInt32).alias("_action"),
            any_action_expr(VIRAL_COLUMNS).cast(pl.UInt32).alias("_viral"),
            not_skipped_expr(t_skip_s).cast(pl.UInt32).alias("_ns"),
        )
    )


def _raw_sums() -> dict[str, dict[str, pl.Expr]]:
    """The raw count columns of each history table as aggregations of the joined impressions (``_RAW``'s names)."""
    n = pl.len().cast(pl.Float64)
    return {
        "updates": {
            "u_imp": n,
            "u_clk": pl.col(ACTION_COLUMN["click"]).cast(pl.Float64).sum(),
            "u_vir": pl.sum("_viral"),
            "u_ns": pl.sum("_ns"),
        },
        "member_types": {"mt_imp": n, "mt_ns": pl.sum("_ns"), "mt_act": pl.sum("_action")},
        "member_authors": {"ma_imp": n, "ma_act": pl.sum("_action")},
        "member_topics": {"mp_imp": n, "mp_ns": pl.sum("_ns"), "mp_act": pl.sum("_action")},
        "members": {"m_imp": n, "m_ns": pl.sum("_ns"), "m_act": pl.sum("_action")},
    }


def _label_exprs(t_skip_s: float, t_long_s: float) -> list[pl.Expr]:
    """The key, label and target columns of the training frame, from the joined impressions."""
    return [
        pl.col("session_id").alias("request_id"),
        pl.col("member_id"),
        pl.col("update_id"),
        pl.col("ts"),
        pl.col("day"),
        *[pl.col(ACTION_COLUMN[a]).alias(a) for a in ACTIONS],
        skip_label_expr(t_skip_s).alias("skip"),
        (pl.col("dwell_s") > t_long_s).alias("long_dwell"),
        pl.col("dwell_s").cast(pl.Float64).alias("dwell"),
        (pl.col("downstream_clicks") + pl.col("downstream_virals")).cast(pl.Float64).alias("downstream"),
        pl.col("upstream_value").cast(pl.Float64).alias("upstream"),
    ]


def _check_inputs(tables: Mapping[str, pl.DataFrame | pl.LazyFrame], t_skip_s: float, t_long_s: float) -> None:
    """The thresholds and the four tables every training-frame builder needs."""
    for name, v in (("t_skip_s", t_skip_s), ("t_long_s", t_long_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SchemaError(f"{name} must be a finite number > 0 seconds, got {v!r}")
    check_number("t_skip_s", t_skip_s)  # the skip label's threshold refuses bools too (ConfigError)
    for name in ("impressions", "sessions", "updates", "members"):
        if name not in tables:
            raise SchemaError(f"training needs the {name} table; got tables {', '.join(tables) or 'none'}")


def training_frame(
    tables: Mapping[str, pl.DataFrame | pl.LazyFrame],
    feature_set: str | FeatureSet,
    t_skip_s: float,
    t_long_s: float = 10.0,
) -> pl.DataFrame:
    """Features and labels for every impression of a log (the batch path).

    Parameters
    ----------
    tables : mapping of table name to frame
        ``impressions``, ``sessions``, ``updates`` and ``members`` in the
        documented schema (validated frames, e.g. from :func:`dwellrank_logs.io.scan_logs`).
    feature_set : str or FeatureSet
    t_skip_s : float, seconds
        Threshold of the not-skipped counts and of the ``skip`` label.
    t_long_s : float, seconds
        Threshold of the ``long_dwell`` label (dwell_s > t_long_s).

    Returns
    -------
    polars.DataFrame, one row per impression, sorted by (day, ts)
        ``session_id`` (= request_id), ``member_id``, ``update_id``, ``ts``,
        ``day`` (days since 1970-01-01 of the request), the feature columns
        (Float64, position as logged), the labels ``click``, ``react``,
        ``comment``, ``share``, ``skip``, ``long_dwell`` (Boolean) and the
        regression targets ``downstream`` (downstream clicks + virals),
        ``upstream`` (value, >= 0) and ``dwell`` (on-feed dwell, seconds).
    """
    fs = get_feature_set(feature_set)
    _check_inputs(tables, t_skip_s, t_long_s)
    imp = _joined_impressions(tables, t_skip_s)
    events = imp.select(*_EVENT_COLUMNS)
    sums = _raw_sums()
    rows = imp
    for name, (keys, _) in _RAW.items():
        rows = _cumulative_before(rows, events, keys, sums[name])
    rows = rows.join(member_profiles(tables["members"]).lazy(), on="member_id", how="left").sort("_row")
    frame = rows.collect()
    _check_profiles(frame, "impressions")
    feats = _derive(frame, fs).collect()
    labels = frame.select(*_label_exprs(t_skip_s, t_long_s))
    return pl.concat([labels, feats], how="horizontal").sort("day", "ts", maintain_order=True)
