"""Online features: the lookup indexes kept with a history snapshot answer as the joins do.

The reference of every comparison is the join path of :func:`candidate_features`
(what it computes when the lookup path declines), an independent implementation
of the same raw counts.
"""

from __future__ import annotations

import datetime as dt
import gc
import weakref
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ranking.features.lookup as lookups
import ranking.features.online as online
from dwellrank_logs.errors import SchemaError
from dwellrank_logs.protocol import HistoryTables
from dwellrank_logs.schema import CLIENTS, UPDATE_TYPES
from ranking.features import candidate_features, history_from_logs, member_profiles
from tests.ranking.ranking_worlds import T_SKIP_S, TINY, day_candidates, world

DAY = dt.date(2026, 1, 9)  # the tiny world runs 2026-01-05 .. 2026-01-10
_TABLES = ("updates", "member_types", "member_authors", "member_topics", "members")


def _history(day: dt.date) -> HistoryTables:
    t = world(*TINY).tables
    return history_from_logs(t["impressions"], t["sessions"], t["updates"], day, T_SKIP_S)


def _candidates(day: dt.date) -> pl.DataFrame:
    """The impressions served on ``day`` in the candidate layout, with their session as request."""
    return day_candidates(world(*TINY).tables, day)


@pytest.fixture(scope="module")
def profiles() -> pl.DataFrame:
    return member_profiles(world(*TINY).tables["members"])


def _joined(monkeypatch, candidates, history, profiles) -> pl.DataFrame:
    """Features by the join path alone (the lookup path declines every request)."""
    with monkeypatch.context() as m:
        m.setattr(online, "_raw_arrays_by_lookup", lambda *args: None)
        return candidate_features(candidates, history, profiles, "dwell")


def _bits(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float64).view(np.int64)


def _check(monkeypatch, candidates, history, profiles, lookup: bool) -> pl.DataFrame:
    """Features of a request equal the joins' exactly, as a frame and as the ranker's matrix;
    ``lookup``: whether the lookup path answered."""
    assert (lookups._raw_counts_by_lookup(candidates, history, profiles) is not None) == lookup
    got = candidate_features(candidates, history, profiles, "dwell")
    want = _joined(monkeypatch, candidates, history, profiles)
    assert_frame_equal(got, want, check_exact=True)
    X = online._candidate_matrix(candidates, history, profiles, "dwell")
    assert X.dtype == np.float64 and X.flags.c_contiguous and X.shape == want.shape
    np.testing.assert_array_equal(_bits(X), _bits(want.to_numpy()))
    return got


def _unseen(cands: pl.DataFrame) -> pl.DataFrame:
    """``cands`` with, in turn, an update, author, topic or update type that no history holds.

    New type labels sort before, among and after the known ones (they shift the types' codes).
    """
    turn = np.arange(cands.height) % 5
    new_type = np.array(["aaa", "link", "zzz"])[np.arange(cands.height) % 3]
    return cands.with_columns(
        pl.Series("update_id", np.where(turn == 0, cands["update_id"] + 100_000, cands["update_id"])),
        pl.Series("author_id", np.where(turn == 1, cands["author_id"] + 100_000, cands["author_id"])),
        pl.Series("topic", np.where(turn == 2, cands["topic"] + 40, cands["topic"])),
        pl.Series("update_type", np.where(turn == 3, new_type, cands["update_type"].to_numpy())),
    )


