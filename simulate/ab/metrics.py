"""The A/B metrics: per-member ratios of the aggregates of :mod:`simulate.ab.aggregates`."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["METRICS", "Metric", "member_metrics"]


@dataclass(frozen=True)
class Metric:
    """A per-member metric: ``numerator / denominator`` of per-member aggregates.

    ``denominator`` None: the numerator itself; ``'days'``: per member-day
    over the period.  Members with a zero data-dependent denominator (no
    impressions, no sessions) have no value and are left out of its test.

    Attributes
    ----------
    name : str
    numerator : str
        A column of :func:`simulate.ab.member_aggregates`.
    denominator : str, optional
        A column of :func:`simulate.ab.member_aggregates`, ``'days'`` or None.
    description : str
    better : {'higher', 'lower'}
        The direction in which the metric improves.
    """

    name: str
    numerator: str
    denominator: str | None
    description: str
    better: str


METRICS: tuple[Metric, ...] = (
    Metric("skip_rate", "n_skipped", "n_impressions", "skipped impressions (dwell < T_skip, no action) / impressions", "lower"),
    Metric("click_rate", "n_clicked", "n_impressions", "impressions with a click / impressions", "higher"),
    Metric("viral_rate", "n_viral_impressions", "n_impressions", "impressions with a react, comment or share / impressions", "higher"),
    Metric("clicks_per_day", "n_clicked", "days", "clicks per member-day", "higher"),
    Metric("virals_per_day", "n_virals", "days", "viral actions (reacts + comments + shares) per member-day", "higher"),
    Metric("dwell_per_session_s", "feed_dwell_s", "n_sessions", "on-feed dwell per session, seconds", "higher"),
    Metric("sessions_per_day", "n_sessions", "days", "sessions per member-day", "higher"),
    Metric("active_days", "active_days", None, "days with at least one session", "higher"),
    Metric(
        "downstream_virals_per_day",
        "downstream_virals",
        "days",
        "viral actions by the network on the member's actions, per member-day",
        "higher",
    ),
    Metric("time_spent_s_per_day", "time_spent_s", "days", "raw time spent: dwell + click-through time, seconds per member-day", "higher"),
    Metric(
        "time_well_spent_s_per_day",
        "time_well_spent_s",
        "days",
        "time well spent: dwell + click-through on not-skipped updates, seconds per member-day",
        "higher",
    ),
)


def member_metrics(aggregates: pl.DataFrame, n_days: int, metrics: tuple[Metric, ...] = METRICS) -> pl.DataFrame:
    """Per-member metric values from :func:`simulate.ab.member_aggregates` over ``n_days`` days.

    Ratio metrics are null where their denominator is 0.

    Returns
    -------
    DataFrame
        member_id and one Float64 column per metric, named as the metric.
    """
    cols = []
    for m in metrics:
        num = pl.col(m.numerator).cast(pl.Float64)
        if m.denominator is None:
            expr = num
        elif m.denominator == "days":
            expr = num / float(n_days)
        else:
            den = pl.col(m.denominator).cast(pl.Float64)
            expr = pl.when(den > 0).then(num / den).otherwise(None)
        cols.append(expr.alias(m.name))
    return aggregates.select("member_id", *cols)
