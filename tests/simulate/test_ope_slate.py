"""Ranked-list estimators and per-position propensities: closed forms, reductions, enumeration and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from simulate.ope import ips, snips
from simulate.ope.slate import slate_cascade_dr, slate_cascade_ips, slate_independent_ips, slate_pseudoinverse, slate_standard_ips
from simulate.ope.slate_propensity import (
    factorised_pseudoinverse_weight,
    pl_conditionals,
    pl_pair_marginals,
    pl_pair_marginals_mc,
    pl_position_marginals,
    pl_prefix_steps,
    prefix_product,
    pseudoinverse_weight,
    slate_arrays,
    take_logged,
    uniform_ranking_gamma,
)
from simulate.ope.slate_top import direct_method, refit_bootstrap, self_normalised_dr, switch_dr

Z95 = 1.959963984540054

R = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
MU = np.array([[0.5, 0.5], [0.25, 0.5], [0.5, 1.0], [1.0, 0.5]])  # marginals
PI = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 1.0], [0.5, 1.0]])


def test_independent_ips_closed_form_and_self_normalised_per_position():
    w = PI / MU
    e = slate_independent_ips(R, MU, PI)
    terms = (w * R).sum(axis=1)
    assert e.value == pytest.approx(terms.mean())
    assert e.se == pytest.approx(terms.std(ddof=1) / 2)
    assert (e.ci_low, e.ci_high) == (pytest.approx(e.value - Z95 * e.se), pytest.approx(e.value + Z95 * e.se))
    s = slate_independent_ips(R, MU, PI, self_normalised=True)
    assert s.value == pytest.approx(sum((w[:, k] * R[:, k]).sum() / w[:, k].sum() for k in range(2)))
    weighted = slate_independent_ips(R, MU, PI, position_weight=np.array([1.0, 0.5]))
    assert weighted.value == pytest.approx((w * R * [1.0, 0.5]).sum(axis=1).mean())


def test_one_position_reduces_to_the_top_slot_estimators():
    """K = 1: every slate estimator is IPS (or SNIPS) of :mod:`simulate.ope.estimators`, intervals included."""
    rng = np.random.default_rng(3)
    r = (rng.random((50, 1)) < 0.4).astype(float)
    mu = rng.uniform(0.1, 1, (50, 1))
    pi = rng.uniform(0, 1, (50, 1))
    ref, ref_sn = ips(r[:, 0], (pi / mu)[:, 0]), snips(r[:, 0], (pi / mu)[:, 0])
    for sn, want in ((False, ref), (True, ref_sn)):
        for e in (
            slate_standard_ips(r, mu[:, 0], pi[:, 0], self_normalised=sn),
            slate_independent_ips(r, mu, pi, self_normalised=sn),
            slate_cascade_ips(r, mu, pi, self_normalised=sn),
        ):
            assert (e.value, e.se) == (pytest.approx(want.value), pytest.approx(want.se)), e.estimator


def test_cascade_weights_use_the_prefix_and_dr_adds_the_model():
    mu_prefix = prefix_product(MU)
    pi_prefix = prefix_product(PI)
    w = pi_prefix / mu_prefix
    assert slate_cascade_ips(R, mu_prefix, pi_prefix).value == pytest.approx((w * R).sum(axis=1).mean())
    assert slate_standard_ips(R, mu_prefix[:, -1], pi_prefix[:, -1]).value == pytest.approx((w[:, -1] * R.sum(axis=1)).mean())
    ql, qt = np.full((4, 2), 0.3), np.full((4, 2), 0.2)
    w_prev = np.column_stack([np.ones(4), w[:, :-1]])
    d = slate_cascade_dr(R, mu_prefix, pi_prefix, ql, qt)
    assert d.value == pytest.approx((w * (R - ql) + w_prev * qt).sum(axis=1).mean())
    zero = slate_cascade_dr(R, mu_prefix, pi_prefix, np.zeros((4, 2)), np.zeros((4, 2)))
    assert zero.value == pytest.approx(slate_cascade_ips(R, mu_prefix, pi_prefix).value)


def test_top_slot_dm_sndr_and_switch():
    r, w = np.array([1.0, 0.0, 1.0, 0.0]), np.array([2.0, 0.0, 4.0, 2.0])
    ql, qt = np.array([0.5, 0.2, 0.6, 0.1]), np.array([0.4, 0.3, 0.5, 0.2])
    assert direct_method(qt).value == pytest.approx(qt.mean())
    assert self_normalised_dr(r, w, ql, qt).value == pytest.approx(qt.mean() + (w * (r - ql)).sum() / w.sum())
    assert switch_dr(r, w, ql, qt, tau=3.0).value == pytest.approx(np.mean(qt + np.where(w <= 3, w, 0) * (r - ql)))
    assert switch_dr(r, w, ql, qt, tau=0.0).value == pytest.approx(direct_method(qt).value)
    assert switch_dr(r, w, ql, qt, tau=math.inf).value == pytest.approx(np.mean(qt + w * (r - ql)))


def test_refit_bootstrap_of_a_plain_mean_has_the_mean_s_standard_error():
    """Closed form: the bootstrap variance of a mean of n values is their population variance / n."""
    y = np.random.default_rng(3).exponential(size=500)
    e = refit_bootstrap(lambda idx: float(y[idx].mean()), y.size, n_boot=2000, rng=1)
    assert e.value == pytest.approx(y.mean())
    assert e.se == pytest.approx(y.std() / math.sqrt(y.size), rel=0.05)  # 2,000 resamples: se known to ~1.6%
    assert e.ci_high - e.ci_low == pytest.approx(2 * Z95 * e.se)
    p = refit_bootstrap(lambda idx: float(y[idx].mean()), y.size, n_boot=2000, rng=1, interval="percentile")
    assert p.se == e.se and p.ci_low < e.value < p.ci_high
    assert refit_bootstrap(lambda idx: float(y[idx].mean()), y.size, n_boot=50, rng=7) == refit_bootstrap(
        lambda idx: float(y[idx].mean()), y.size, n_boot=50, rng=np.random.default_rng(7)
    )


def test_bootstrap_interval_is_seeded_and_close_to_the_normal_one():
    rng = np.random.default_rng(0)
    r = (rng.random((400, 3)) < 0.3).astype(float)
    mu = np.full((400, 3), 0.2)
    pi = rng.uniform(0, 0.4, (400, 3))
    a = slate_independent_ips(r, mu, pi, interval="bootstrap", n_boot=300, rng=1)
    b = slate_independent_ips(r, mu, pi, interval="bootstrap", n_boot=300, rng=np.random.default_rng(1))
    n = slate_independent_ips(r, mu, pi)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.value == n.value
    assert a.se == pytest.approx(n.se, rel=0.15)
    sn = slate_independent_ips(r, mu, pi, self_normalised=True, interval="bootstrap", n_boot=300, rng=2)
    assert sn.ci_low < sn.value < sn.ci_high


def _perm_probability(logits: np.ndarray, perm: tuple[int, ...]) -> float:
    s = logits.copy()
    p, left = 1.0, list(range(s.size))
    for j in perm:
        z = np.exp(s[left] - s[left].max())
        p *= z[left.index(j)] / z.sum()
        left.remove(j)
    return p


@pytest.mark.parametrize("scale", [0.1, 1.0, 6.0])
def test_pl_position_marginals_equal_enumeration_of_all_orders(scale):
    """Reference: sum of the probabilities of all 5! orders, each a product of PL steps computed here by hand."""
    logits = np.random.default_rng(7).normal(size=(2, 5)) * scale
    got = pl_position_marginals(logits)
    ref = np.zeros_like(got)
    for i in range(2):
        for perm in itertools.permutations(range(5)):
            p = _perm_probability(logits[i], perm)
            for k, j in enumerate(perm):
                ref[i, j, k] += p
    np.testing.assert_allclose(got, ref, atol=1e-12)
    first = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got[:, :, 0], first / first.sum(axis=1, keepdims=True), atol=1e-12)


def test_pl_steps_conditionals_and_the_logging_rankers_prefix():
    logits = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, -1.0]])
    item = np.array([[2, 0, 1], [0, 2, 1]])
    steps = pl_prefix_steps(logits, item)
    for i in range(2):
        assert prefix_product(steps)[i, -1] == pytest.approx(_perm_probability(logits[i], tuple(item[i])))
    cond = pl_conditionals(logits, item)
    np.testing.assert_allclose(take_logged(np.swapaxes(cond, 1, 2), item), steps)
    assert cond[0, 1, 2] == 0.0 and cond[0, 2].tolist() == [0.0, 1.0, 0.0]


def test_pseudoinverse_uniform_logging_is_unbiased_for_additive_rewards_by_enumeration():
    """Exact expectation over all orders of 2 of 3 items under uniform logging equals the target's additive value."""
    m, k = 3, 2
    phi = np.array([[0.9, 0.4], [0.2, 0.1], [0.5, 0.3]])  # reward of item j at position k
    target = np.array([[0.6, 0.1], [0.3, 0.3], [0.1, 0.6]])[None]  # P(item j at k), columns sum to 1
    gp = np.linalg.pinv(uniform_ranking_gamma(m, k))
    slates = np.array(list(itertools.permutations(range(m), k)))
    g = pseudoinverse_weight(slates, target, gp)
    value = phi[slates, np.arange(k)].sum(axis=1)
    assert np.mean(g * value) == pytest.approx(float((target[0] * phi).sum()))
    reward = phi[slates, np.arange(k)]
    assert slate_pseudoinverse(reward, g).value == pytest.approx(float((target[0] * phi).sum()))


