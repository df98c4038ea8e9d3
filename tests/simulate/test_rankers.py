"""The ranker protocol and the built-in rankers' propensities (closed forms)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from simulate import ExplorationRanker, RandomRanker, WorldConfig, plackett_luce, simulate


def test_plackett_luce_first_step_is_softmax():
    scores = np.array([2.0, 0.0, -1.0, 1.0, 0.5, 0.5])
    req = np.array([0, 0, 0, 1, 1, 1])
    out = plackett_luce(scores, req, 1.0, np.random.default_rng(0))
    for r in (0, 1):
        rows = np.flatnonzero(req == r)
        order = rows[np.argsort(-out.scores[rows])]
        soft = np.exp(scores[rows]) / np.exp(scores[rows]).sum()
        assert out.propensity[order[0]] == pytest.approx(soft[np.searchsorted(rows, order[0])])
        assert out.propensity[order[-1]] == pytest.approx(1.0)
        # Second step: softmax over the remaining two.
        rest = order[1:]
        assert out.propensity[order[1]] == pytest.approx(np.exp(scores[order[1]]) / np.exp(scores[rest]).sum())


def test_plackett_luce_sampling_frequencies():
    scores = np.array([1.0, 0.0, -1.0] * 20_000)
    req = np.repeat(np.arange(20_000), 3)
    out = plackett_luce(scores, req, 1.0, np.random.default_rng(1))
    top = out.scores.reshape(-1, 3).argmax(axis=1)
    freq = np.bincount(top, minlength=3) / top.size
    soft = np.exp([1.0, 0.0, -1.0]) / np.exp([1.0, 0.0, -1.0]).sum()
    assert np.allclose(freq, soft, atol=0.01)


def test_random_ranker_logs_uniform_step_propensities():
    cfg = WorldConfig(n_members=300, n_days=4)
    imp = simulate(cfg, seed=3, ranker=RandomRanker()).tables["impressions"]
    expected = 1.0 / (cfg.candidates_per_request - imp["position"].cast(pl.Float64))
    assert np.allclose(imp["propensity"].to_numpy(), expected.to_numpy())


def test_exploration_ranker_low_temperature_matches_base_order():
    class ByUpdateId:
        def rank(self, candidates, history, rng):
            from dwellrank_logs.protocol import RankOutput

            return RankOutput(scores=candidates["update_id"].to_numpy().astype(float))

    cfg = WorldConfig(n_members=200, n_days=3)
    a = simulate(cfg, seed=5, ranker=ExplorationRanker(ByUpdateId(), temperature=1e-6)).tables["impressions"]
    firsts = a.filter(pl.col("position") == 0)
    assert (firsts["propensity"] > 0.999).all()
    # Within each session, update ids decrease with position.
    ok = a.group_by("session_id").agg((pl.col("update_id").sort_by("position").diff().drop_nulls() < 0).all().alias("ok"))
    assert ok["ok"].all()


def test_ranker_called_once_per_day_with_all_requests():
    calls = []

    class Spy(RandomRanker):
        def rank(self, candidates, history, rng):
            calls.append(candidates["request_id"].n_unique())
            return super().rank(candidates, history, rng)

    cfg = WorldConfig(n_members=300, n_days=4)
    res = simulate(cfg, seed=2, ranker=Spy())
    assert len(calls) == cfg.n_days
    assert sum(calls) == res.tables["impressions"]["session_id"].n_unique()


def test_arms_get_their_own_ranker():
    cfg = WorldConfig(n_members=400, n_days=3)
    arm = np.where(np.arange(cfg.n_members) % 2 == 0, "control", "treatment")
    res = simulate(cfg, seed=1, ranker={"control": RandomRanker(), "treatment": ExplorationRanker(RandomRanker(), 1.0)}, member_arm=arm)
    members = res.tables["members"]
    assert members["arm"].to_list() == arm.tolist()


def test_shown_order_is_descending_score_with_ties_in_candidate_order():
    """Reference: numpy's stable argsort of -score per request (serving sorts unstably and re-sorts only the rows with ties)."""
    from dwellrank_logs.protocol import RankOutput

    seen: list[pl.DataFrame] = []

    class Coarse:
        def rank(self, candidates, history, rng):
            # Integer scores (many ties) for odd requests, distinct scores for even ones.
            score = rng.integers(0, 3, candidates.height).astype(np.float64)
            distinct = candidates["request_id"].to_numpy() % 2 == 0
            score[distinct] += rng.random(int(distinct.sum()))
            seen.append(candidates.select("request_id", "update_id").with_columns(score=pl.Series(score)))
            return RankOutput(scores=score)

    imp = simulate(WorldConfig(n_members=200, n_days=3), seed=5, ranker=Coarse()).tables["impressions"]
    cand = pl.concat(seen)
    checked = 0
    for (sid,), shown in imp.sort("position").group_by("session_id", maintain_order=True):
        rows = cand.filter(pl.col("request_id") == sid)
        ref = rows["update_id"].to_numpy()[np.argsort(-rows["score"].to_numpy(), kind="stable")]
        np.testing.assert_array_equal(shown["update_id"].to_numpy(), ref[: shown.height])
        checked += 1
        if checked == 150:
            break
    assert checked == 150


