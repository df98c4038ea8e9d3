"""The ground-truth helpers against the simulator itself: replayed members and closed-form rewards."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from dwellrank_logs.errors import ConfigError
from simulate import PopularityRanker, WorldConfig, simulate
from simulate.truth import REWARDS, OracleRanker, expected_reward, world_members
from simulate.world import engage_probability, respond

CFG = WorldConfig(n_members=300, n_days=4)


@pytest.fixture(scope="module")
def run():
    return simulate(CFG, seed=21, ranker=PopularityRanker())


def _impression_inputs(run):
    imp = run.tables["impressions"]
    upd = run.tables["updates"].join(run.truth_tables["updates"], on="update_id").sort("update_id")
    u = imp["update_id"].to_numpy()
    code = {t: i for i, t in enumerate(CFG.update_types)}
    utype = upd["update_type"].replace_strict(code, return_dtype=pl.Int64).to_numpy()[u]
    return imp["member_id"].to_numpy(), utype, upd["topic"].to_numpy()[u], upd["quality"].to_numpy()[u], imp["position"].to_numpy()


def test_replayed_members_reproduce_the_logged_true_engage_probability(run):
    """world_members(config, seed) replays the engine's draws: P(engage) of every impression
    equals the one the engine wrote to truth_tables['impressions']."""
    members = world_members(CFG, 21)
    m, ut, top, q, pos = _impression_inputs(run)
    p = expected_reward(CFG, members, m, ut, top, q, pos, "engaged")
    np.testing.assert_allclose(p, run.truth_tables["impressions"]["p_engage"].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("reward", ["click", "viral", "not_skipped", "engaged"])
def test_closed_forms_match_monte_carlo_of_the_response_model(reward):
    """Sample simulate.world.respond 100,000 times for fixed (member, update, position) triples;
    the sample mean of the reward is within 4 standard errors of expected_reward."""
    members = world_members(CFG, 3)
    rng = np.random.default_rng(0)
    reps = 100_000
    for member, utype, topic, quality, pos in [(0, 0, 1, 0.3, 0), (5, 2, 4, -0.5, 3), (17, 3, 0, 1.2, 10), (42, 4, 7, 0.0, 1)]:
        n = np.full(reps, member)
        args = (np.full(reps, utype), np.full(reps, topic), np.full(reps, quality))
        res = respond(CFG, members, n, *args, np.zeros(reps, dtype=np.int64), np.full(reps, pos), rng)
        observed = {
            "click": res.clicked,
            "viral": res.reacted | res.commented | res.shared,
            "not_skipped": (res.dwell_s >= CFG.t_skip_s) | res.clicked | res.reacted | res.commented | res.shared,
            "engaged": res.engaged,
        }[reward].astype(float)
        p = float(
            expected_reward(CFG, members, np.array([member]), np.array([utype]), np.array([topic]), np.array([quality]), pos, reward)[0]
        )
        se = math.sqrt(max(p * (1 - p), 1e-12) / reps)
        assert abs(observed.mean() - p) < 4 * se + 1e-9, (reward, member, observed.mean(), p)


def test_observed_top_slot_clicks_match_the_truth(run):
    members = world_members(CFG, 21)
    m, ut, top, q, pos = _impression_inputs(run)
    first = pos == 0
    p = expected_reward(CFG, members, m[first], ut[first], top[first], q[first], 0, "click")
    clicked = run.tables["impressions"]["clicked"].to_numpy()[first].astype(float)
    se = math.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(clicked.mean() - p.mean()) < 4 * se


def test_oracle_ranker_scores_are_the_true_engage_probability_at_the_top():
    members = world_members(CFG, 8)
    cands = pl.DataFrame(
        {
            "request_id": [1, 1, 1],
            "member_id": [3, 3, 3],
            "update_type": ["article", "text", "video"],
            "author_id": [10, 11, 12],
            "topic": [0, 5, 2],
        }
    )
    out = OracleRanker(CFG, members).rank(cands, None, np.random.default_rng(0))
    code = [CFG.update_types.index(t) for t in cands["update_type"]]
    ref, _ = engage_probability(
        CFG,
        members,
        np.array([3, 3, 3]),
        np.array(code),
        np.array([0, 5, 2]),
        members.author_quality[[10, 11, 12]],
        np.zeros(3, dtype=np.int64),
    )
    np.testing.assert_allclose(out.scores, ref)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: world_members(CFG, np.random.default_rng(0)), r"seed must be a non-negative integer to replay the world, got Generator"),
        (lambda: world_members(CFG, -1), r"seed must be a non-negative integer to replay the world, got -1"),
        (
            lambda: expected_reward(CFG, world_members(CFG, 0), [0], [0], [0], [0.0], 0, "dwell"),
            r"reward must be one of \[.*\], got 'dwell'",
        ),
    ],
)
def test_bad_input(call, pattern):
    with pytest.raises(ConfigError, match=pattern):
        call()


def test_rewards_are_probabilities():
    members = world_members(CFG, 1)
    rng = np.random.default_rng(1)
    n = 500
    args = (
        rng.integers(0, CFG.n_members, n),
        rng.integers(0, 5, n),
        rng.integers(0, CFG.n_topics, n),
        rng.normal(0, 2, n),
        rng.integers(0, 25, n),
    )
    values = {r: expected_reward(CFG, members, *args, r) for r in REWARDS}
    for v in values.values():
        assert ((v >= 0) & (v <= 1)).all()
    # Clicks and virals need engagement; not skipping includes it.
    assert (values["click"] <= values["engaged"]).all() and (values["viral"] <= values["engaged"]).all()
    assert (values["not_skipped"] >= values["engaged"]).all()
