"""FeedRanker: the simulator's ranker slot, per-request ranks, presets, threshold check."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import ConfigError
from dwellrank_logs.history import history_tables
from dwellrank_logs.protocol import Ranker
from ranking import FeedRanker, preset_rankers, rank_within_requests
from simulate import RandomRanker, WorldConfig, simulate
from tests.ranking.ranking_worlds import TINY, tiny_model, world


def _candidates(n_requests=3, per=6):
    """Candidate rows in the simulator's layout, from the tiny world's last day."""
    t = world(*TINY).tables
    sess = t["sessions"].sort("start_ts").tail(200)
    upd = t["updates"].sample(per, seed=0)
    rows = sess.head(n_requests).join(upd, how="cross")
    return rows.select(
        pl.col("session_id").alias("request_id"),
        "member_id",
        "update_id",
        "update_type",
        "author_id",
        "topic",
        "created_ts",
        pl.col("start_ts").alias("request_ts"),
        "client",
    )


def _history():
    t = world(*TINY).tables
    return history_tables(t["impressions"], t["updates"], before=None, t_skip_s=2.5)


def test_feedranker_is_a_simulator_ranker_and_serves_more_relevant_updates(native_scoring: None):
    """Reference: the simulator's ground truth.  In the same world (same seed and size as the
    training logs, so the same members), the trained ranker must show updates whose true
    P(engage) (truth_tables['impressions'].p_engage) is higher on average than a random order's.
    Served natively where the [fast] extra is installed, as outside the tests (its score-only build)."""
    ranker = FeedRanker(tiny_model("dwell"))
    assert isinstance(ranker, Ranker) and ranker.t_skip_s == 2.5
    cfg = WorldConfig(n_members=TINY[0], n_days=TINY[1])
    ours = simulate(cfg, seed=TINY[2], ranker=ranker)
    rand = simulate(cfg, seed=TINY[2], ranker=RandomRanker())
    relevance = {k: r.truth_tables["impressions"]["p_engage"].mean() for k, r in (("ours", ours), ("random", rand))}
    assert relevance["ours"] > relevance["random"] + 0.01, relevance
    assert ours.summary["skip_rate"] < rand.summary["skip_rate"]


def test_rank_output_matches_the_value_function_of_the_model(native_scoring: None):
    ranker = FeedRanker(tiny_model("dwell"))
    cand, hist = _candidates(), _history()
    out = ranker.rank(cand, hist, np.random.default_rng(0))
    assert out.scores.shape == (cand.height,) and out.propensity is None
    np.testing.assert_allclose(out.scores, ranker.model.score(ranker.features(cand, hist)))
    assert np.all(ranker.features(cand, hist)[:, ranker.feature_set.columns.index("position")] == 0)


def test_rank_frame_ranks_within_each_request():
    ranker = FeedRanker(tiny_model("dwell"))
    frame = ranker.rank_frame(_candidates(3, 6), _history())
    for p in ("p_click", "p_react", "p_comment", "p_share", "p_skip", "p_long_dwell", "down_share", "up_comment", "dwell"):
        assert p in frame.columns
    assert frame["p_skip"].is_between(0, 1).all()
    for _, g in frame.group_by("request_id"):
        assert sorted(g["rank"].to_list()) == list(range(1, 7))
        assert g.sort("rank")["score"].is_sorted(descending=True)
    top = ranker.rank_frame(_candidates(3, 6), _history(), top_k=2)
    assert top.height == 6 and top["rank"].max() == 2


def test_rank_within_requests_ties_keep_row_order_and_validates_top_k():
    f = pl.DataFrame({"request_id": [1, 1, 1, 2], "score": [0.5, 0.9, 0.5, 0.1]})
    assert rank_within_requests(f)["rank"].to_list() == [2, 1, 3, 1]
    with pytest.raises(ConfigError, match="top_k must be an integer >= 1, got 0"):
        rank_within_requests(f, top_k=0)


def test_history_threshold_must_match_the_models_t_skip():
    t = world(*TINY).tables
    hist = history_tables(t["impressions"], t["updates"], before=None, t_skip_s=4.0)
    with pytest.raises(ConfigError, match=r"history counts not-skipped impressions at 4\.0 s but .* T_skip = 2\.5 s"):
        FeedRanker(tiny_model("dwell")).rank(_candidates(), hist, np.random.default_rng(0))


def test_presets_for_the_ab_test():
    arms = preset_rankers(world(*TINY), t_skip_s=2.5, seed=0)
    eng, psk = arms["engagement_only"], arms["with_pskip"]
    assert eng.feature_set.name == "base" and eng.weights.skip_penalty == 0 and eng.t_skip_s is None
    assert psk.feature_set.name == "dwell" and psk.weights.skip_penalty > 0 and psk.t_skip_s == 2.5
    cand, hist = _candidates(), _history()
    for r in arms.values():
        assert np.isfinite(r.rank(cand, hist, np.random.default_rng(0)).scores).all()