def test_requests_against_one_snapshot_equal_the_joins(monkeypatch, profiles):
    """Several requests on one snapshot: real rows, keys no history holds, a new member, one the lookup declines."""
    hist, cands = _history(DAY), _candidates(DAY)
    sessions = cands["request_id"].unique().sort()
    first = _check(monkeypatch, cands.filter(pl.col("request_id") == sessions[0]), hist, profiles, lookup=True)
    assert first["u_impressions"].sum() > 0  # history is not empty
    _check(monkeypatch, cands.filter(pl.col("request_id").is_in(sessions[1:40].implode())), hist, profiles, lookup=True)
    # Updates, authors, topics and types nobody saw: no history (0), through the kept indexes.
    unseen = _unseen(cands.head(500))
    got = _check(monkeypatch, unseen, hist, profiles, lookup=True)
    turn = np.arange(500) % 5
    assert got["u_impressions"].to_numpy()[turn == 0].sum() == got["ma_impressions"].to_numpy()[turn == 1].sum() == 0
    assert got["mp_impressions"].to_numpy()[turn == 2].sum() == got["mt_impressions"].to_numpy()[turn == 3].sum() == 0
    # A member with a profile but no history (a new member, id above every table's).
    new_member = pl.concat([profiles, profiles.tail(1).with_columns(member_id=pl.lit(5_000, pl.Int64))])
    got = _check(monkeypatch, cands.head(50).with_columns(member_id=pl.lit(5_000, pl.Int64)), hist, new_member, lookup=True)
    assert got["m_impressions"].sum() == got["mt_impressions"].sum() == 0
    # A negative update id: outside the dense range, so the joins answer (no history for it).
    _check(monkeypatch, cands.head(80).with_columns(update_id=pl.lit(-5, pl.Int64)), hist, profiles, lookup=False)
    # The whole day in one request, after all the others.
    _check(monkeypatch, cands, hist, profiles, lookup=True)


@pytest.mark.parametrize(
    "change",
    [
        {"update_id": pl.lit(-1, pl.Int64)},  # negative ids: outside the dense range
        {"update_id": pl.lit(lookups._DENSE_MAX, pl.Int64)},  # too far for a dense array
        {"author_id": pl.lit(1 << 31, pl.Int64)},  # outside the member x author pair keys
        {"topic": pl.lit(-3, pl.Int64)},
        {"update_type": pl.lit(None, pl.String)},  # nulls
    ],
    ids=["negative_update", "far_update", "far_author", "negative_topic", "null_type"],
)
def test_requests_the_lookup_declines_take_the_joins_on_a_warm_snapshot(monkeypatch, profiles, change):
    hist, cands = _history(DAY), _candidates(DAY).head(300)
    _check(monkeypatch, cands, hist, profiles, lookup=True)  # warm
    odd = cands.with_columns(pl.when(pl.int_range(300) == 7).then(v).otherwise(pl.col(k)).alias(k) for k, v in change.items())
    _check(monkeypatch, odd, hist, profiles, lookup=False)
    _check(monkeypatch, cands.tail(100), hist, profiles, lookup=True)  # and the next request is served from the indexes


def test_unknown_member_raises_the_documented_error_on_a_warm_snapshot(monkeypatch, profiles):
    hist, cands = _history(DAY), _candidates(DAY).head(100)
    _check(monkeypatch, cands, hist, profiles, lookup=True)
    with pytest.raises(SchemaError, match=r"1 member_id\(s\) have no profile .*\[9999\]"):
        candidate_features(cands.with_columns(member_id=pl.lit(9999, pl.Int64)), hist, profiles, "dwell")


def test_indexes_are_built_once_per_snapshot(monkeypatch, profiles):
    built: dict[str, int] = {}

    def counting(name, build):
        def wrapped(table, cols):
            built[name] = built.get(name, 0) + 1
            return build(table, cols)

        return wrapped

    for name, build in list(lookups._INDEX_BUILDERS.items()):
        monkeypatch.setitem(lookups._INDEX_BUILDERS, name, counting(name, build))
    hist, cands = _history(DAY), _candidates(DAY)
    for part in cands.partition_by("request_id", maintain_order=True)[:20]:
        candidate_features(part, hist, profiles, "dwell")
    assert built == dict.fromkeys(_TABLES, 1)
    candidate_features(cands.head(10), _history(DAY), profiles, "dwell")  # a new snapshot builds its own
    assert built == dict.fromkeys(_TABLES, 2)


def test_snapshots_never_share_indexes(monkeypatch, profiles):
    """History before and after a day of impressions: each snapshot answers with its own counts."""
    cands = _candidates(DAY + dt.timedelta(days=1))
    before, after = _history(DAY), _history(DAY + dt.timedelta(days=1))
    a1 = _check(monkeypatch, cands, before, profiles, lookup=True)
    b = _check(monkeypatch, cands, after, profiles, lookup=True)
    a2 = _check(monkeypatch, cands, before, profiles, lookup=True)
    assert_frame_equal(a1, a2, check_exact=True)
    for c in ("u_impressions", "mt_impressions", "ma_impressions", "mp_impressions", "m_impressions"):
        assert (b[c] > a1[c]).any(), c  # the extra day's impressions are counted in the later snapshot only
    for name in _TABLES:
        key = f"ranking.features.{name}"
        mine = before.derived(key, lambda: pytest.fail("index not kept"))
        assert mine is not None and mine is not after.derived(key, lambda: pytest.fail("index not kept"))


