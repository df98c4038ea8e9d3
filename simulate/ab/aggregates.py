"""The A/B's reduction of the log tables: per-member sums and per-arm daily trajectories.

Impressions count towards the UTC day their session started.  The reduction
is a function of the tables and of day boundaries (microseconds since the
epoch), so simulated and logged experiments share it; the simulator's
wrappers take the boundaries from :class:`simulate.config.WorldConfig`.

Sums of seconds are exact and do not depend on the order of the rows: each
value is rounded to integer nanoseconds (:func:`split_seconds`) and the
integers are added, so polars' parallel sums, numpy and Spark's partial
aggregation (:mod:`simulate.ab.logged_spark`) all get the same bits whatever
the layout of the files, and the same seed gives the same numbers.  Rounding
each impression to 1 ns changes a member's sum by at most 0.5 ns per
impression, far below anything a dwell clock measures.  Only values that are
not finite or beyond :data:`FIXED_LIMIT_S` (11.6 days, no dwell time) are
added as floats, apart, so a NaN still makes its sum NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from dwellrank_logs.protocol import skip_label_expr
from dwellrank_logs.schema import VIRAL_COLUMNS
from simulate.config import DAY_US, WorldConfig

__all__ = [
    "AGGREGATES",
    "FIXED_LIMIT_S",
    "NS_PER_S",
    "arm_daily",
    "daily_frame",
    "daily_trajectories",
    "impression_terms",
    "member_aggregates",
    "seconds_from_parts",
    "split_seconds",
    "window_aggregates",
]

Frame = pl.DataFrame | pl.LazyFrame

#: Per-member aggregate columns, in order; those ending in ``_s`` are float seconds, the others counts.
AGGREGATES = (
    "n_impressions",
    "n_skipped",
    "n_clicked",
    "n_viral_impressions",
    "n_virals",
    "feed_dwell_s",
    "downstream_virals",
    "time_spent_s",
    "time_well_spent_s",
    "n_sessions",
    "active_days",
)

#: Seconds are summed as integer nanoseconds.
NS_PER_S = 1_000_000_000
#: Values with a magnitude below this many seconds (11.6 days) are summed exactly as nanoseconds:
#: 1e6 s is 1e15 ns, within the 2**53 integers a double holds exactly, so the rounding is the same everywhere.
FIXED_LIMIT_S = 1e6


def split_seconds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds as (integer nanoseconds, float remainder): exact to add in any order.

    ``floor(x * 1e9 + 0.5)`` in IEEE double arithmetic, as Spark computes it on
    its columns; values not finite or with ``|x| >= FIXED_LIMIT_S`` give 0 ns
    and are the remainder instead (0.0 elsewhere).
    """
    x = np.asarray(x, dtype=np.float64)
    fixed = np.abs(x) < FIXED_LIMIT_S  # False for NaN
    ns = np.floor(np.where(fixed, x, 0.0) * float(NS_PER_S) + 0.5).astype(np.int64)
    return ns, np.where(fixed, 0.0, x)


