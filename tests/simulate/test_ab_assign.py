"""Arm assignment against independent references: a pure-Python splitmix64 (Vigna's reference C code) and scipy's chi-square."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dwellrank_logs.errors import ConfigError
from simulate.ab import assign_arms, assignment_units, splitmix64

_MASK = (1 << 64) - 1


def _splitmix64_reference(x: int) -> int:
    """Steele, Lea & Flood (2014), as in Vigna's reference C code, in Python integers."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def test_splitmix64_matches_reference_and_known_vector():
    # Known vector: the first output of a splitmix64 generator seeded with 0 is 0xE220A8397B1DCDAF.
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    xs = [0, 1, 2, 12345, 2**32 + 7, 2**63 + 11, _MASK]
    got = splitmix64(np.array(xs, dtype=np.uint64))
    assert [int(v) for v in got] == [_splitmix64_reference(x) for x in xs]


def test_assignment_units_formula_and_order_independence():
    ids = np.arange(1000)
    u = assignment_units(ids, seed=42)
    key = _splitmix64_reference(42)
    ref = np.array([(_splitmix64_reference(int(i) ^ key) >> 11) * 2.0**-53 for i in ids])
    np.testing.assert_array_equal(u, ref)
    perm = np.random.default_rng(0).permutation(ids)
    np.testing.assert_array_equal(assignment_units(perm, 42), u[perm])
    assert (u >= 0).all() and (u < 1).all()


def test_assignment_is_uniform_nested_and_reseeded():
    ids = np.arange(20_000)
    for split in (0.1, 0.5, 0.8):
        arm = assign_arms(ids, split, seed=3)
        n_t = int((arm == "treatment").sum())
        # Binomial(20000, split): the realised share is within 4 sd.
        assert abs(n_t - split * ids.size) < 4 * math.sqrt(ids.size * split * (1 - split))
    small = assign_arms(ids, 0.3, seed=3) == "treatment"
    large = assign_arms(ids, 0.6, seed=3) == "treatment"
    assert (large | ~small).all()  # raising the split only moves members into treatment
    other = assign_arms(ids, 0.5, seed=4) == "treatment"
    same = assign_arms(ids, 0.5, seed=3) == "treatment"
    assert 0.45 < (other == same).mean() < 0.55  # a new seed re-randomises
    # Uniform in 20 buckets (chi-square goodness of fit, scipy as reference).
    counts = np.bincount((assignment_units(ids, 9) * 20).astype(int), minlength=20)
    assert stats.chisquare(counts).pvalue > 0.001


def test_assign_arms_rejects_bad_split():
    with pytest.raises(ConfigError, match=r"split .* must be in the open interval \(0, 1\), got -0.1"):
        assign_arms(np.arange(3), -0.1, 0)