def test_indexes_are_freed_with_their_snapshot(monkeypatch, profiles):
    """Indexes live on the snapshot, not in a cache keyed by its id: freeing a snapshot frees its indexes,
    and a later snapshot (at a freed one's address or not) answers with its own counts."""
    cands = _candidates(DAY + dt.timedelta(days=1)).head(400)
    old = _history(DAY)
    stale = candidate_features(cands, old, profiles, "dwell")
    indexes = [weakref.ref(old.derived(f"ranking.features.{name}", lambda: pytest.fail("index not kept"))) for name in _TABLES]
    del old
    gc.collect()
    assert [ref() for ref in indexes] == [None] * len(_TABLES)  # nothing outside the snapshot holds them
    got = _check(monkeypatch, cands, _history(DAY + dt.timedelta(days=1)), profiles, lookup=True)
    assert (got["u_impressions"] > stale["u_impressions"]).any()  # the later day's counts, not the freed snapshot's


def test_profiles_tables_are_told_apart_on_one_snapshot(monkeypatch, profiles):
    """Profiles indexes are keyed by the table object: a new table (even at a freed table's id) is indexed anew."""
    hist, cands = _history(DAY), _candidates(DAY).head(300)
    for k in range(lookups._PROFILE_TABLES_KEPT + 3):
        changed = profiles.with_columns(pl.col("connections") + k).sample(fraction=1.0, shuffle=True, seed=k)
        got = _check(monkeypatch, cands, hist, changed, lookup=True)
        ref = cands.select("member_id").join(changed, on="member_id", how="left", maintain_order="left")
        np.testing.assert_array_equal(got["connections"].to_numpy(), ref["connections"].to_numpy())
        del changed
        gc.collect()
    assert len(hist.derived("ranking.features.profiles", dict)) <= lookups._PROFILE_TABLES_KEPT


def test_history_objects_of_other_types_are_indexed_per_request(monkeypatch, profiles):
    hist, cands = _history(DAY), _candidates(DAY).head(300)
    duck = SimpleNamespace(**{n: getattr(hist, n) for n in _TABLES}, t_skip_s=T_SKIP_S)
    assert_frame_equal(
        candidate_features(cands, duck, profiles, "dwell"), _check(monkeypatch, cands, hist, profiles, lookup=True), check_exact=True
    )


def _grid_history() -> tuple[HistoryTables, pl.DataFrame]:
    """Members 0..9, each with history on update types 'b' and 'd', on author 0 and on topic 1; profiles for all."""
    member = np.arange(10)
    one = np.ones(10, np.uint32)
    counts = {"n_impressions": one, "n_not_skipped": one, "n_actions": one}
    updates = {"update_id": [0, 1], **{c: np.array([3, 1], np.uint32) for c in ("n_impressions", "n_clicks", "n_virals", "n_not_skipped")}}
    hist = HistoryTables(
        updates=pl.DataFrame(updates),
        member_types=pl.DataFrame(
            {"member_id": np.repeat(member, 2), "update_type": ["b", "d"] * 10, **{k: np.repeat(v, 2) for k, v in counts.items()}}
        ),
        member_authors=pl.DataFrame({"member_id": member, "author_id": np.zeros(10, np.int64), "n_impressions": one, "n_actions": one}),
        member_topics=pl.DataFrame({"member_id": member, "topic": np.ones(10, np.int64), **counts}),
        members=pl.DataFrame({"member_id": member, **counts}),
        t_skip_s=T_SKIP_S,
    )
    prof = pl.DataFrame(
        {
            "member_id": member,
            "connections": member * 7,
            "tenure_days": np.full(10, 30),
            "seniority": np.ones(10, np.int8),
            "is_premium": member % 2 == 0,
        }
    )
    return hist, prof


