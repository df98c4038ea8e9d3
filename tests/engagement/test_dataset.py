"""The dataset: windows, filter and model inputs on a hand-made log, and a per-member reference on simulated logs."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import DroppedRowsWarning, DwellrankError
from dwellrank_logs.schema import EVENT_TYPES
from engagement import WindowConfig, build_dataset


def _ts(day: float, start: dt.datetime) -> dt.datetime:
    return start + dt.timedelta(days=day)


def _tiny_logs() -> dict[str, pl.DataFrame]:
    """Three members over 4 + 4 days (window 4 + 4), built by hand.

    member 1: history sessions on days 0, 0, 1, 3 (3 active days, 4 sessions);
              future sessions on day 5 (1 active day, 1 session) -> day -1, session 0.
    member 2: history sessions on days 0, 2 (2 sessions) -> filtered out with min 3.
    member 3: history sessions on days 1, 2, 3 (3 / 3); future on days 4, 5, 6, 7 and 7 -> day 1, session 1.
    A session with no events (member 3, day 2) is not valid and is ignored.
    """
    start = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    sess = [  # member, session, day, duration, client, events
        (1, 10, 0.25, 60.0, "ios", ["feed", "feed", "jobs"]),
        (1, 11, 0.75, 30.0, "ios", ["jobs"]),
        (1, 12, 1.5, 90.0, "web", ["message", "message"]),
        (1, 13, 3.2, 10.0, "ios", ["pymk"]),
        (1, 14, 5.5, 10.0, "ios", ["feed"]),
        (2, 20, 0.1, 10.0, "android", ["feed"]),
        (2, 21, 2.1, 10.0, "android", ["feed"]),
        (3, 30, 1.5, 10.0, "web", ["search"]),
        (3, 31, 2.5, 10.0, "web", ["follow"]),
        (3, 32, 2.6, 10.0, "web", []),
        (3, 33, 3.5, 10.0, "web", ["notification", "feed"]),
        (3, 34, 4.5, 10.0, "web", ["feed"]),
        (3, 35, 5.5, 10.0, "web", ["feed"]),
        (3, 36, 6.5, 10.0, "web", ["feed"]),
        (3, 37, 7.1, 10.0, "web", ["feed"]),
        (3, 38, 7.9, 10.0, "web", ["feed"]),
    ]
    sessions = pl.DataFrame(
        {
            "member_id": [s[0] for s in sess],
            "session_id": [s[1] for s in sess],
            "start_ts": [_ts(s[2], start) for s in sess],
            "duration_s": [s[3] for s in sess],
            "client": [s[4] for s in sess],
        }
    )
    ev = [(s[0], s[1], _ts(s[2], start), e) for s in sess for e in s[5]]
    events = pl.DataFrame(
        {"member_id": [e[0] for e in ev], "session_id": [e[1] for e in ev], "ts": [e[2] for e in ev], "event_type": [e[3] for e in ev]}
    )
    members = pl.DataFrame(
        {
            "member_id": [1, 2, 3],
            "connections": [100, 5, 20],
            "tenure_days": [400, 40, 1000],
            "client": ["ios", "android", "web"],
            "arm": [None, None, None],
            "industry": [1, 2, 3],
            "seniority": [2, 0, 5],
            "is_premium": [False, False, True],
        }
    )
    deliveries = pl.DataFrame(
        {
            "member_id": [1, 1, 3, 1],
            "ts": [_ts(0.5, start), _ts(2.5, start), _ts(1.0, start), _ts(6.0, start)],
            "channel": ["email", "push", "sms", "email"],
            "content": ["jobs", "feed", "pymk", "other"],
        }
    )
    return {"members": members, "sessions": sessions, "events": events, "deliveries": deliveries}


def test_build_dataset_on_a_hand_made_log() -> None:
    data = build_dataset(_tiny_logs(), WindowConfig(history_days=4, future_days=4, min_history_sessions=3))
    assert data.member_id.tolist() == [1, 3]
    assert data.n_sessions.tolist() == [[4, 1], [3, 5]]
    assert data.active_days.tolist() == [[3, 1], [3, 4]]
    assert data.y_day.tolist() == [-1, 1]
    assert data.y_session.tolist() == [0, 1]
    assert data.lengths.tolist() == [4, 3]
    # nu: event frequencies per session, in time order, zero-padded.
    e = {t: i for i, t in enumerate(EVENT_TYPES)}
    want = np.zeros((4, 10))
    want[0, e["feed"]], want[0, e["jobs"]] = 2 / 3, 1 / 3
    want[1, e["jobs"]] = want[2, e["message"]] = want[3, e["pymk"]] = 1.0
    np.testing.assert_allclose(data.nu[0], want, atol=1e-6)
    np.testing.assert_allclose(data.nu[1, 2, [e["notification"], e["feed"]]], [0.5, 0.5])
    assert data.nu[1, 3:].sum() == 0  # padding
    # Context: start hour 06:00 for day 0.25, client one-hot, duration.
    c = dict(zip(data.context_names, data.ctx[0, 0], strict=True))
    assert c["hour_sin"] == pytest.approx(1.0, abs=1e-6) and c["hour_cos"] == pytest.approx(0.0, abs=1e-6)
    assert c["client_ios"] == 1.0 and c["client_web"] == 0.0
    assert c["log1p_duration_min"] == pytest.approx(np.log1p(1.0))
    assert c["day_in_history"] == pytest.approx(0.25 / 4)
    # Activity: daily event counts (history days x event types).
    assert data.activity[0, 0, e["feed"]] == 2 and data.activity[0, 0, e["jobs"]] == 2 and data.activity[0, 3, e["pymk"]] == 1
    assert data.activity.shape == (2, 4, 10) and data.activity[0].sum() == 7
    # Latest delivery in the history window: member 1's push/feed at day 2.5 (day 6 is in the future window).
    dv = dict(zip(data.delivery_names, data.delivery[0], strict=True))
    assert dv["has_delivery"] == 1 and dv["channel_push"] == 1 and dv["content_feed"] == 1
    assert dv["log1p_hours_before_end"] == pytest.approx(np.log1p(36.0))
    assert dv["log1p_deliveries_in_history"] == pytest.approx(np.log1p(2))
    m = dict(zip(data.macro_names, data.macro[1], strict=True))
    assert m["sessions_per_day"] == pytest.approx(3 / 4) and m["active_day_rate"] == pytest.approx(3 / 4)
    assert m["is_premium"] == 1 and m["log1p_connections"] == pytest.approx(np.log1p(20))
    # The LDA corpus holds every valid history session (member 2 included, invalid session excluded).
    assert data.session_counts.shape == (4 + 2 + 3, 10)


def test_max_sessions_keeps_the_most_recent() -> None:
    data = build_dataset(_tiny_logs(), WindowConfig(history_days=4, future_days=4, min_history_sessions=3, max_sessions=2))
    e = {t: i for i, t in enumerate(EVENT_TYPES)}
    assert data.lengths.tolist() == [2, 2]
    assert data.nu[0, 0, e["message"]] == 1.0 and data.nu[0, 1, e["pymk"]] == 1.0


def test_row_order_does_not_change_the_dataset() -> None:
    logs = _tiny_logs()
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=3) for k, v in logs.items()}
    w = WindowConfig(history_days=4, future_days=4, min_history_sessions=3)
    a, b = build_dataset(logs, w), build_dataset(shuffled, w)
    for name in ("member_id", "n_sessions", "active_days", "nu", "ctx", "macro", "delivery", "activity"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_counts_match_a_per_member_reference(eng_world, eng_data) -> None:
    """Reference: a plain Python count over the raw simulator tables for 30 members."""
    t = eng_world.tables
    start = eng_data.start
    valid = set(t["events"]["session_id"].unique().to_list())
    days: dict[int, list[int]] = {}
    for m, sid, ts in t["sessions"].select("member_id", "session_id", "start_ts").iter_rows():
        if sid in valid:
            days.setdefault(m, []).append((ts - start).days)
    for row in range(0, eng_data.n_members, eng_data.n_members // 30):
        m = int(eng_data.member_id[row])
        d = np.array(days[m])
        n_h, n_f = int((d < 14).sum()), int(((d >= 14) & (d < 28)).sum())
        a_h, a_f = len(set(d[d < 14])), len(set(d[(d >= 14) & (d < 28)]))
        assert eng_data.n_sessions[row].tolist() == [n_h, n_f]
        assert eng_data.active_days[row].tolist() == [a_h, a_f]
        assert eng_data.y_day[row] == (0 if a_h == a_f else (1 if a_f > a_h else -1))
        assert eng_data.y_session[row] == (0 if n_h > n_f else 1)
    assert (eng_data.n_sessions[:, 0] >= 7).all()
    np.testing.assert_allclose(eng_data.nu.sum(-1)[np.arange(eng_data.nu.shape[1])[None] < eng_data.lengths[:, None]], 1.0, atol=1e-5)


def _drop_col(frames, table, col):
    return {**frames, table: frames[table].drop(col)}


@pytest.mark.parametrize(
    ("mutate", "exc", "pattern"),
    [
        (lambda f: {k: v for k, v in f.items() if k != "events"}, DwellrankError, "the events table is missing"),
        (lambda f: _drop_col(f, "sessions", "duration_s"), DwellrankError, "sessions table is missing column.*'duration_s'"),
        (lambda f: {**f, "sessions": f["sessions"].head(0)}, DwellrankError, "no valid session"),
        (lambda f: {**f, "members": f["members"].head(0)}, DwellrankError, "members table has no rows"),
        (lambda f: {**f, "events": f["events"].with_columns(event_type=pl.lit("like"))}, DwellrankError, "event_type.*unknown value"),
        (
            lambda f: {**f, "sessions": f["sessions"].filter(pl.col("start_ts") < _ts(3, dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))},
            DwellrankError,
            "needs sessions up to day 7",
        ),
    ],
)
def test_bad_tables(mutate, exc, pattern) -> None:
    with pytest.raises(exc, match=pattern):
        build_dataset(mutate(_tiny_logs()), WindowConfig(history_days=4, future_days=4, min_history_sessions=3))


def test_filter_leaving_nobody_names_the_option() -> None:
    with pytest.raises(DwellrankError, match="min_history_sessions = 50"):
        build_dataset(_tiny_logs(), WindowConfig(history_days=4, future_days=4, min_history_sessions=50))


def test_members_left_out_are_counted_in_a_warning() -> None:
    # By hand (_tiny_logs): member 2 has 2 valid history sessions, so min 3 leaves 1 of 3 out, min 2 none.
    w = WindowConfig(history_days=4, future_days=4, min_history_sessions=3)
    with pytest.warns(DroppedRowsWarning, match=r"^1 of 3 members .* left out: .*min_history_sessions = 3 valid sessions"):
        build_dataset(_tiny_logs(), w)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedRowsWarning)
        assert build_dataset(_tiny_logs(), WindowConfig(history_days=4, future_days=4, min_history_sessions=2)).n_members == 3


_TINY_WINDOW = WindowConfig(history_days=4, future_days=4, min_history_sessions=3)


def test_a_members_table_with_only_member_id_gives_the_activity_features() -> None:
    """Reference: the activity rates by hand from ``_tiny_logs`` (member 1: 4 sessions on 3 days; member 3: 3 on 3,
    windows of 4 days, the last 4 days all recent); the sequences do not depend on the members table."""
    full = build_dataset(_tiny_logs(), _TINY_WINDOW)
    logs = _tiny_logs()
    got = build_dataset({**logs, "members": logs["members"].select("member_id")}, _TINY_WINDOW)
    assert got.member_columns == () and got.macro_names[:4] == (
        "sessions_per_day",
        "active_day_rate",
        "sessions_per_day_last7",
        "active_day_rate_last7",
    )
    np.testing.assert_allclose(got.macro[:, :4], [[4 / 4, 3 / 4, 4 / 4, 3 / 4], [3 / 4, 3 / 4, 3 / 4, 3 / 4]], rtol=1e-6)
    assert got.macro.shape == (2, 6)
    for name in ("nu", "ctx", "lengths", "y_day", "y_session", "delivery", "activity"):
        assert np.array_equal(getattr(got, name), getattr(full, name)), name


def test_extra_numeric_and_boolean_member_columns_become_features_by_name() -> None:
    """A platform's own columns (an int, a float, a bool; a string is not a feature) enter M as their values,
    after the schema's; the schema's columns that are present are still validated."""
    logs = _tiny_logs()
    members = (
        logs["members"]
        .select("member_id", "seniority")
        .with_columns(
            posts=pl.Series([7, 1, 3], dtype=pl.Int32),
            score=pl.Series([0.5, 0.1, -2.0]),
            verified=pl.Series([True, False, False]),
            team=pl.lit("x"),
        )
    )
    got = build_dataset({**logs, "members": members}, _TINY_WINDOW)
    assert got.member_columns == ("seniority", "posts", "score", "verified")
    assert got.macro_names[:4] == ("seniority", "posts", "score", "verified")
    np.testing.assert_allclose(got.macro[:, :4], [[2, 7, 0.5, 1], [5, 3, -2.0, 0]])
    with pytest.raises(DwellrankError, match=r"column 'seniority' must be an integer"):
        build_dataset({**logs, "members": members.with_columns(seniority=pl.lit("senior"))}, _TINY_WINDOW)
    with pytest.raises(DwellrankError, match=r"macroscopic feature column\(s\) 'score' \(1 null or NaN\) must have a value"):
        build_dataset({**logs, "members": members.with_columns(score=pl.Series([0.5, None, 1.0]))}, _TINY_WINDOW)
    with pytest.raises(DwellrankError, match=r"members column\(s\) 'n_h' share a name with the dataset's own per-member counts"):
        build_dataset({**logs, "members": members.rename({"posts": "n_h"})}, _TINY_WINDOW)
    with pytest.raises(DwellrankError, match=r"the members table has no column 'posts'; asked for macroscopic features"):
        build_dataset({**logs, "members": members.drop("posts")}, _TINY_WINDOW, member_columns=("seniority", "posts"))


def test_score_refuses_a_members_table_without_a_column_the_model_used(eng_logs, tmp_path) -> None:
    """A model trained with a platform column ``posts`` records it in meta.json; scoring logs whose members table
    lacks it is one line naming the file, the column and what the model expects (the same logs with it score)."""
    import json
    import shutil

    from dwellrank_logs.errors import SchemaError
    from engagement import ForecastTrainConfig, LdaConfig, score_logs, train_on_logs

    logs = tmp_path / "logs"
    shutil.copytree(eng_logs, logs)
    members = pl.read_parquet(logs / "members.parquet").select("member_id", "is_premium")
    members.with_columns(posts=(pl.col("member_id") % 5).cast(pl.Int32)).write_parquet(logs / "members.parquet")
    train_on_logs(
        logs,
        tmp_path / "model",
        "session",
        train_config=ForecastTrainConfig(max_epochs=1),
        lda_config=LdaConfig(k_min=7, k_max=7, restarts=1),
    )
    meta = json.loads((tmp_path / "model" / "meta.json").read_text())
    assert meta["member_columns"] == ["is_premium", "posts"] and meta["macro_names"][:2] == ["is_premium", "posts"]
    _, scores = score_logs(tmp_path / "model", logs, tmp_path / "scores.parquet")
    assert scores.height > 0
    members.write_parquet(logs / "members.parquet")
    with pytest.raises(SchemaError) as err:
        score_logs(tmp_path / "model", logs, tmp_path / "scores2.parquet", overwrite=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{logs / 'members.parquet'}: the members table has no column 'posts'")
    assert msg.endswith("macroscopic features from members columns is_premium, posts"), msg
