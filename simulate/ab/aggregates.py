"""The A/B's reduction of the log tables: per-member sums and per-arm daily trajectories.

Impressions count towards the simulation day their session started
(:meth:`simulate.config.WorldConfig.day_index` of ``start_ts``).  Sums are taken
in numpy (``bincount`` adds in row order): polars' parallel float sums can differ
in the last bits from run to run, and the same seed must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dwellrank_logs.protocol import skip_label_expr
from dwellrank_logs.schema import VIRAL_COLUMNS
from simulate.config import WorldConfig

__all__ = ["daily_trajectories", "member_aggregates"]


def member_aggregates(tables: dict[str, pl.DataFrame], config: WorldConfig, t_skip_s: float, first_day: int, last_day: int) -> pl.DataFrame:
    """Per-member sums over simulated days ``first_day .. last_day - 1``.

    Parameters
    ----------
    tables : dict of DataFrame
        Log tables of one simulation (``members``, ``sessions``, ``impressions``).
    config : WorldConfig
        The simulated world (for the start date).
    t_skip_s : float, seconds
        An impression is skipped when dwell < t_skip_s and it has no click or viral action.
    first_day, last_day : int
        Half-open range of 0-based simulation days.

    Returns
    -------
    DataFrame
        One row per member (all members, zeros where nothing happened):
        member_id, n_impressions, n_skipped, n_clicked, n_viral_impressions,
        n_virals, feed_dwell_s, downstream_virals, time_spent_s,
        time_well_spent_s, n_sessions, active_days.
    """
    ids = np.sort(tables["members"]["member_id"].to_numpy())
    n = ids.size
    sess = _session_days(tables, config)
    s_keep = (sess["day"] >= first_day) & (sess["day"] < last_day)
    s_member = np.searchsorted(ids, sess["member_id"][s_keep])
    s_day = sess["day"][s_keep]
    imp = _impression_arrays(tables, sess, t_skip_s)
    keep = (imp["day"] >= first_day) & (imp["day"] < last_day)
    m = np.searchsorted(ids, imp["member_id"][keep])

    def total(w: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(m, weights=None if w is None else w[keep], minlength=n)

    active_member, _ = _active_pairs(s_member, s_day)
    out = {
        "n_impressions": total(),
        "n_skipped": total(imp["skipped"]),
        "n_clicked": total(imp["clicked"]),
        "n_viral_impressions": total(imp["viral"]),
        "n_virals": total(imp["n_virals"]),
        "feed_dwell_s": total(imp["dwell_s"]),
        "downstream_virals": total(imp["downstream_virals"]),
        "time_spent_s": total(imp["time_s"]),
        "time_well_spent_s": total(imp["time_s"] * ~imp["skipped"]),
        "n_sessions": np.bincount(s_member, minlength=n),
        "active_days": np.bincount(active_member, minlength=n),
    }
    return pl.DataFrame({"member_id": ids, **{k: v if k.endswith("_s") else np.rint(v).astype(np.int64) for k, v in out.items()}})


def daily_trajectories(tables: dict[str, pl.DataFrame], config: WorldConfig, t_skip_s: float) -> pl.DataFrame:
    """Per arm and simulated day: active share, sessions, skip and click rates, time well spent.

    Returns
    -------
    DataFrame
        arm, day, members, active_share, sessions_per_member, skip_rate,
        click_rate, time_well_spent_s_per_member (rates null on days without impressions).
    """
    members = tables["members"].sort("member_id")
    ids = members["member_id"].to_numpy()
    arm_names = sorted(set(members["arm"].drop_nulls().to_list()))
    arm_of = np.searchsorted(np.array(arm_names), members["arm"].fill_null("").to_numpy())  # (N,) arm index
    n_arms, n_days = len(arm_names), config.n_days
    size = np.bincount(arm_of, minlength=n_arms).astype(float)
    sess = _session_days(tables, config)
    s_member = np.searchsorted(ids, sess["member_id"])
    s_key = arm_of[s_member] * n_days + sess["day"]
    sessions = np.bincount(s_key, minlength=n_arms * n_days)
    a_member, a_day = _active_pairs(s_member, sess["day"])
    active = np.bincount(arm_of[a_member] * n_days + a_day, minlength=n_arms * n_days)
    imp = _impression_arrays(tables, sess, t_skip_s)
    ok = imp["day"] >= 0
    key = arm_of[np.searchsorted(ids, imp["member_id"][ok])] * n_days + imp["day"][ok]

    def total(w: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(key, weights=None if w is None else w[ok], minlength=n_arms * n_days)

    n_imp = total()
    with np.errstate(invalid="ignore", divide="ignore"):
        skip_rate = np.where(n_imp > 0, total(imp["skipped"]) / n_imp, np.nan)
        click_rate = np.where(n_imp > 0, total(imp["clicked"]) / n_imp, np.nan)
    per_member = np.repeat(size, n_days)
    return pl.DataFrame(
        {
            "arm": np.repeat(arm_names, n_days),
            "day": np.tile(np.arange(n_days, dtype=np.int32), n_arms),
            "members": per_member.astype(np.int64),
            "active_share": active / per_member,
            "sessions_per_member": sessions / per_member,
            "skip_rate": skip_rate,
            "click_rate": click_rate,
            "time_well_spent_s_per_member": total(imp["time_s"] * ~imp["skipped"]) / per_member,
        }
    ).with_columns(pl.col("skip_rate", "click_rate").fill_nan(None))


def _active_pairs(member: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (member, day) pairs, as two integer arrays sorted by member, then day."""
    if member.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo = int(day.min())
    span = int(day.max()) - lo + 1
    key = np.unique(member.astype(np.int64) * span + (day - lo))  # one integer key: far faster than unique(axis=1)
    return key // span, key % span + lo


def _session_days(tables: dict[str, pl.DataFrame], config: WorldConfig) -> dict[str, np.ndarray]:
    """member_id, session_id and simulation day (from the session start) of every session."""
    sess = tables["sessions"].select("member_id", "session_id", config.day_index("start_ts").alias("day"))
    return {c: sess[c].to_numpy() for c in sess.columns}


def _impression_arrays(tables: dict[str, pl.DataFrame], sess_days: dict[str, np.ndarray], t_skip_s: float) -> dict[str, np.ndarray]:
    """Per impression (log order): member, its session's day (from :func:`_session_days`, -1 if none),
    skip/click/viral flags, dwell and time spent.
    """
    sess = pl.DataFrame({"session_id": sess_days["session_id"], "day": sess_days["day"]})
    viral_any = pl.any_horizontal(*VIRAL_COLUMNS)
    imp = (
        tables["impressions"]
        .join(sess, on="session_id", how="left", maintain_order="left")
        .select(
            "member_id",
            pl.col("day").fill_null(-1),
            skip_label_expr(t_skip_s).alias("skipped"),
            "clicked",
            viral_any.alias("viral"),
            pl.sum_horizontal(*[pl.col(c).cast(pl.Int64) for c in VIRAL_COLUMNS]).alias("n_virals"),
            "dwell_s",
            pl.col("downstream_virals").cast(pl.Int64),
            (pl.col("dwell_s") + pl.col("click_dwell_s").fill_null(0.0)).alias("time_s"),
        )
    )
    return {c: imp[c].to_numpy() for c in imp.columns}