@pytest.mark.parametrize("scale", [0.1, 1.0, 6.0])
def test_pl_pair_marginals_equal_enumeration_of_all_orders(scale):
    """Reference: every one of the 6! full orders, its probability a product of PL steps by hand, adds to the pairs
    of its first 3 (item, position) cells; the diagonal is also the exponential race's position marginals."""
    m, k = 6, 3
    logits = np.random.default_rng(8).normal(size=(2, m)) * scale
    got = pl_pair_marginals(logits, k)
    ref = np.zeros((2, m * k, m * k))
    for i in range(2):
        for perm in itertools.permutations(range(m)):
            p = _perm_probability(logits[i], perm)
            cells = [perm[pos] * k + pos for pos in range(k)]
            for a in cells:
                for b in cells:
                    ref[i, a, b] += p
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    diag = np.diagonal(got, axis1=1, axis2=2).reshape(2, m, k)
    np.testing.assert_allclose(diag, pl_position_marginals(logits)[:, :, :k], atol=1e-12)


def test_pl_pair_marginals_mc_is_within_its_stated_error_and_seeded():
    logits = np.random.default_rng(9).normal(size=(3, 5))
    exact = pl_pair_marginals(logits, 3)
    est, se = pl_pair_marginals_mc(logits, 3, 20_000, rng=4)
    pos = exact > 0
    z = np.abs(est - exact)[pos] / np.sqrt(exact * (1 - exact) / 20_000)[pos]
    # 3 x 225 entries, 3 x 135 of them non-zero: the largest |z| of ~400 correlated normals stays below 4.5.
    assert z.max() < 4.5 and 0.6 < z.mean() < 1.0, (z.max(), z.mean())
    assert (est[~pos] == 0).all() and np.allclose(se[pos], np.sqrt(est * (1 - est) / 20_000)[pos])
    again, _ = pl_pair_marginals_mc(logits, 3, 20_000, rng=np.random.default_rng(4))
    assert np.array_equal(est, again)


