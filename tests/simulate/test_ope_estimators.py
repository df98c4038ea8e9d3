"""OPE estimators on synthetic bandits with known values, closed forms and bad input."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dwellrank_logs.errors import ConfigError
from simulate.ope import ExplorationRanker, OPEConfig, doubly_robust, ips, snips, top_rows
from simulate.rankers import RandomRanker

Z95 = 1.959963984540054


def _bandit(rng: np.random.Generator, n: int, k: int = 5):
    """A contextual bandit with known truth: context x ~ U(0, 1), reward ~ Bernoulli(p(x, a)).

    Logging: softmax over k actions with logits a * x; target: always the last action.
    Returns rewards, weights, a good and a bad reward model, and the true target value
    given the contexts (mean of p(x, k-1)).
    """
    x = rng.random(n)
    p = 0.1 + 0.8 * np.outer(x, np.arange(k) / (k - 1)) ** 2  # (n, k) true reward probability
    logits = np.outer(x, np.arange(k))
    mu = np.exp(logits - logits.max(axis=1, keepdims=True))
    mu /= mu.sum(axis=1, keepdims=True)
    a = (rng.random(n)[:, None] < mu.cumsum(axis=1)).argmax(axis=1)
    r = (rng.random(n) < p[np.arange(n), a]).astype(float)
    target = k - 1
    w = (a == target) / mu[np.arange(n), a]
    q_good = (p[np.arange(n), a], p[:, target])
    q_bad = (np.full(n, 0.3), np.full(n, 0.3))
    return r, w, q_good, q_bad, float(p[:, target].mean())


def test_closed_forms_on_a_tiny_log():
    r = np.array([1.0, 0.0, 1.0, 0.0])
    w = np.array([2.0, 0.0, 4.0, 2.0])
    e = ips(r, w)
    terms = w * r
    se = terms.std(ddof=1) / 2
    assert (e.value, e.se, e.n) == (pytest.approx(1.5), pytest.approx(se), 4)
    assert (e.ci_low, e.ci_high) == (pytest.approx(1.5 - Z95 * se), pytest.approx(1.5 + Z95 * se))
    s = snips(r, w)
    assert s.value == pytest.approx(6 / 8)
    infl = w * (r - 0.75) / w.mean()
    assert s.se == pytest.approx(infl.std(ddof=1) / 2)
    ql, qt = np.full(4, 0.5), np.full(4, 0.25)
    d = doubly_robust(r, w, ql, qt)
    assert d.value == pytest.approx(np.mean(qt + w * (r - ql)))


def test_on_policy_weights_reduce_to_the_sample_mean():
    rng = np.random.default_rng(0)
    r = (rng.random(1000) < 0.3).astype(float)
    w = np.ones(1000)
    assert ips(r, w).value == pytest.approx(r.mean())
    assert snips(r, w).value == pytest.approx(r.mean())
    assert snips(r, w).se == pytest.approx(r.std(ddof=1) / math.sqrt(1000))


def test_dr_with_the_true_reward_model_and_no_overlap_is_the_model():
    r = np.array([1.0, 0.0, 1.0])
    w = np.zeros(3)
    qt = np.array([0.2, 0.4, 0.6])
    assert doubly_robust(r, w, np.zeros(3), qt).value == pytest.approx(0.4)
    assert math.isnan(snips(r, w).value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 50)), min_size=2, max_size=40).filter(lambda rows: sum(w for _, w in rows) > 0))
def test_snips_stays_within_the_reward_range_and_ignores_weight_scale(rows):
    r = np.array([a for a, _ in rows])
    w = np.array([b for _, b in rows])
    v = snips(r, w).value
    assert r.min() - 1e-12 <= v <= r.max() + 1e-12
    assert snips(r, 3.7 * w).value == pytest.approx(v)


def test_interval_coverage_on_a_synthetic_bandit():
    """Over 300 logs of 2,000 rounds, each estimator's 95% interval covers the true value about 95% of
    the time (Binomial(300, 0.95) is above 272 with probability 0.999) and IPS/DR are unbiased."""
    rng = np.random.default_rng(2024)
    hits = {"ips": 0, "snips": 0, "dr_good": 0, "dr_bad": 0}
    errors = {k: [] for k in hits}
    for _ in range(300):
        r, w, good, bad, truth = _bandit(rng, 2000)
        for name, est in (
            ("ips", ips(r, w)),
            ("snips", snips(r, w)),
            ("dr_good", doubly_robust(r, w, *good)),
            ("dr_bad", doubly_robust(r, w, *bad)),
        ):
            hits[name] += est.covers(truth)
            errors[name].append(est.value - truth)
    for name, h in hits.items():
        assert 272 <= h <= 298, (name, h)
    for name in ("ips", "dr_good", "dr_bad"):
        e = np.array(errors[name])
        assert abs(e.mean()) < 4 * e.std(ddof=1) / math.sqrt(e.size), name
    # A right reward model makes DR tighter than IPS (only the Bernoulli noise of the matches remains).
    assert np.std(errors["dr_good"]) < 0.9 * np.std(errors["ips"])


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: ips(np.ones(3), np.ones(2)), r"weight must be a 1-d array of the same length as the others \(3\), got shape \(2,\)"),
        (lambda: ips(np.ones((2, 2)), np.ones((2, 2))), r"reward must be a 1-d array"),
        (lambda: snips(np.array([1.0, np.nan]), np.ones(2)), r"reward must be finite, got 1 non-finite value"),
        (lambda: ips(np.ones(2), np.array([1.0, -1.0])), r"weight must be >= 0"),
        (lambda: ips(np.ones(1), np.ones(1)), r"need at least 2 logged samples .* got 1"),
        (lambda: doubly_robust(np.ones(3), np.ones(3), np.ones(3), np.ones(4)), r"q_target must be a 1-d array .* got shape \(4,\)"),
        (
            lambda: OPEConfig(reward="engaged"),
            r"reward must be one of \['click', 'viral', 'not_skipped'\] \(observable .*\), got 'engaged'",
        ),
        (lambda: OPEConfig(temperature=0), r"temperature must be a number > 0, got 0"),
        (lambda: OPEConfig(alpha=1.0), r"alpha must be in the open interval \(0, 1\), got 1.0"),
        (lambda: OPEConfig(folds=1), r"folds must be an integer >= 2, got 1"),
        (lambda: OPEConfig(seed=-3), r"seed must be a non-negative integer, got -3"),
        (lambda: ExplorationRanker(RandomRanker(), temperature=-1.0), r"temperature must be a number > 0, got -1.0"),
    ],
)
def test_bad_input(call, pattern):
    with pytest.raises(ConfigError, match=pattern):
        call()


def test_top_rows_matches_the_engines_sort():
    """The engine ranks by np.argsort(-scores, kind='stable') per request; top_rows picks its first row."""
    rng = np.random.default_rng(3)
    c, r = 7, 50
    scores = rng.integers(0, 3, r * c).astype(float)  # many ties
    req = np.repeat(np.arange(r) * 10 + 3, c)
    order = np.argsort(-scores.reshape(r, c), axis=1, kind="stable")[:, 0]
    np.testing.assert_array_equal(top_rows(scores, req), np.arange(r) * c + order)


def test_exploration_ranker_first_step_is_the_softmax_of_standardised_scores():
    rng = np.random.default_rng(0)
    c = 6
    base_scores = rng.normal(size=2 * c)

    class Fixed:
        def rank(self, candidates, history, rng):
            from dwellrank_logs.protocol import RankOutput

            return RankOutput(scores=base_scores)

    cands = pl.DataFrame({"request_id": np.repeat([1, 2], c)})
    out = ExplorationRanker(Fixed(), temperature=0.5).rank(cands, None, rng)
    top = top_rows(out.scores, cands["request_id"].to_numpy())
    for g, row in enumerate(top):
        s = base_scores[g * c : (g + 1) * c]
        z = (s - s.mean()) / s.std() / 0.5
        soft = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert out.propensity[row] == pytest.approx(soft[row - g * c], rel=1e-10)