def _grid_request(member: int, update_type: str, topic: int = 1) -> pl.DataFrame:
    """Two candidates: ``member`` on an update of ``update_type`` and ``topic``, and member 0 on a 'b' update of topic 1."""
    ts = dt.datetime(2026, 1, 9, 10, tzinfo=dt.timezone.utc)
    return pl.DataFrame(
        {
            "request_id": [1, 1],
            "member_id": [member, 0],
            "update_id": [1, 0],
            "update_type": [update_type, "b"],
            "author_id": [0, 0],
            "topic": [topic, 1],
            "created_ts": [ts - dt.timedelta(hours=3)] * 2,
            "request_ts": [ts] * 2,
            "client": ["ios", "web"],
        }
    )


def test_new_types_and_topics_widen_the_dense_layout(monkeypatch):
    """A request's new update type or topic lays the pairs out wider (member * n + code, n codes of table
    and request); where that layout reaches _DENSE_MAX the joins answer, though the kept index fits."""
    hist, prof = _grid_history()
    # Types 'b', 'd' (codes 0, 1): largest key 9 * 2 + 1 = 19; topics 0..1 likewise.
    monkeypatch.setattr(lookups, "_DENSE_MAX", 25)
    _check(monkeypatch, _grid_request(3, "d"), hist, prof, lookup=True)
    _check(monkeypatch, _grid_request(0, "c"), hist, prof, lookup=False)  # 'b', 'c', 'd': member 9 x 'd' at 9 * 3 + 2 = 29
    _check(monkeypatch, _grid_request(0, "e"), hist, prof, lookup=False)  # 'b', 'd', 'e': member 9 x 'd' at 9 * 3 + 1 = 28
    _check(monkeypatch, _grid_request(0, "b", topic=2), hist, prof, lookup=False)  # topics 0..2: member 9 x 1 at 28
    monkeypatch.setattr(lookups, "_DENSE_MAX", 30)
    got = _check(monkeypatch, _grid_request(9, "c"), hist, prof, lookup=True)  # 29 < 30: served from the kept index
    assert got["mt_impressions"].to_list() == [0.0, 1.0]
    got = _check(monkeypatch, _grid_request(9, "d", topic=2), hist, prof, lookup=True)  # member 9 x topic 2 at 29
    assert got["mt_impressions"].to_list() == [1.0, 1.0] and got["mp_impressions"].to_list() == [0.0, 1.0]
    monkeypatch.setattr(lookups, "_DENSE_MAX", 29)
    # 'b', 'd', 'e': the table reaches 9 * 3 + 1 = 28, so the request's own keys decide.
    _check(monkeypatch, _grid_request(8, "e"), hist, prof, lookup=True)  # 8 * 3 + 2 = 26
    _check(monkeypatch, _grid_request(9, "e"), hist, prof, lookup=False)  # 9 * 3 + 2 = 29


def test_empty_history_reads_as_no_history(monkeypatch, profiles):
    """The first day sees empty tables: every count 0 through the lookups, new types included."""
    first = dt.date(2026, 1, 5)
    hist, cands = _history(first), _candidates(first).head(300)
    assert hist.updates.height == 0
    got = _check(monkeypatch, cands, hist, profiles, lookup=True)
    assert got["u_impressions"].sum() == got["ma_impressions"].sum() == 0
    _check(monkeypatch, _unseen(cands), hist, profiles, lookup=True)


def _replaced(hist: HistoryTables, **tables: pl.DataFrame) -> HistoryTables:
    return HistoryTables(**{n: tables.get(n, getattr(hist, n)) for n in _TABLES}, t_skip_s=hist.t_skip_s)


def test_duplicated_keys_take_the_joins(monkeypatch):
    """A duplicated pair that a request hits repeats its row in the joins, so those requests take them;
    duplicated ids in a dense table send every request there."""
    hist, prof = _grid_history()
    twice = _replaced(hist, member_authors=pl.concat([hist.member_authors, hist.member_authors.filter(pl.col("member_id") == 3)]))
    _check(monkeypatch, _grid_request(4, "b"), twice, prof, lookup=True)  # pairs (4, 0), (0, 0): held once
    assert _check(monkeypatch, _grid_request(3, "b"), twice, prof, lookup=False).height == 3  # (3, 0) held twice
    _check(monkeypatch, _grid_request(4, "b"), twice, prof, lookup=True)
    dup_updates = _replaced(hist, updates=pl.concat([hist.updates, hist.updates.head(1)]))
    _check(monkeypatch, _grid_request(4, "b"), dup_updates, prof, lookup=False)