def test_pseudoinverse_with_the_exact_pl_gamma_is_unbiased_for_additive_rewards_by_enumeration():
    """E_mu[g(s) r(s)] over all 5!/2! = 60 ordered prefixes of a PL logging ranker, computed exactly, equals the
    target's additive value q_pi^T phi; the factorised weight, exact only for independent positions, is not."""
    m, k = 5, 3
    rng = np.random.default_rng(10)
    log_logits, tgt_logits = rng.normal(size=(1, m)), 2.0 * rng.normal(size=(1, m))
    phi = rng.uniform(0, 1, size=(m, k))  # reward of item j at position k
    target = pl_position_marginals(tgt_logits)[:, :, :k]  # (1, m, K)
    slates = np.array(list(itertools.permutations(range(m), k)))
    mu = prefix_product(pl_prefix_steps(np.repeat(log_logits, len(slates), axis=0), slates))[:, -1]
    gp = np.linalg.pinv(pl_pair_marginals(log_logits, k)[0], rcond=1e-10, hermitian=True)
    g = pseudoinverse_weight(slates, target, gp)
    r = phi[slates, np.arange(k)].sum(axis=1)
    truth = float((target[0] * phi).sum())
    assert mu.sum() == pytest.approx(1.0, abs=1e-12)
    assert float((mu * g * r).sum()) == pytest.approx(truth, abs=1e-10)
    assert float((mu * g).sum()) == pytest.approx(1.0, abs=1e-10)  # a constant reward of 1 is additive too
    # One Gamma per request gives the same weights as the shared one.
    np.testing.assert_allclose(pseudoinverse_weight(slates, target, np.broadcast_to(gp, (len(slates), *gp.shape))), g, atol=1e-12)
    lm = pl_position_marginals(log_logits)[0, :, :k]
    fact = factorised_pseudoinverse_weight(lm[slates, np.arange(k)], target[0][slates, np.arange(k)])
    assert abs(float((mu * fact * r).sum()) - truth) > 1e-3


