"""Whole-feed OPE in the simulator: the truth against the simulator's own scrolling, the propensities, and the estimators over seeds."""

from __future__ import annotations

import itertools
import math
from dataclasses import astuple

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from simulate import PopularityRanker, WorldConfig
from simulate.impressions import view_feeds
from simulate.ope import OPEConfig, OPEEstimate, run_ope
from simulate.ope.feed import exact_pseudoinverse_feasible, exact_pseudoinverse_weight, feed_estimates, pl_marginals_at, top_k_rows
from simulate.ope.slate import slate_cascade_dr, slate_cascade_ips, slate_independent_ips, slate_pseudoinverse, slate_standard_ips
from simulate.ope.slate_propensity import factorised_pseudoinverse_weight, pl_position_marginals, pl_prefix_steps, prefix_product
from simulate.serving import Feeds
from simulate.truth import feed_truth, view_probability, world_members

# Few candidates and a short feed, so that the target's feed often matches the log even at K = 3.
WORLD = WorldConfig(n_members=250, n_days=3, candidates_per_request=8, feed_length=6)
K = 3
SEEDS = range(6)
# The reward is additive over (update, position): these four and the exact-Gamma pseudoinverse (8!/5! = 336 prefixes).
UNBIASED = ("slate_ips", "independent_ips", "cascade_ips", "cascade_dr", "pseudoinverse")


@pytest.fixture(scope="module")
def runs():
    """run_ope with feed_k = 3: an exploring popularity ranker (temperature 1) logs, popularity is the target."""
    return [run_ope(OPEConfig(world=WORLD, seed=s, feed_k=K), PopularityRanker(), {"pop": PopularityRanker()}) for s in SEEDS]


