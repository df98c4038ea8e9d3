"""Minimum detectable effect and the size check against the normal approximation and a simulated power."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from dwellrank_logs.errors import ConfigError
from simulate.ab import SmallExperimentWarning, check_size, minimum_detectable_effect


@pytest.mark.parametrize(("n_c", "n_t", "alpha", "power"), [(2500, 2500, 0.05, 0.8), (4000, 1000, 0.05, 0.9), (2000, 2000, 0.01, 0.8)])
def test_mde_matches_normal_approximation(n_c, n_t, alpha, power):
    """For large n the t-test MDE is (z_{1-alpha/2} + z_power) sqrt(1/n_c + 1/n_t) standard deviations."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    ref = z * math.sqrt(1 / n_c + 1 / n_t)
    assert minimum_detectable_effect(n_c, n_t, alpha, power) == pytest.approx(ref, rel=0.005)


def test_mde_gives_the_requested_power_by_simulation():
    """At the MDE, a Welch test on normal data rejects with about the requested power."""
    d = minimum_detectable_effect(200, 200, 0.05, 0.8)
    rng = np.random.default_rng(11)
    rejections = sum(stats.ttest_ind(rng.normal(d, 1, 200), rng.normal(0, 1, 200)).pvalue < 0.05 for _ in range(800))
    assert abs(rejections / 800 - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 800)


def test_check_size_refuses_warns_and_passes():
    with pytest.raises(
        ConfigError, match=r"members: 40 members at split 0.5 .* minimum detectable effect would be .* use at least \d+ members"
    ):
        check_size(40, 0.5, 0.05, 0.8, 0.5, 0.2)
    with pytest.warns(SmallExperimentWarning, match="can only detect effects of 0.28 standard deviations"):
        assert check_size(400, 0.5, 0.05, 0.8, 0.5, 0.2) == pytest.approx(0.28, abs=0.005)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_size(5000, 0.5, 0.05, 0.8, 0.5, 0.2)