def test_factorised_pseudoinverse_weight():
    np.testing.assert_allclose(factorised_pseudoinverse_weight(MU, PI), (PI / MU).sum(axis=1) - 1)


def test_slate_arrays_from_a_shuffled_long_log():
    req = np.array([7, 3, 7, 3, 7, 3])
    pos = np.array([1, 0, 0, 1, 2, 2])
    out = slate_arrays(req, pos, np.array([4, 1, 5, 2, 9, 9]), np.array([0.5, 0.2, 0.3, 0.4, 1.0, 1.0]), np.array([1, 0, 0, 1, 0, 0.0]), 2)
    assert out["request_id"].tolist() == [3, 7]
    assert out["item"].tolist() == [[1, 2], [5, 4]]
    assert out["propensity"].tolist() == [[0.2, 0.4], [0.3, 0.5]]
    assert out["reward"].tolist() == [[0.0, 1.0], [0.0, 1.0]]


ONE = np.ones((3, 2))
BAD = [
    (lambda: slate_independent_ips(np.ones(3), ONE, ONE), "reward must be a 2-d array"),
    (lambda: slate_independent_ips(ONE[:1], ONE[:1], ONE[:1]), "at least 2 logged requests"),
    (lambda: slate_independent_ips(ONE, ONE[:, :1], ONE), r"logging_marginal must be a 2-d array of shape \(3, 2\)"),
    (lambda: slate_independent_ips(ONE, ONE * 0, ONE), r"logging_marginal must be in \(0, 1\]"),
    (lambda: slate_independent_ips(ONE, ONE, ONE * 2), r"target_marginal must be in \[0, 1\]"),
    (lambda: slate_independent_ips(ONE * np.nan, ONE, ONE), "reward must be finite"),
    (
        lambda: slate_independent_ips(ONE, ONE, ONE, position_weight=np.ones(3)),
        "position_weight must be a finite 1-d array of length K = 2",
    ),
    (lambda: slate_independent_ips(ONE, ONE, ONE, alpha=1.5), r"alpha must be in the open interval \(0, 1\)"),
    (lambda: slate_independent_ips(ONE, ONE, ONE, interval="exact"), "interval must be 'normal' or 'bootstrap'"),
    (lambda: slate_independent_ips(ONE, ONE, ONE, interval="bootstrap", n_boot=1), "n_boot must be an integer >= 2"),
    (lambda: slate_cascade_ips(ONE, np.array([[0.5, 1.0]] * 3), ONE), "logging_prefix must not increase along positions"),
    (lambda: slate_standard_ips(ONE, np.ones(2), np.ones(3)), "logging_slate must be a 1-d array of length 3"),
    (lambda: slate_cascade_dr(ONE, ONE, ONE, ONE[:, :1], ONE), r"q_logged must be a 2-d array of shape \(3, 2\)"),
    (lambda: slate_pseudoinverse(ONE, np.ones(4)), "pi_weight must be a 1-d array of length 3"),
    (lambda: switch_dr(np.ones(3), np.ones(3), np.ones(3), np.ones(3), tau=-1), "tau must be a number >= 0"),
    (lambda: self_normalised_dr(np.ones(3), -np.ones(3), np.ones(3), np.ones(3)), "weight must be >= 0"),
    (lambda: direct_method(np.ones(1)), "at least 2 logged requests"),
    (lambda: refit_bootstrap(np.mean, 1), "n must be an integer >= 2"),
    (lambda: refit_bootstrap(np.mean, 3, n_boot=1), "n_boot must be an integer >= 2"),
    (lambda: refit_bootstrap(np.mean, 3, interval="bootstrap"), "interval must be 'normal' or 'percentile'"),
    (lambda: refit_bootstrap(np.mean, 3, alpha=0.0), r"alpha must be in the open interval \(0, 1\)"),
    (lambda: slate_arrays(np.array([1, 1]), np.array([0, 0]), np.array([1, 2]), np.ones(2), np.ones(2), 1), "request 1 has 2 row"),
    (lambda: slate_arrays(np.array([1, 2]), np.array([0, 1]), np.array([1, 2]), np.ones(2), np.ones(2), 2), "request 1 has 0 row"),
    (lambda: slate_arrays(np.array([1]), np.array([0.5]), np.array([1]), np.ones(1), np.ones(1), 1), "position must hold integers"),
    (lambda: slate_arrays(np.array([1]), np.array([0]), np.array([1]), np.ones(1), np.ones(1), 0), "n_positions must be an integer >= 1"),
    (lambda: take_logged(np.ones((1, 3, 2)), np.array([[0, 3]])), "item must index dist's 3 items"),
    (lambda: pl_position_marginals(np.ones(3)), "logits must be a finite 2-d array"),
    (lambda: uniform_ranking_gamma(2, 3), "1 <= n_positions <= n_items"),
    (
        lambda: pl_pair_marginals(np.zeros((1, 12)), 6),
        r"enumerates m!/\(m-K\)! = 665,280 prefixes for m = 12, K = 6 .* pl_pair_marginals_mc",
    ),
    (lambda: pl_pair_marginals(np.zeros((1, 3)), 4), r"n_positions must be an integer in \[1, n_items = 3\], got 4"),
    (lambda: pl_pair_marginals_mc(np.zeros((1, 3)), 2, 0), "n_samples must be an integer >= 1, got 0"),
    (
        lambda: pseudoinverse_weight(np.zeros((2, 1), int), np.ones((1, 3, 1)), np.ones((3, 3, 3))),
        r"gamma_pinv \(m K, m K\) or \(n, m K, m K\)",
    ),
]