def _no_polars_derivation(monkeypatch) -> None:
    """Fail if the polars evaluator or the joins run: the numpy matrix path must answer alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("the polars derivation ran")

    monkeypatch.setattr(online, "_derive", refuse)
    monkeypatch.setattr(online, "_by_joins", refuse)


@pytest.mark.parametrize(
    "variant",
    ["categorical", "enum", "paris", "kolkata_ns", "mixed_units", "naive_ms", "positions"],
)
def test_the_matrix_path_answers_in_numpy_for_string_and_timestamp_dtypes(monkeypatch, profiles, variant):
    """Categorical and Enum update types and clients (the joins refuse categorical keys, so their reference
    is the joins over the same values as strings), timestamps in local zones and other time units (the
    hour of the request in its zone), and given positions: the numpy path answers, equal to the joins."""
    hist, base = _history(DAY), _candidates(DAY).head(400)
    types = pl.Enum(["zzz", *sorted(UPDATE_TYPES, reverse=True)])
    cands = {
        "categorical": base.with_columns(pl.col("update_type", "client").cast(pl.Categorical)),
        "enum": base.with_columns(pl.col("update_type").cast(types), pl.col("client").cast(pl.Enum(["", *CLIENTS]))),
        "paris": base.with_columns(pl.col("created_ts", "request_ts").dt.convert_time_zone("Europe/Paris")),
        "kolkata_ns": base.with_columns(pl.col("created_ts", "request_ts").dt.cast_time_unit("ns").dt.convert_time_zone("Asia/Kolkata")),
        "mixed_units": base.with_columns(pl.col("request_ts").dt.cast_time_unit("ms"), pl.col("created_ts").dt.cast_time_unit("ns")),
        "naive_ms": base.with_columns(pl.col("created_ts", "request_ts").dt.replace_time_zone(None).dt.cast_time_unit("ms")),
        "positions": base,
    }[variant]
    if variant in ("categorical", "enum"):  # in two chunks, as a concatenated request arrives
        cands = pl.concat([cands.head(150), cands.tail(250)], rechunk=False)
        assert cands["update_type"].n_chunks() == 2
    position = np.arange(400) % 30 if variant == "positions" else 0
    want = _joined_at(monkeypatch, base if variant in ("categorical", "enum") else cands, hist, profiles, position)
    if variant in ("paris", "kolkata_ns"):
        assert not np.array_equal(want["hour"].to_numpy(), _joined_at(monkeypatch, base, hist, profiles, 0)["hour"].to_numpy())
    with monkeypatch.context() as m:
        _no_polars_derivation(m)
        X = online._candidate_matrix(cands, hist, profiles, "dwell", position=position)
        frame = candidate_features(cands, hist, profiles, "dwell", position=position)
    np.testing.assert_array_equal(_bits(X), _bits(want.to_numpy()))
    assert_frame_equal(frame, want, check_exact=True)


def _joined_at(monkeypatch, candidates, history, profiles, position) -> pl.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(online, "_raw_arrays_by_lookup", lambda *args: None)
        return candidate_features(candidates, history, profiles, "dwell", position=position)


def test_feedranker_scores_a_request_from_the_matrix_path(monkeypatch):
    """The ranker's features are the matrix path's (no polars derivation or join runs), equal to
    candidate_features' frame bit for bit, and its scores are the model's scores of that frame."""
    from ranking.ranker import FeedRanker
    from tests.ranking.ranking_worlds import tiny_model

    model = tiny_model("dwell")
    ranker = FeedRanker(model, num_threads=1)
    hist, cands = _history(DAY), _candidates(DAY).head(500)
    want = candidate_features(cands, hist, ranker.profiles, model.feature_set, position=0).to_numpy()
    with monkeypatch.context() as m:
        _no_polars_derivation(m)
        X = ranker.features(cands, hist)
        scores = ranker.rank(cands, hist, np.random.default_rng(0)).scores
    assert X.flags.c_contiguous
    np.testing.assert_array_equal(_bits(X), _bits(want))
    np.testing.assert_array_equal(scores, model.score(want, ranker.weights))
