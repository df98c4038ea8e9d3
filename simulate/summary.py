"""The summary of a run: rows per table, skip and action rates, sessions per member-day.

Two ways to the same numbers: :func:`summarize` reads a result's tables;
the day loop counts each day as it finishes (:func:`count_day`) and
:func:`summary_of_days` adds the counts up, so a run whose tables went to a
sink has a complete summary too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from dwellrank_logs.protocol import not_skipped, skip_label_expr
from dwellrank_logs.schema import ACTION_COLUMNS, TABLE_NAMES
from simulate.config import WorldConfig
from simulate.result import DAILY_TABLES, SimulationResult, require_tables

__all__ = ["DayCounts", "count_day", "summarize", "summary_of_days"]

#: Impressions counted per day for the summary, and the summary's name for their share.
_COUNTED = {"skipped": "skip_rate", "clicked": "click_rate", "reacted": "react_rate", "commented": "comment_rate", "shared": "share_rate"}


@dataclass(frozen=True)
class DayCounts:
    """What the summary needs of one finished day.

    Attributes
    ----------
    rows : dict of str to int
        Rows of each daily table (:data:`~simulate.result.DAILY_TABLES`).
    counts : dict of str to int
        Skipped, clicked, reacted, commented and shared impressions.
    dwell_s : ndarray of float, shape (n_impressions,)
        Dwell of each impression, seconds (for the median).
    """

    rows: dict[str, int]
    counts: dict[str, int]
    dwell_s: np.ndarray


def count_day(t_skip_s: float, imp: dict[str, np.ndarray], tables: dict[str, pl.DataFrame]) -> DayCounts:
    """Count one day's impressions (the arrays of :func:`simulate.impressions.view_feeds`) and table rows."""
    action = imp["clicked"] | imp["reacted"] | imp["commented"] | imp["shared"]
    counts = {
        "skipped": int(np.count_nonzero(~not_skipped(imp["dwell_s"], action, t_skip_s))),
        **{c: int(np.count_nonzero(imp[c])) for c in ACTION_COLUMNS},
    }
    return DayCounts(rows={name: tables[name].height for name in DAILY_TABLES}, counts=counts, dwell_s=imp["dwell_s"])


def summary_of_days(cfg: WorldConfig, seed: int, rows: dict[str, int], days: list[DayCounts]) -> dict[str, Any]:
    """:func:`summarize` from the per-day counts (the tables may be gone).

    ``rows`` holds the rows of the tables that are not daily (members, updates).
    """
    rows = {**rows, **{name: sum(d.rows[name] for d in days) for name in DAILY_TABLES}}
    n_imp = rows["impressions"]
    rates: dict[str, Any] = {}
    if n_imp:
        total = {c: sum(d.counts[c] for d in days) for c in _COUNTED}
        rates = {rate: total[c] / n_imp for c, rate in _COUNTED.items()}
        rates["median_dwell_s"] = pl.Series(np.concatenate([d.dwell_s for d in days])).median()
    return _summary_dict(cfg, seed, {name: rows[name] for name in TABLE_NAMES}, rates)


def summarize(result: SimulationResult) -> dict[str, Any]:
    """Rows per table, skip and action rates, sessions per member-day.

    Raises
    ------
    ConfigError
        ``result`` was produced with ``keep_tables=False`` (its summary is ``result.summary``).
    """
    require_tables(result, "summarize")
    t = result.tables
    cfg = result.config
    imp = t["impressions"]
    rates = (
        imp.select(
            skip_rate=skip_label_expr(cfg.t_skip_s).mean(),
            click_rate=pl.col("clicked").mean(),
            react_rate=pl.col("reacted").mean(),
            comment_rate=pl.col("commented").mean(),
            share_rate=pl.col("shared").mean(),
        ).row(0, named=True)
        if imp.height
        else {}
    )
    if imp.height:
        # One contiguous column first: polars' median over a table's per-day chunks is 7x slower.
        rates["median_dwell_s"] = imp["dwell_s"].rechunk().median()
    return _summary_dict(cfg, result.seed, {name: df.height for name, df in t.items()}, rates)


def _summary_dict(cfg: WorldConfig, seed: int, rows: dict[str, int], rates: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": seed,
        "members": cfg.n_members,
        "days": cfg.n_days,
        "rows": rows,
        **{k: (None if v is None else round(float(v), 6)) for k, v in rates.items()},
        "sessions_per_member_day": round(rows["sessions"] / (cfg.n_members * cfg.n_days), 6),
        "impressions_per_session": round(rows["impressions"] / max(rows["sessions"], 1), 6),
        "t_skip_s_truth": cfg.t_skip_s,
    }