@pytest.mark.parametrize(("call", "match"), BAD)
def test_bad_input_is_named(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_the_logging_rankers_steps_give_prefix_probabilities_and_its_orders_follow_the_marginals():
    """simulate.rankers.plackett_luce (what ExplorationRanker logs): its step propensities in the sampled
    order multiply to pl_prefix_steps' prefix probabilities, and 20,000 sampled orders of 4 items put each
    item at each position at the exact marginal's rate (within 4 binomial standard errors)."""
    from simulate.rankers import plackett_luce

    rng = np.random.default_rng(11)
    scores = np.array([1.5, 0.0, -0.5, 0.8])
    n_req, m, temp = 20_000, scores.size, 0.7
    out = plackett_luce(np.tile(scores, n_req), np.repeat(np.arange(n_req), m), temp, rng)
    s = out.scores.reshape(n_req, m)
    order = np.argsort(-s, axis=1, kind="stable")  # (n, m) items by position
    steps_logged = np.take_along_axis(out.propensity.reshape(n_req, m), order, axis=1)
    logits = np.tile(scores / temp, (n_req, 1))
    np.testing.assert_allclose(prefix_product(steps_logged[:50]), prefix_product(pl_prefix_steps(logits[:50], order[:50])), rtol=1e-12)
    exact = pl_position_marginals(logits[:1])[0]  # (item, position)
    freq = np.stack([np.bincount(order[:, k], minlength=m) for k in range(m)], axis=1) / n_req
    assert np.all(np.abs(freq - exact) < 4 * np.sqrt(exact * (1 - exact) / n_req) + 1e-12)
