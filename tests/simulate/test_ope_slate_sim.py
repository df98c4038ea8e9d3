"""Slate estimators against the exact truth of synthetic ranked feeds, over 20 seeds.

Reference: :func:`simulate.ope.slate_synthetic.synthetic_slates`' truth, the
target's expected feed value from its exact Plackett-Luce position marginals
(independent, position-based rewards) or from 5,000 sampled target orders per
context type (cascade, lookahead).  Unbiasedness is asserted where theory
promises it: |mean error over seeds| < 3 standard errors of that mean.
Small on purpose (K = 4 of 6 items, 400 requests): bench/ope_slate.py runs
lists of 5 to 25.  The pseudoinverse runs under both loggings: uniform's
``Gamma`` in closed form, Plackett-Luce's exact by enumeration
(:func:`simulate.ope.slate_propensity.pl_pair_marginals`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from simulate.ope.slate_synthetic import SLATE_REWARDS, estimate_slates, synthetic_slates

SEEDS = range(20)
UNBIASED = {
    "independent": ("slate_ips", "independent_ips", "cascade_ips", "cascade_dr", "pseudoinverse"),
    "position_based": ("slate_ips", "independent_ips", "cascade_ips", "cascade_dr", "pseudoinverse"),
    "cascade": ("slate_ips", "cascade_ips", "cascade_dr"),
    "lookahead": ("slate_ips",),
}


@functools.cache
def _errors(logging: str) -> dict[tuple[str, str], np.ndarray]:
    errs: dict[tuple[str, str], list[float]] = {}
    for s in SEEDS:
        d = synthetic_slates(400, 4, np.random.default_rng(s), n_items=6, logging=logging, truth_samples=5000)
        for reward in SLATE_REWARDS:
            for name, e in estimate_slates(d, reward).items():
                errs.setdefault((reward, name), []).append(e.value - d["truth"][reward])
    return {k: np.array(v) for k, v in errs.items()}


@pytest.fixture(scope="module", params=["pl", "uniform"])
def errors(request):
    return request.param, _errors(request.param)


def _z(err: np.ndarray) -> float:
    return float(err.mean() / (err.std(ddof=1) / math.sqrt(err.size)))


def test_unbiased_where_the_reward_structure_allows(errors):
    logging, errs = errors
    for reward, names in UNBIASED.items():
        for name in names:
            # The pseudoinverse's Gamma: uniform_ranking_gamma, or the exact PL pair marginals (6!/2! = 360 prefixes).
            assert abs(_z(errs[(reward, name)])) < 3, (logging, reward, name, errs[(reward, name)].mean())


def test_pl_logging_gets_the_exact_gamma_where_it_fits_and_monte_carlo_beyond():
    small = synthetic_slates(50, 3, np.random.default_rng(0), n_items=5, truth_samples=10)
    assert small["pi_gamma"] == "exact" and np.isfinite(small["pi_weight"]).all()
    big = synthetic_slates(50, 6, np.random.default_rng(0), n_items=12, truth_samples=10)  # 12!/6! = 665,280 prefixes
    assert big["pi_gamma"] is None and big["pi_weight"] is None
    mc = synthetic_slates(50, 6, np.random.default_rng(0), n_items=12, truth_samples=10, gamma_samples=2000)
    assert mc["pi_gamma"] == "monte carlo (2000 orders)" and mc["pi_weight"].shape == (50,)
    # Drawn last: everything else is as without the Monte Carlo Gamma.
    assert all(np.array_equal(mc["reward"][r], big["reward"][r]) for r in SLATE_REWARDS) and mc["truth"] == big["truth"]


def test_independent_ips_is_biased_under_the_cascade():
    """A click above stops the scan, so the position-wise weights miss the dependence: bias far beyond noise."""
    errs = _errors("uniform")
    assert _z(errs[("cascade", "independent_ips")]) > 3


def test_on_policy_logs_give_every_weight_one():
    d = synthetic_slates(50, 3, np.random.default_rng(0), n_items=4)
    d["target_prefix"], d["target_marginal"] = d["logging_prefix"], d["logging_marginal"]
    d["pi_weight"] = None  # the pseudoinverse weight (not 1 per slate even on-policy) was made for the other target
    for name, e in estimate_slates(d, "position_based").items():
        if name.startswith(("slate_ips", "independent_ips", "cascade_ips", "sn_")) and "dr" not in name:
            assert e.value == pytest.approx(d["reward"]["position_based"].sum(axis=1).mean()), name


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_requests": 1}, "n_requests must be an integer >= 2"),
        ({"n_positions": 0}, "n_positions must be an integer >= 1"),
        ({"n_items": 2}, r"n_items must be an integer >= n_positions \(3\)"),
        ({"logging": "greedy"}, "logging must be 'pl' or 'uniform'"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    args = {"n_requests": 10, "n_positions": 3, **kwargs}
    with pytest.raises(ConfigError, match=match):
        synthetic_slates(args.pop("n_requests"), args.pop("n_positions"), np.random.default_rng(0), **args)
    with pytest.raises(ConfigError, match="reward must be one of"):
        estimate_slates({}, "dwell")
