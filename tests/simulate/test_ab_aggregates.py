"""Per-member aggregates and metrics against a numpy reference computed from the log tables, and against the simulator's truth."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from simulate import PopularityRanker, RandomRanker, WorldConfig, simulate
from simulate.ab import assign_arms, member_aggregates, member_metrics, split_seconds
from simulate.ab.aggregates import seconds_from_parts
from simulate.truth import arm_truth


def test_member_aggregates_match_a_numpy_reference():
    """Per-member sums recomputed with numpy bincount straight from the log tables."""
    cfg = WorldConfig(n_members=150, n_days=4)
    res = simulate(cfg, seed=2)
    t = res.tables
    t_skip = 2.5
    agg = member_aggregates(t, cfg, t_skip, 1, 3)
    start = int(cfg.start.timestamp())
    sess = t["sessions"]
    day = (sess["start_ts"].dt.epoch("s").to_numpy() - start) // 86400
    in_period = (day >= 1) & (day < 3)
    sid = sess["session_id"].to_numpy()[in_period]
    smem = sess["member_id"].to_numpy()[in_period]
    imp = t["impressions"]
    keep = np.isin(imp["session_id"].to_numpy(), sid)
    mem = imp["member_id"].to_numpy()[keep]
    dwell = imp["dwell_s"].to_numpy()[keep]
    clicked = imp["clicked"].to_numpy()[keep]
    virals = np.stack([imp[c].to_numpy()[keep] for c in ("reacted", "commented", "shared")])
    cd = np.nan_to_num(imp["click_dwell_s"].to_numpy().astype(float))[keep]
    skipped = (dwell < t_skip) & ~clicked & ~virals.any(axis=0)
    n = cfg.n_members

    def bc(w=None, m=mem):
        return np.bincount(m, weights=w, minlength=n)

    np.testing.assert_array_equal(agg["n_impressions"].to_numpy(), bc())
    np.testing.assert_array_equal(agg["n_skipped"].to_numpy(), bc(skipped))
    np.testing.assert_array_equal(agg["n_clicked"].to_numpy(), bc(clicked))
    np.testing.assert_array_equal(agg["n_viral_impressions"].to_numpy(), bc(virals.any(axis=0)))
    np.testing.assert_array_equal(agg["n_virals"].to_numpy(), bc(virals.sum(axis=0)))
    np.testing.assert_allclose(agg["feed_dwell_s"].to_numpy(), bc(dwell))
    np.testing.assert_allclose(agg["time_spent_s"].to_numpy(), bc(dwell + cd))
    np.testing.assert_allclose(agg["time_well_spent_s"].to_numpy(), bc((dwell + cd) * ~skipped))
    np.testing.assert_array_equal(agg["n_sessions"].to_numpy(), np.bincount(smem, minlength=n))
    active = np.zeros(n, int)
    for d in (1, 2):
        active += np.bincount(np.unique(smem[day[in_period] == d]), minlength=n) > 0
    np.testing.assert_array_equal(agg["active_days"].to_numpy(), active)
    m = member_metrics(agg, 2)
    imps = agg["n_impressions"].to_numpy()
    np.testing.assert_allclose(m["skip_rate"].to_numpy()[imps > 0], (bc(skipped) / np.maximum(imps, 1))[imps > 0])
    assert m["skip_rate"].is_null().to_numpy()[imps == 0].all()
    np.testing.assert_allclose(m["sessions_per_day"].to_numpy(), agg["n_sessions"].to_numpy() / 2)
    assert isinstance(m, pl.DataFrame) and m.height == n


def test_member_skip_rates_are_unbiased_for_the_truth():
    """The mean difference of measured and true (simulate.truth.arm_truth) skip rates is within 4 standard errors of 0."""
    cfg = WorldConfig(n_members=1500, n_days=3)
    arm = assign_arms(np.arange(cfg.n_members), 0.5, 0)
    sim = simulate(cfg, seed=4, ranker={"control": RandomRanker(), "treatment": PopularityRanker()}, member_arm=arm)
    truth = arm_truth(sim.tables, sim.truth_tables["impressions"], cfg, cfg.t_skip_s, 0)
    measured = member_metrics(member_aggregates(sim.tables, cfg, cfg.t_skip_s, 0, 3), 3)
    d = (measured["skip_rate"] - truth["true_skip_rate"]).drop_nulls().to_numpy()
    assert abs(d.mean()) < 4 * d.std(ddof=1) / math.sqrt(d.size)


def test_sums_of_seconds_are_order_free_and_within_a_nanosecond_per_row_of_fsum():
    """split_seconds + seconds_from_parts: any order gives the same bits; math.fsum (the exactly rounded sum) within 0.5 ns per row."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.lognormal(1.0, 2.0, 20_000), [0.0, 1e-12, 999_999.9]])
    sums = []
    for order in (np.arange(x.size), rng.permutation(x.size), np.argsort(x)[::-1]):
        ns, rest = split_seconds(x[order])
        sums.append(seconds_from_parts(np.array([int(ns.sum())]), np.array([rest.sum()]))[0])
    assert sums[0] == sums[1] == sums[2]
    assert abs(sums[0] - math.fsum(x)) <= 0.5e-9 * x.size
    # Not finite or beyond FIXED_LIMIT_S: summed as floats, so NaN still poisons the sum.
    ns, rest = split_seconds(np.array([1.5, np.nan, np.inf, 2e6]))
    assert ns.tolist() == [1_500_000_000, 0, 0, 0] and rest[0] == 0.0 and np.isnan(rest[1]) and rest[2:].tolist() == [np.inf, 2e6]