def test_pl_marginals_at_equal_the_full_exponential_race():
    """pl_marginals_at's cells equal pl_position_marginals (itself checked against enumerating all orders) to 1e-12,
    also with -inf padding for absent items."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(25, 9)) * 1.5
    item = np.argsort(-(s + rng.gumbel(size=s.shape)), axis=1)[:, :4]
    full = pl_position_marginals(s)
    ref = full[np.arange(25)[:, None], item, np.arange(4)[None, :]]
    np.testing.assert_allclose(pl_marginals_at(s, item), ref, atol=1e-12)
    padded = np.c_[s, np.full((25, 3), -np.inf)]
    np.testing.assert_allclose(pl_marginals_at(padded, item), ref, atol=1e-12)


def test_top_k_rows_is_the_stable_descending_order():
    scores = np.array([0.1, 0.5, 0.5, 0.2, 3.0, 1.0, 2.0])
    req = np.array([7, 7, 7, 7, 9, 9, 9])
    np.testing.assert_array_equal(top_k_rows(scores, req, 3), [[1, 2, 3], [4, 6, 5]])
    with pytest.raises(ConfigError, match=r"feed_k = 4 exceeds the candidates of request 9 \(3\)"):
        top_k_rows(scores, req, 4)


def test_feed_truth_equals_a_replay_of_the_simulators_scrolling_and_response():
    """feed_truth against simulate.impressions.view_feeds itself: 4,000 replays of 6 fixed feeds
    (viewing depth and responses drawn by the engine's functions); mean clicks and not-skipped views over the
    first K positions within 4 standard errors of the closed form, for each feed."""
    cfg = WorldConfig(n_members=50, n_days=1, candidates_per_request=8, feed_length=6)
    members = world_members(cfg, 4)
    rng = np.random.default_rng(1)
    n_upd, r, c, reps = 30, 6, 8, 4000
    pool = {
        "utype": rng.integers(0, len(cfg.update_types), n_upd),
        "topic": rng.integers(0, cfg.n_topics, n_upd),
        "quality": rng.normal(0.5, 1.0, n_upd),
        "author": rng.integers(0, cfg.n_members, n_upd),
    }
    cand = np.stack([rng.choice(n_upd, c, replace=False) for _ in range(r)])  # (r, c)
    order = np.stack([rng.permutation(c)[: cfg.feed_length] for _ in range(r)])
    member = rng.integers(0, cfg.n_members, r)
    n_feed = np.array([1, 1, 2, 1, 3, 1])
    sess = {
        "session_id": np.arange(r * reps),
        "start_us": np.zeros(r * reps, dtype=np.int64),
        "first_feed_s": np.zeros(r * reps),
        "n_feed": np.tile(n_feed, reps),
    }
    feeds = Feeds(
        requests=np.arange(r * reps),
        member=np.tile(member, reps),
        candidates=np.tile(cand.ravel(), reps),
        n_candidates=c,
        order=np.tile(order, (reps, 1)),
        propensity=np.full(r * reps * c, np.nan),
    )
    imp = view_feeds(cfg, members, sess, pool, feeds, rng)
    top = imp["position"] < K
    upd = cand[np.arange(r)[:, None], order[:, :K]]  # (r, K)
    observed = {
        "click": imp["clicked"],
        "not_skipped": (imp["dwell_s"] >= cfg.t_skip_s) | imp["clicked"] | imp["reacted"] | imp["commented"] | imp["shared"],
    }
    for reward, hit in observed.items():
        count = np.bincount(imp["session_row"][top], weights=hit[top], minlength=r * reps).reshape(reps, r)
        truth = feed_truth(cfg, members, member, pool["utype"][upd], pool["topic"][upd], pool["quality"][upd], n_feed, reward)
        se = count.std(axis=0, ddof=1) / math.sqrt(reps)
        assert (np.abs(count.mean(axis=0) - truth) < 4 * se + 1e-9).all(), (reward, count.mean(axis=0), truth, se)


def test_view_probability_of_the_top_and_beyond_the_feed():
    cfg = WorldConfig(feed_length=3)
    p = view_probability(cfg, np.array([1, 2]), 4)
    lam = cfg.views_per_feed_event - 1
    np.testing.assert_allclose(p[0, :3], [1.0, 1 - math.exp(-lam), 1 - math.exp(-lam) * (1 + lam)], rtol=1e-12)
    assert (p[:, 3] == 0).all() and (p[:, 0] == 1).all()


def test_logged_feeds_observed_reward_matches_their_truth(runs):
    """The simulator's impressions of the logged feeds against feed_truth of the same feeds: over seeds, the mean
    of (observed - truth) / se_bound is within 3 / sqrt(seeds) (se_bound = sqrt(K truth / n) bounds the sd, so z is conservative)."""
    z = [
        (f["logging"]["observed_reward"] - f["logging"]["truth_logged_feeds"])
        / math.sqrt(K * f["logging"]["truth_logged_feeds"] / f["n_requests"])
        for f in (r["feed"] for r in runs)
    ]
    assert all(abs(v) < 4 for v in z) and abs(np.mean(z)) < 3 / math.sqrt(len(z)), z


def test_unbiased_estimators_have_bias_within_noise_and_cover(runs):
    """Every position's reward depends only on the update there, so standard, independent and cascade IPS and
    cascade DR are unbiased: over 6 seeds the mean error is within 3 standard errors of the seeds' spread, and
    at least 4 of 6 intervals cover (P(X <= 3) = 0.002 for Binomial(6, 0.95))."""
    for est in UNBIASED:
        err = np.array([r["feed"]["targets"]["pop"]["estimates"][est]["value"] - r["feed"]["targets"]["pop"]["truth"] for r in runs])
        assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(err.size) + 1e-12, (est, err)
        covered = sum(r["feed"]["targets"]["pop"]["estimates"][est]["covers"] for r in runs)
        assert covered >= 4, (est, covered)


def test_bootstrap_intervals_cover_the_truth_over_seeds(runs):
    """The request bootstrap beside each normal interval (1,000 resamples, seeded from the run's seed): for the
    unbiased estimators at least 4 of 6 cover, as for the normal ones; each brackets its estimate's value."""
    for est in UNBIASED:
        es = [r["feed"]["targets"]["pop"]["estimates"][est] for r in runs]
        assert sum(e["boot_covers"] for e in es) >= 4, (est, es)
        assert all(e["boot_ci_low"] <= e["value"] <= e["boot_ci_high"] and e["boot_se"] > 0 for e in es), (est, es)
    assert all(r["feed"]["bootstrap"]["n_boot"] == 1000 for r in runs)
    # Seeded by the run's seed: different seeds, different resamples (and data).
    lows = {r["feed"]["targets"]["pop"]["estimates"]["independent_ips"]["boot_ci_low"] for r in runs}
    assert len(lows) == len(runs)


def test_feed_bootstrap_equals_the_slate_modules_bootstrap_on_the_same_inputs():
    """feed_estimates(interval='bootstrap', rng=seed): estimator j in dict order draws from child j of
    default_rng(seed).spawn(12), the same numbers as the slate function called with that child."""
    rng = np.random.default_rng(11)
    n, k = 300, 3
    logged = rng.integers(0, 4, size=(n, k))
    target = np.where(rng.random((n, k)) < 0.7, logged, logged + 10)
    step = rng.uniform(0.2, 1.0, size=(n, k))
    marginal = rng.uniform(0.1, 0.9, size=(n, k))
    reward = (rng.random((n, k)) < 0.3).astype(float)
    ql, qt = rng.uniform(0, 0.5, size=(n, k)), rng.uniform(0, 0.5, size=(n, k))
    pw = rng.normal(1.0, 0.5, size=n)
    got = feed_estimates(reward, logged, target, step, marginal, ql, qt, interval="bootstrap", n_boot=300, rng=5, pi_weight=pw)
    children = iter(np.random.default_rng(5).spawn(12))
    same = logged == target
    tm, tp, lp = same.astype(float), np.cumprod(same, axis=1).astype(float), np.cumprod(step, axis=1)
    mu = np.where(same, marginal, 1.0)
    g = factorised_pseudoinverse_weight(mu, tm)
    want = []
    for sn in (False, True):
        opts = {"self_normalised": sn, "interval": "bootstrap", "n_boot": 300}
        want += [
            slate_standard_ips(reward, lp[:, -1], tp[:, -1], rng=next(children), **opts),
            slate_independent_ips(reward, mu, tm, rng=next(children), **opts),
            slate_cascade_ips(reward, lp, tp, rng=next(children), **opts),
            slate_cascade_dr(reward, lp, tp, ql, qt, rng=next(children), **opts),
            slate_pseudoinverse(reward, g, rng=next(children), **opts),
        ]
    want = [OPEEstimate(e.estimator.replace("pseudoinverse", "pseudoinverse_factorised"), *astuple(e)[1:]) for e in want]
    for sn in (False, True):
        want.append(slate_pseudoinverse(reward, pw, self_normalised=sn, interval="bootstrap", n_boot=300, rng=next(children)))
    assert list(got) == [e.estimator for e in want]
    for name, e in zip(got, want, strict=True):
        assert (got[name].value, got[name].se, got[name].ci_low, got[name].ci_high) == (e.value, e.se, e.ci_low, e.ci_high), name
    normal = feed_estimates(reward, logged, target, step, marginal, ql, qt, pi_weight=pw)
    assert all(normal[name].value == got[name].value for name in got)
    assert "pseudoinverse" not in feed_estimates(reward, logged, target, step, marginal, ql, qt)
    assert normal["independent_ips"].se == pytest.approx(got["independent_ips"].se, rel=0.15)  # the two se agree at n = 300


def test_exact_pseudoinverse_weight_is_unbiased_for_any_additive_reward_by_enumeration():
    """Over every ordered 2-prefix of a PL logging ranker, E_mu[g(s) 1_s] = 1_t for the deterministic target's slate
    t, so E_mu[g r] = r(t) for every reward additive over (item, position); two requests with 4 and 5 candidates
    (the first padded with -inf)."""
    k = 2
    grid = np.array([[0.3, -1.0, 2.0, 0.5, -np.inf], [1.0, 0.0, -0.5, 2.5, 0.2]])
    counts = np.array([4, 5])
    target = np.array([[1, 3], [4, 0]])
    for i, m in enumerate(counts):
        slates = np.array(list(itertools.permutations(range(m), k)))
        n = len(slates)
        mu = prefix_product(pl_prefix_steps(np.repeat(grid[i : i + 1, :m], n, axis=0), slates))[:, -1]
        g = exact_pseudoinverse_weight(
            np.repeat(grid[i : i + 1], n, axis=0), np.full(n, m), slates, np.repeat(target[i : i + 1], n, axis=0)
        )
        ind = np.zeros((n, m, k))
        ind[np.arange(n)[:, None], slates, np.arange(k)[None, :]] = 1.0
        want = np.zeros((m, k))
        want[target[i], np.arange(k)] = 1.0
        assert mu.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(np.einsum("s,s,sjk->jk", mu, g, ind), want, atol=1e-9)
    # Two targets at once share each request's pseudoinverse: the same weights as one at a time.
    both = exact_pseudoinverse_weight(grid, counts, target, np.stack([target, target[:, ::-1]]))
    np.testing.assert_allclose(both[1], exact_pseudoinverse_weight(grid, counts, target, target[:, ::-1]), atol=1e-12)
    assert [exact_pseudoinverse_feasible(m, k) for m, k in ((8, 3), (10, 5), (50, 2), (12, 6))] == [True, True, False, False]
    with pytest.raises(ConfigError, match=r"exact Gamma for 12 candidates and K = 6 needs 665,280 prefixes .* \(m K at most 64\)"):
        exact_pseudoinverse_weight(np.zeros((1, 12)), np.array([12]), np.zeros((1, 6), int), np.zeros((1, 6), int))


def test_top_slot_figures_are_those_of_a_run_without_the_feed(runs):
    """feed_k only adds the feed section: the top-slot truth and estimates equal run_ope's without it (seed 3)."""
    plain = run_ope(OPEConfig(world=WORLD, seed=3), PopularityRanker(), {"pop": PopularityRanker()})
    with_feed = runs[SEEDS.index(3)]
    assert "feed" not in plain and "feed" in with_feed
    assert plain["targets"] == with_feed["targets"] and plain["logging"] == with_feed["logging"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"feed_k": 0}, r"feed_k must be an integer >= 1, got 0"),
        ({"feed_k": 7}, r"feed_k must be <= world.feed_length \(6\), got 7"),
        ({"feed_k": 2.5}, r"feed_k must be an integer >= 1, got 2.5"),
        ({"switch_tau": -1.0}, r"switch_tau must be a number >= 0 .* got -1.0"),
        ({"feed_n_boot": 1}, r"feed_n_boot must be an integer >= 2, got 1"),
    ],
)
def test_bad_feed_settings_are_refused(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        OPEConfig(world=WORLD, **kwargs)