def seconds_from_parts(ns: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Summed seconds from the summed parts of :func:`split_seconds` (both engines finish here, in numpy)."""
    return np.asarray(ns, dtype=np.int64).astype(np.float64) / float(NS_PER_S) + np.asarray(rest, dtype=np.float64)


def _exact_sum(key: np.ndarray, parts: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    """Per key, the sum of seconds split by :func:`split_seconds`: nanoseconds added exactly, the rare remainder as floats."""
    ns, rest = parts
    total = np.zeros(size, dtype=np.int64)
    np.add.at(total, key, ns)
    return seconds_from_parts(total, np.bincount(key, weights=rest, minlength=size))


def member_aggregates(tables: Mapping[str, Frame], config: WorldConfig, t_skip_s: float, first_day: int, last_day: int) -> pl.DataFrame:
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
        One row per member: see :func:`window_aggregates`.
    """
    window = (config.start_us + first_day * DAY_US, config.start_us + last_day * DAY_US)
    return window_aggregates(tables, t_skip_s, [window])[0]


def window_aggregates(
    tables: Mapping[str, Frame], t_skip_s: float, windows: Sequence[tuple[int, int]], member_ids: np.ndarray | None = None
) -> list[pl.DataFrame]:
    """Per-member sums over each window of session start times.

    Parameters
    ----------
    tables : mapping of str to DataFrame or LazyFrame
        ``sessions`` and ``impressions`` (and ``members`` unless ``member_ids`` is given),
        with canonical types (:func:`dwellrank_logs.io.scan_table` casts them).
    t_skip_s : float, seconds
        An impression is skipped when dwell < t_skip_s and it has no click or viral action.
    windows : sequence of (int, int)
        Half-open ranges ``[start, end)`` of session start times, microseconds since
        the epoch; ``start`` is the UTC midnight from which active days are counted.
    member_ids : ndarray of int, optional
        The members to aggregate (default: every member of ``tables['members']``);
        sessions and impressions of other members are left out.

    Returns
    -------
    list of DataFrame
        One per window, one row per member sorted by member_id (zeros where nothing
        happened): member_id, then :data:`AGGREGATES` (counts Int64, ``*_s`` Float64).
    """
    if member_ids is None:
        member_ids = tables["members"].lazy().select("member_id").collect()["member_id"].to_numpy()
    ids = np.sort(np.asarray(member_ids, dtype=np.int64))
    n = ids.size
    sess = _sessions(tables)
    s_in = np.isin(sess["member_id"], ids)
    imp = (
        impression_terms(tables["impressions"], tables["sessions"], t_skip_s)
        .join(pl.LazyFrame({"member_id": ids}), on="member_id", how="semi")
        .collect()
    )
    arr = {c: imp[c].to_numpy() for c in imp.columns}
    split = {c: split_seconds(arr[c]) for c in ("dwell_s", "time_s", "well_s")}  # once, for every window
    out = []
    for lo, hi in windows:
        s_keep = s_in & (sess["start_us"] >= lo) & (sess["start_us"] < hi)
        s_member = np.searchsorted(ids, sess["member_id"][s_keep])
        s_day = (sess["start_us"][s_keep] - lo) // DAY_US
        keep = (arr["start_us"] >= lo) & (arr["start_us"] < hi)
        m = np.searchsorted(ids, arr["member_id"][keep])

        def total(w: np.ndarray | None = None, keep: np.ndarray = keep, m: np.ndarray = m) -> np.ndarray:
            return np.bincount(m, weights=None if w is None else w[keep], minlength=n)

        def seconds(c: str, keep: np.ndarray = keep, m: np.ndarray = m) -> np.ndarray:
            ns, rest = split[c]
            return _exact_sum(m, (ns[keep], rest[keep]), n)

        active_member, _ = _active_pairs(s_member, s_day)
        sums = {
            "n_impressions": total(),
            "n_skipped": total(arr["skipped"]),
            "n_clicked": total(arr["clicked"]),
            "n_viral_impressions": total(arr["viral"]),
            "n_virals": total(arr["n_virals"]),
            "feed_dwell_s": seconds("dwell_s"),
            "downstream_virals": total(arr["downstream_virals"]),
            "time_spent_s": seconds("time_s"),
            "time_well_spent_s": seconds("well_s"),
            "n_sessions": np.bincount(s_member, minlength=n),
            "active_days": np.bincount(active_member, minlength=n),
        }
        out.append(pl.DataFrame({"member_id": ids, **{k: v if k.endswith("_s") else np.rint(v).astype(np.int64) for k, v in sums.items()}}))
    return out


def impression_terms(impressions: Frame, sessions: Frame, t_skip_s: float) -> pl.LazyFrame:
    """Per impression with a known session: what the per-member sums add.

    Columns: member_id, start_us (its session's start, microseconds),
    skipped, clicked, viral (Boolean), n_virals,
    downstream_virals (Int64), dwell_s, time_s (dwell + click-through dwell) and
    well_s (time_s where not skipped, else 0) in seconds.  Log order.
    """
    sess = sessions.lazy().select("session_id", pl.col("start_ts").dt.epoch("us").alias("start_us"))
    skipped = skip_label_expr(t_skip_s)
    time_s = pl.col("dwell_s") + pl.col("click_dwell_s").fill_null(0.0)
    return (
        impressions.lazy()
        .join(sess, on="session_id", how="inner", maintain_order="left")
        .select(
            "member_id",
            "start_us",
            skipped.alias("skipped"),
            "clicked",
            pl.any_horizontal(*VIRAL_COLUMNS).alias("viral"),
            pl.sum_horizontal(*[pl.col(c).cast(pl.Int64) for c in VIRAL_COLUMNS]).alias("n_virals"),
            pl.col("downstream_virals").cast(pl.Int64),
            "dwell_s",
            time_s.alias("time_s"),
            # A multiplication, not a choice: 0 * NaN stays NaN, as the sum of a NaN dwell must.
            (time_s * (~skipped).cast(pl.Float64)).alias("well_s"),
        )
    )


def daily_trajectories(tables: Mapping[str, Frame], config: WorldConfig, t_skip_s: float) -> pl.DataFrame:
    """Per arm and simulated day: :func:`arm_daily` from the world's start over its days."""
    return arm_daily(tables, t_skip_s, config.start_us, config.n_days)


def arm_daily(tables: Mapping[str, Frame], t_skip_s: float, start_us: int, n_days: int) -> pl.DataFrame:
    """Per arm and day: active share, sessions, skip and click rates, time well spent.

    Members whose arm is null are left out, with their sessions and impressions.

    Parameters
    ----------
    tables : mapping of str to DataFrame or LazyFrame
        ``members`` (with ``arm``), ``sessions``, ``impressions``.
    t_skip_s : float, seconds
    start_us : int
        Day 0's UTC midnight, microseconds since the epoch.
    n_days : int
        Days from ``start_us``; sessions outside them are left out.

    Returns
    -------
    DataFrame
        arm, day, members, active_share, sessions_per_member, skip_rate,
        click_rate, time_well_spent_s_per_member (rates null on days without impressions).
    """
    members = tables["members"].lazy().select("member_id", "arm").filter(pl.col("arm").is_not_null()).sort("member_id").collect()
    ids = members["member_id"].to_numpy()
    names, arm_of = np.unique(members["arm"].to_numpy(), return_inverse=True)  # sorted names; (N,) arm index
    arm_names: list[str] = names.tolist()
    n_arms = len(arm_names)
    size = np.bincount(arm_of, minlength=n_arms).astype(float)
    sess = _sessions(tables)
    sess_day = (sess["start_us"] - start_us) // DAY_US
    s_ok = np.isin(sess["member_id"], ids) & (sess_day >= 0) & (sess_day < n_days)
    s_member = np.searchsorted(ids, sess["member_id"][s_ok])
    s_day = sess_day[s_ok]
    sessions = np.bincount(arm_of[s_member] * n_days + s_day, minlength=n_arms * n_days)
    a_member, a_day = _active_pairs(s_member, s_day)
    active = np.bincount(arm_of[a_member] * n_days + a_day, minlength=n_arms * n_days)
    imp = impression_terms(tables["impressions"], tables["sessions"], t_skip_s).select(
        "member_id", "start_us", "skipped", "clicked", "well_s"
    )
    arr = {c: s.to_numpy() for c, s in imp.collect().to_dict().items()}
    day = (arr["start_us"] - start_us) // DAY_US
    ok = np.isin(arr["member_id"], ids) & (day >= 0) & (day < n_days)
    key = arm_of[np.searchsorted(ids, arr["member_id"][ok])] * n_days + day[ok]

    def total(w: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(key, weights=None if w is None else w[ok], minlength=n_arms * n_days)

    well = _exact_sum(key, split_seconds(arr["well_s"][ok]), n_arms * n_days)
    return daily_frame(arm_names, size, n_days, sessions, active, total(), total(arr["skipped"]), total(arr["clicked"]), well)


def daily_frame(
    arm_names: Sequence[str],
    size: np.ndarray,
    n_days: int,
    sessions: np.ndarray,
    active: np.ndarray,
    n_impressions: np.ndarray,
    n_skipped: np.ndarray,
    n_clicked: np.ndarray,
    time_well_spent_s: np.ndarray,
) -> pl.DataFrame:
    """The table of :func:`arm_daily` from its sums, each of shape ``(n_arms * n_days,)`` (arm-major).

    ``size`` holds the members per arm; ``sessions``, ``active`` (members with a
    session) and the impression sums are per arm and day.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        skip_rate = np.where(n_impressions > 0, n_skipped / n_impressions, np.nan)
        click_rate = np.where(n_impressions > 0, n_clicked / n_impressions, np.nan)
    per_member = np.repeat(np.asarray(size, dtype=float), n_days)
    return pl.DataFrame(
        {
            "arm": np.repeat(list(arm_names), n_days),
            "day": np.tile(np.arange(n_days, dtype=np.int32), len(arm_names)),
            "members": per_member.astype(np.int64),
            "active_share": active / per_member,
            "sessions_per_member": sessions / per_member,
            "skip_rate": skip_rate,
            "click_rate": click_rate,
            "time_well_spent_s_per_member": time_well_spent_s / per_member,
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


def _sessions(tables: Mapping[str, Frame]) -> dict[str, np.ndarray]:
    """member_id, session_id and start_us (microseconds since the epoch) of every session."""
    sess = tables["sessions"].lazy().select("member_id", "session_id", pl.col("start_ts").dt.epoch("us").alias("start_us")).collect()
    return {c: sess[c].to_numpy() for c in sess.columns}
