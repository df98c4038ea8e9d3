"""Off-policy evaluation in the simulator, checked against the simulator's truth over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dwellrank_logs.errors import ConfigError
from simulate import PopularityRanker, RandomRanker, WorldConfig
from simulate.ope import OPEConfig, run_ope

WORLD = WorldConfig(n_members=600, n_days=6)
SEEDS = range(20)


@pytest.fixture(scope="module")
def runs():
    """run_ope with an exploring popularity ranker (temperature 1) logging, popularity as target."""
    return [run_ope(OPEConfig(world=WORLD, seed=s, reward="click"), PopularityRanker(), {"popularity": PopularityRanker()}) for s in SEEDS]


def test_dr_and_snips_cover_the_truth_at_about_the_nominal_rate(runs):
    """95% intervals over 20 seeds: at least 16 of 20 must cover (P(X <= 15) = 0.003 for Binomial(20, 0.95))."""
    for est in ("dr", "snips", "ips"):
        covered = sum(r["targets"]["popularity"]["estimates"][est]["covers"] for r in runs)
        assert covered >= 16, (est, covered)


def test_ips_is_unbiased_across_seeds(runs):
    """Mean error of IPS (and DR) over seeds is within 3 standard errors of 0."""
    for est in ("ips", "dr"):
        err = np.array([r["targets"]["popularity"]["estimates"][est]["value"] - r["targets"]["popularity"]["truth"] for r in runs])
        assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(err.size), est


def test_interval_width_matches_the_spread_of_estimates(runs):
    """The reported standard errors agree with the seed-to-seed spread of the errors (ratio in [0.6, 1.6])."""
    for est in ("ips", "snips", "dr"):
        err = np.array([r["targets"]["popularity"]["estimates"][est]["value"] - r["targets"]["popularity"]["truth"] for r in runs])
        se = np.array([r["targets"]["popularity"]["estimates"][est]["se"] for r in runs])
        assert 0.6 < err.std(ddof=1) / np.sqrt(np.mean(se**2)) < 1.6, est


def test_logging_truth_matches_observed_rewards(runs):
    """On the logged actions themselves, observed and true click rates agree (a check of the truth helper)."""
    d = np.array([r["logging"]["observed_reward"] - r["logging"]["truth_logged_actions"] for r in runs])
    n = np.array([r["n_requests"] for r in runs])
    se = np.sqrt(0.1 * 0.9 / n)  # click rate near 0.1
    assert abs(d.mean()) < 4 * np.sqrt(np.sum(se**2)) / d.size


def test_report_structure(runs):
    r = runs[0]
    t = r["targets"]["popularity"]
    assert set(t["estimates"]) == {"ips", "snips", "dr"}
    assert 0 < t["match_rate"] < 1 and 0 < t["ess"] <= r["n_requests"]
    e = t["estimates"]["snips"]
    assert e["ci_low"] <= e["value"] <= e["ci_high"] and 0 <= e["value"] <= 1


def test_not_skipped_reward_runs_and_covers():
    res = run_ope(OPEConfig(world=WORLD, seed=3, reward="not_skipped"), PopularityRanker(), {"popularity": PopularityRanker()})
    t = res["targets"]["popularity"]
    assert 0.2 < t["truth"] < 0.6
    assert t["estimates"]["dr"]["covers"]


def test_no_targets_is_refused():
    with pytest.raises(ConfigError, match="targets must name at least one ranker"):
        run_ope(OPEConfig(world=WORLD, seed=0), RandomRanker(), {})
