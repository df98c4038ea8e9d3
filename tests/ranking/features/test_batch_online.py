"""Features: batch == online on the simulator's own history, no leakage, hand-computed values, errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import SchemaError
from dwellrank_logs.protocol import validate_candidates
from dwellrank_logs.schema import ACTION_COLUMNS
from ranking.features import (
    FEATURE_SETS,
    candidate_features,
    get_feature_set,
    history_from_logs,
    member_profiles,
    training_frame,
    validate_feature_matrix,
)
from simulate import PopularityRanker, WorldConfig, simulate

DWELL = FEATURE_SETS["dwell"]
NO_POSITION = [c for c in DWELL.columns if c != "position"]


class _Recorder:
    """Wraps the popularity ranker and records the online features of every candidate."""

    def __init__(self, profiles: pl.DataFrame) -> None:
        self.profiles = profiles
        self.base = PopularityRanker()
        self.frames: list[pl.DataFrame] = []

    def rank(self, candidates, history, rng):
        feats = candidate_features(candidates, history, self.profiles, "dwell")
        self.frames.append(pl.concat([candidates.select("request_id", "update_id"), feats], how="horizontal"))
        return self.base.rank(candidates, history, rng)


@pytest.fixture(scope="module")
def recorded():
    cfg = WorldConfig(n_members=800, n_days=6)
    # The world (members included) is drawn before the first ranker call, so a 1-day run gives the same members.
    profiles = member_profiles(simulate(cfg.replace(n_days=1), seed=3).tables["members"])
    rec = _Recorder(profiles)
    result = simulate(cfg, seed=3, ranker=rec)
    return result, pl.concat(rec.frames)


def test_batch_features_equal_the_simulators_online_features(recorded):
    """Reference: features computed *inside* the simulator from its incrementally updated
    HistoryState (simulate.state), for every candidate it served; batch features from the
    logs it wrote must match them exactly for every impression."""
    result, online = recorded
    batch = training_frame(result.tables, "dwell", 2.5)
    joined = batch.select("request_id", "update_id", *NO_POSITION).join(online, on=["request_id", "update_id"], suffix="_online")
    assert joined.height == batch.height == result.tables["impressions"].height
    for c in NO_POSITION:
        np.testing.assert_array_equal(joined[c].to_numpy(), joined[f"{c}_online"].to_numpy(), err_msg=c)
    # The history is not trivially empty: later days carry counts.
    assert batch.filter(pl.col("day") == batch["day"].max())["u_impressions"].mean() > 1


def test_batch_features_equal_history_from_logs(recorded):
    """The logs-side online path (history_from_logs + candidate_features, used by `rank --logs`)
    gives the batch values for the impressions of one day."""
    result, _ = recorded
    t = result.tables
    batch = training_frame(t, "dwell", 2.5)
    day = dt.date(2026, 1, 9)
    rows = (
        t["impressions"]
        .join(t["sessions"].select("session_id", pl.col("start_ts").alias("request_ts"), "client"), on="session_id")
        .join(t["updates"].select("update_id", "author_id", "topic", "created_ts"), on="update_id")
        .filter(pl.col("request_ts").dt.date() == day)
        .rename({"session_id": "request_id"})
    )
    hist = history_from_logs(t["impressions"], t["sessions"], t["updates"], day, 2.5)
    online = candidate_features(rows, hist, member_profiles(t["members"]), "dwell", position=None)
    ref = rows.select("request_id", "update_id", "ts").join(batch, on=["request_id", "update_id", "ts"], how="left")
    for c in DWELL.columns:
        np.testing.assert_array_equal(online[c].to_numpy(), ref[c].to_numpy(), err_msg=c)


def test_no_leakage_from_the_same_or_later_days(recorded):
    """Rewriting every outcome from day d on must not change any feature of days <= d."""
    result, _ = recorded
    t = dict(result.tables)
    cut = dt.datetime(2026, 1, 8, tzinfo=dt.timezone.utc)
    late = pl.col("session_id").is_in(t["sessions"].filter(pl.col("start_ts") >= cut)["session_id"].implode())
    t2 = dict(t)
    t2["impressions"] = t["impressions"].with_columns(
        pl.when(late).then(100.0).otherwise(pl.col("dwell_s")).alias("dwell_s"),
        *[pl.when(late).then(~pl.col(c)).otherwise(pl.col(c)).alias(c) for c in ACTION_COLUMNS],
    )
    a, b = training_frame(t, "dwell", 2.5), training_frame(t2, "dwell", 2.5)
    day = int(cut.timestamp() // 86400)
    keep = pl.col("day") <= day
    assert a.filter(keep).select(DWELL.columns).equals(b.filter(keep).select(DWELL.columns))
    assert not a.filter(~keep).select(DWELL.columns).equals(b.filter(~keep).select(DWELL.columns))


def _tiny_logs() -> dict[str, pl.DataFrame]:
    utc = dt.timezone.utc
    d0, d1 = dt.datetime(2026, 1, 5, 10, tzinfo=utc), dt.datetime(2026, 1, 6, 9, tzinfo=utc)
    imp = pl.DataFrame(
        {
            "member_id": [0, 0, 1, 0],
            "update_id": [10, 11, 10, 10],
            "update_type": ["text", "video", "text", "text"],
            "session_id": [1, 1, 2, 3],
            "ts": [d0, d0 + dt.timedelta(seconds=5), d0, d1],
            "position": [0, 1, 0, 2],
            "dwell_s": [4.0, 1.0, 3.0, 0.5],
            "clicked": [True, False, False, False],
            "reacted": [False, False, False, False],
            "commented": [False, False, False, False],
            "shared": [False, False, False, False],
            "downstream_clicks": [0, 0, 0, 0],
            "downstream_virals": [0, 0, 0, 0],
            "upstream_value": [0.0, 0.0, 0.0, 0.0],
        }
    )
    sessions = pl.DataFrame({"session_id": [1, 2, 3], "start_ts": [d0, d0, d1], "client": ["ios", "web", "android"]})
    updates = pl.DataFrame(
        {
            "update_id": [10, 11],
            "author_id": [5, 6],
            "update_type": ["text", "video"],
            "topic": [3, 4],
            "created_ts": [d0 - dt.timedelta(hours=2), d0 - dt.timedelta(hours=1)],
        }
    )
    members = pl.DataFrame(
        {"member_id": [0, 1], "connections": [100, 50], "tenure_days": [30, 60], "seniority": [1, 2], "is_premium": [False, True]}
    )
    return {"impressions": imp, "sessions": sessions, "updates": updates, "members": members}


def test_values_by_hand():
    """Hand-computed: the day-1 impression of member 0 on update 10 sees the three day-0 impressions.

    Update 10 on day 0: 2 impressions, 1 click, 2 not skipped (4.0 s and 3.0 s >= 2.5 s).
    Member 0 x text: 1 impression, 1 not skipped, 1 action; member 0 overall: 2 impressions,
    1 not skipped, 1 action; member 0 x author 5: 1 impression, 1 action.
    Smoothed rates are (k + 5 * prior) / (n + 5).
    """
    f = training_frame(_tiny_logs(), "dwell", 2.5).row(3, named=True)
    assert f["u_impressions"] == 2 and f["u_clicks"] == 1 and f["u_virals"] == 0 and f["u_not_skipped"] == 2
    assert f["u_click_rate"] == pytest.approx((1 + 5 * 0.06) / (2 + 5))
    assert f["u_not_skipped_rate"] == pytest.approx((2 + 5 * 0.25) / (2 + 5))
    assert f["mt_impressions"] == 1 and f["mt_not_skipped"] == 1
    assert f["mt_not_skipped_rate"] == pytest.approx((1 + 1.25) / 6)
    assert f["mt_action_rate"] == pytest.approx((1 + 0.5) / 6)
    assert f["m_impressions"] == 2 and f["m_not_skipped_rate"] == pytest.approx((1 + 1.25) / 7)
    assert f["ma_impressions"] == 1 and f["ma_actions"] == 1
    # Member 0 x topic 3 (update 10's topic): the one day-0 impression on update 10, clicked, 4.0 s.
    assert f["mp_impressions"] == 1 and f["mp_not_skipped"] == 1
    assert f["mp_action_rate"] == pytest.approx((1 + 0.5) / 6)
    assert f["mp_not_skipped_rate"] == pytest.approx((1 + 1.25) / 6)
    assert f["age_h"] == pytest.approx(25.0)  # created 08:00 day 0, requested 09:00 day 1
    assert f["hour"] == 9 and f["client_android"] == 1 and f["client_ios"] == 0 and f["type_text"] == 1
    assert f["position"] == 2 and f["connections"] == 100 and f["tenure_days"] == 30
    # Day-0 rows see no history at all.
    first = training_frame(_tiny_logs(), "dwell", 2.5).row(0, named=True)
    assert first["u_impressions"] == 0 and first["u_not_skipped_rate"] == pytest.approx(0.25)


def test_feature_sets_are_versioned_and_nested():
    base, dwell = FEATURE_SETS["base"], FEATURE_SETS["dwell"]
    assert set(base.columns) < set(dwell.columns)
    assert not base.uses_dwell and dwell.uses_dwell
    assert all("not_skipped" in c for c in set(dwell.columns) - set(base.columns))
    assert isinstance(base.version, int) and isinstance(dwell.version, int)


def test_skip_label_uses_t_skip():
    # Rows come sorted by (day, ts): dwell 4.0 s (clicked), 3.0 s, 1.0 s, 0.5 s.
    assert training_frame(_tiny_logs(), "base", 2.5)["skip"].to_list() == [False, False, True, True]
    assert training_frame(_tiny_logs(), "base", 3.5)["skip"].to_list() == [False, True, True, True]


def _cands() -> pl.DataFrame:
    t = _tiny_logs()
    return pl.DataFrame(
        {
            "request_id": [9],
            "member_id": [0],
            "update_id": [10],
            "update_type": ["text"],
            "author_id": [5],
            "topic": [3],
            "created_ts": [t["updates"]["created_ts"][0]],
            "request_ts": [t["sessions"]["start_ts"][2]],
            "client": ["web"],
        }
    )


def _hist():
    t = _tiny_logs()
    return history_from_logs(t["impressions"], t["sessions"], t["updates"], dt.date(2026, 1, 6), 2.5)


_PROFILES = member_profiles(_tiny_logs()["members"])
_ERRORS = [
    (lambda: get_feature_set("fancy"), "feature_set must be one of base, dwell, got 'fancy'"),
    (lambda: candidate_features(_cands().drop("author_id"), _hist(), _PROFILES, "dwell"), "missing column\\(s\\) 'author_id'"),
    (
        lambda: candidate_features(_cands().with_columns(member_id=pl.lit(7, pl.Int64)), _hist(), _PROFILES, "dwell"),
        "1 member_id\\(s\\) have no profile .*\\[7\\]",
    ),
    (
        lambda: validate_candidates(_cands().with_columns(pl.col("request_ts").cast(pl.String)), "c.parquet"),
        "c.parquet: candidate column 'request_ts' must be a Datetime type, got String",
    ),
    (
        lambda: validate_candidates(_cands().with_columns(update_id=pl.lit(None, pl.Int64)), "c.parquet"),
        "candidate column 'update_id' has 1 null",
    ),
    (
        lambda: validate_feature_matrix(pl.DataFrame({"hour": [1.0]}), DWELL, "c.parquet"),
        "c.parquet: missing feature column\\(s\\) 'connections'.*feature set 'dwell' v2",
    ),
    (
        lambda: validate_feature_matrix(pl.DataFrame({c: ["x"] if c == "age_h" else [1.0] for c in DWELL.columns}), DWELL, "c"),
        "feature column 'age_h' must be numeric, got String",
    ),
    (
        lambda: validate_feature_matrix(pl.DataFrame({c: [float("nan")] if c == "hour" else [1.0] for c in DWELL.columns}), DWELL, "c"),
        "feature column 'hour' has 1 null/NaN/infinite",
    ),
    (lambda: training_frame({"impressions": _tiny_logs()["impressions"]}, "dwell", 2.5), "training needs the sessions table"),
    (lambda: training_frame(_tiny_logs(), "dwell", -1.0), "t_skip_s must be a finite number > 0 seconds, got -1.0"),
]


@pytest.mark.parametrize(("call", "pattern"), _ERRORS)
def test_errors_name_what_is_wrong(call, pattern):
    with pytest.raises(SchemaError, match=pattern):
        call()