def test_candidate_columns_projection_builds_only_listed_columns_and_changes_nothing():
    """Reference: the same ranker given the full candidate table."""
    from dwellrank_logs.protocol import CANDIDATE_COLUMNS
    from simulate import PopularityRanker

    seen: list[tuple[str, ...]] = []

    class Projected(PopularityRanker):
        def rank(self, candidates, history, rng):
            seen.append(tuple(candidates.columns))
            return super().rank(candidates, history, rng)

    class Full(PopularityRanker):
        candidate_columns = None

    cfg = WorldConfig(n_members=300, n_days=4)
    projected = simulate(cfg, seed=6, ranker=Projected())
    full = simulate(cfg, seed=6, ranker=Full())
    assert set(seen) == {("request_id", "update_id", "created_ts")}
    for name in projected.tables:
        assert projected.tables[name].equals(full.tables[name]), name
    # A wrapper reads what its base reads; a ranker without the attribute gets every column.
    seen.clear()
    simulate(cfg.replace(n_days=2), seed=6, ranker=ExplorationRanker(Projected(), 1.0))
    assert set(seen) == {("request_id", "update_id", "created_ts")}
    cols: list[tuple[str, ...]] = []

    class Plain:
        def rank(self, candidates, history, rng):
            cols.append(tuple(candidates.columns))
            return RandomRanker().rank(candidates, history, rng)

    simulate(cfg.replace(n_days=2), seed=6, ranker=Plain())
    assert set(cols) == {CANDIDATE_COLUMNS}


def test_candidate_columns_must_name_candidate_columns():
    from dwellrank_logs.errors import ConfigError

    class Bad(RandomRanker):
        candidate_columns = ("update_id", "dwell_s")

    with pytest.raises(ConfigError, match=r"Bad.candidate_columns names \['dwell_s'\]"):
        simulate(WorldConfig(n_members=50, n_days=2), seed=0, ranker=Bad())


def test_subclass_reading_more_columns_than_declared_gets_a_clear_error():
    from dwellrank_logs.errors import ConfigError
    from simulate import PopularityRanker

    class ReadsClient(PopularityRanker):
        def rank(self, candidates, history, rng):
            candidates["client"]  # not in the inherited candidate_columns
            return super().rank(candidates, history, rng)

    with pytest.raises(ConfigError, match=r"ReadsClient read a candidate column it did not list in candidate_columns"):
        simulate(WorldConfig(n_members=50, n_days=2), seed=0, ranker=ReadsClient())

    class AsString(RandomRanker):
        candidate_columns = "update_id"

    with pytest.raises(ConfigError, match="must be a tuple of column names, got the string 'update_id'"):
        simulate(WorldConfig(n_members=50, n_days=2), seed=0, ranker=AsString())
